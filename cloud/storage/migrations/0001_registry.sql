-- Sites, gateways and devices: the cloud is the registry of what exists and where.

CREATE TABLE sites (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateways (
    id                text PRIMARY KEY,
    site_id           text NOT NULL REFERENCES sites (id),
    name              text NOT NULL DEFAULT '',
    version           text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'unknown' CHECK (status IN ('online', 'offline', 'unknown')),
    status_reason     text,
    status_since      timestamptz,
    last_seen_at      timestamptz,
    last_birth_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateways_site ON gateways (site_id);

CREATE TABLE devices (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_id         text NOT NULL REFERENCES gateways (id),
    name               text NOT NULL,
    profile            text,
    protocol           text,
    model              text,
    building           text,
    floor              text,
    room               text,
    -- [{"name": ..., "unit": ..., "type": ...}] as announced in the birth message
    metrics            jsonb NOT NULL DEFAULT '[]',
    -- {"metric": {"value": ..., "ts": ...}}, refreshed by the ingest about once a second
    last_values        jsonb NOT NULL DEFAULT '{}',
    online             boolean,
    online_changed_at  timestamptz,
    last_seen_at       timestamptz,
    announced          boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_id, name)
);
