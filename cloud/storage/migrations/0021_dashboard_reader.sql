-- What Grafana may read: the NOLOGIN group role `community_dashboards` gets SELECT on exactly the
-- tables the dashboard queries read (cloud/storage/queries.py), nothing else. Grafana's login
-- (`grafana_reader` in docker-compose) is made a member of it by deploy/timescaledb/grafana-reader.sh
-- and has no privilege of its own: whoever can edit a Grafana panel must not reach people's data,
-- password hashes, face encodings or the audit log.
--
-- RULE for later migrations: a migration that adds a table a dashboard query reads grants it here
-- too, in the same migration:
--     DO $$ BEGIN
--         IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'community_dashboards') THEN
--             GRANT SELECT ON TABLE new_table TO community_dashboards;
--         END IF;
--     END $$;
-- tests/deploy/test_dashboards.py fails when a dashboard query reads a table the group cannot, and
-- when the group can read a table no dashboard query reads.
--
-- Telemetry's monthly partitions (and TimescaleDB's chunks) need no grant: a query through the
-- parent table is checked against the parent only.
--
-- Roles belong to the whole server, not to this database: the role is made only when missing, and
-- only when the migrating role may make roles (a superuser, as in docker-compose, or CREATEROLE).
-- Otherwise nothing is granted and a WARNING (logged by the cloud) says what an operator must run.

DO $$
DECLARE
    dashboard_tables text[] := ARRAY[
        'sites', 'gateways', 'devices', 'telemetry', 'alarms', 'ingest_messages', 'dead_letters'
    ];
    may_create_roles boolean;
    dashboard_table text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'community_dashboards') THEN
        SELECT rolsuper OR rolcreaterole INTO may_create_roles FROM pg_roles WHERE rolname = current_user;
        IF NOT may_create_roles THEN
            RAISE WARNING 'role community_dashboards is missing and % may not create roles: Grafana''s dashboards have nothing to read', current_user
                USING HINT = format(
                    'As a role that may create roles, run: CREATE ROLE community_dashboards NOLOGIN; '
                    'then as %I: GRANT SELECT ON TABLE %s TO community_dashboards; '
                    'and make Grafana''s login a member: GRANT community_dashboards TO grafana_reader;',
                    current_user, array_to_string(dashboard_tables, ', ')
                );
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE community_dashboards NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made meanwhile, by another database's migration or the init script
        END;
    END IF;
    -- PUBLIC has USAGE on `public` unless someone revoked it; granted here where we may.
    IF has_schema_privilege('public', 'USAGE WITH GRANT OPTION') THEN
        GRANT USAGE ON SCHEMA public TO community_dashboards;
    END IF;
    FOREACH dashboard_table IN ARRAY dashboard_tables LOOP
        EXECUTE format('GRANT SELECT ON TABLE %I TO community_dashboards', dashboard_table);
    END LOOP;
END
$$;
