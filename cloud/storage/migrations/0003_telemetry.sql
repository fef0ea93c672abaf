-- Telemetry: a TimescaleDB hypertable when the extension is available, otherwise a table
-- partitioned by month. Both answer the same queries through community_time_bucket().
--
-- The TimescaleDB branch is deliberately small. It is NOT exercised by the test suite: the
-- extension cannot be installed on the machines the tests run on (docker-compose uses it).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries', true) LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $sql$
            CREATE TABLE telemetry (
                time        timestamptz NOT NULL,
                device_id   bigint NOT NULL,
                metric      text NOT NULL,
                value       double precision,
                value_text  text
            )
        $sql$;
        PERFORM create_hypertable('telemetry', 'time', chunk_time_interval => interval '1 day');
        EXECUTE $sql$
            ALTER TABLE telemetry SET (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'device_id, metric',
                timescaledb.compress_orderby = 'time DESC'
            )
        $sql$;
        PERFORM add_compression_policy('telemetry', interval '7 days');
        -- retention: the ingest's housekeeping drops old chunks (COMMUNITY_TELEMETRY_RETENTION_DAYS)
        EXECUTE $sql$
            CREATE FUNCTION community_time_bucket(width interval, ts timestamptz)
            RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS 'SELECT time_bucket(width, ts)'
        $sql$;
    ELSE
        EXECUTE $sql$
            CREATE TABLE telemetry (
                time        timestamptz NOT NULL,
                device_id   bigint NOT NULL,
                metric      text NOT NULL,
                value       double precision,
                value_text  text
            ) PARTITION BY RANGE (time)
        $sql$;
        -- Monthly partitions are created ahead by the ingest (cloud/storage/telemetry.py) and
        -- dropped when older than the retention.
        -- date_bin with TimescaleDB's default origin (a Monday), so both buckets agree.
        EXECUTE $sql$
            CREATE FUNCTION community_time_bucket(width interval, ts timestamptz)
            RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $f$ SELECT date_bin(width, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') $f$
        $sql$;
    END IF;
END
$$;

CREATE INDEX telemetry_device_metric_time ON telemetry (device_id, metric, time DESC);
