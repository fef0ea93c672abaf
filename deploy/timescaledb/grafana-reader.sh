#!/bin/bash
# Grafana's login, made once when the database volume is first initialised (the image runs
# /docker-entrypoint-initdb.d/* then). Grafana runs whatever SQL a dashboard holds, and anyone who
# may edit a panel can change that SQL, so the login reads only what the dashboards need.
#
# The login gets no privilege of its own: it is a member of the NOLOGIN group role
# `community_dashboards`, to which the cloud's migration 0021_dashboard_reader.sql grants SELECT on
# exactly the tables the dashboard queries read. The tables do not exist yet here (the cloud
# creates them with its migrations at start), so this script only makes the group if it is
# missing; the migration makes it too when the script did not run (another server). Both are
# idempotent.
#
# Safe to run again on a database in use, and needed once on a volume initialised by an earlier
# version of this script, which granted SELECT on every table in `public`, now and later: this
# revokes that, sets the password, and keeps the membership (docs/operations.md, "Grafana").
#
# Environment (set on the timescaledb service in docker-compose.yml): POSTGRES_USER and
# POSTGRES_DB (the owner and the database, as the image uses them), GRAFANA_DB_USER and
# GRAFANA_DB_PASSWORD (the login). tests/deploy/test_dashboards.py runs this script against a
# real PostgreSQL and then every dashboard query as the login, and checks what it is refused.
set -eo pipefail  # no -u: the image sources this file when it is not executable

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:?}" --dbname "${POSTGRES_DB:?}" \
    -v owner="$POSTGRES_USER" -v reader="${GRAFANA_DB_USER:?}" -v password="${GRAFANA_DB_PASSWORD:?}" \
    -v dashboards=community_dashboards <<'SQL'
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader') AS reader_missing,
       NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'dashboards') AS dashboards_missing \gset
\if :reader_missing
CREATE ROLE :"reader" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT;
\else
ALTER ROLE :"reader" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT;
\endif
\if :dashboards_missing
CREATE ROLE :"dashboards" NOLOGIN;
\endif
GRANT USAGE ON SCHEMA public TO :"dashboards";
GRANT :"dashboards" TO :"reader";

-- What earlier versions of this script granted the login directly: every table, now and later.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public REVOKE ALL ON TABLES FROM :"reader";
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"reader";
REVOKE ALL ON SCHEMA public FROM :"reader";

-- A dashboard query that runs away must not hold the database.
ALTER ROLE :"reader" SET statement_timeout = '30s';
SQL
