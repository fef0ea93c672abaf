-- Events from gateways that are not measurements: device online/offline, command results,
-- and (later) door events. Kept for the live views and for the record.

CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    site_id      text REFERENCES sites (id),
    gateway_id   text REFERENCES gateways (id),
    device_id    bigint REFERENCES devices (id),
    kind         text NOT NULL,
    detail       text,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at DESC);
CREATE INDEX events_device ON events (device_id, at DESC);
