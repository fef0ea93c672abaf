#!/bin/bash
# A read-only role for Grafana, made once when the database volume is first initialised (the
# image runs /docker-entrypoint-initdb.d/* then). Grafana runs whatever SQL a dashboard holds,
# so it must not log in as the owner of the tables.
#
# The tables do not exist yet (the cloud creates them with its migrations at start), so the
# grant is a default privilege: every table the owner creates later in `public` (telemetry's
# monthly partitions and TimescaleDB's hypertable included) is readable by the reader.
#
# Environment (set on the timescaledb service in docker-compose.yml): POSTGRES_USER and
# POSTGRES_DB (the owner and the database, as the image uses them), GRAFANA_DB_USER and
# GRAFANA_DB_PASSWORD (the reader). tests/deploy/test_dashboards.py runs this script against a
# real PostgreSQL and then every dashboard query as the reader.
set -eo pipefail  # no -u: the image sources this file when it is not executable

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:?}" --dbname "${POSTGRES_DB:?}" \
    -v owner="$POSTGRES_USER" -v reader="${GRAFANA_DB_USER:?}" -v password="${GRAFANA_DB_PASSWORD:?}" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
-- A dashboard query that runs away must not hold the database.
ALTER ROLE :"reader" SET statement_timeout = '30s';
SQL
