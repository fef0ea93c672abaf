-- How many telemetry points each committed telemetry message stored, so that the ingest rate
-- can be read in points per second by the time the cloud stored them (Grafana's "Ingest rate
-- and lag" dashboard); the telemetry rows themselves carry only the time they were measured.
-- NULL for other kinds of message and for messages stored before this column existed.
ALTER TABLE ingest_messages ADD COLUMN points integer;
