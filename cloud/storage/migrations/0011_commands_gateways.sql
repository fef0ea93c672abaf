-- Device commands, gateway health, remote configuration and gateway registration (issue 4).

-- The commands a device's profile defines, as its gateway's last birth announced them
-- ([{"name", "description", "params": [{"name", "type", "min", "max", "unit"}], "roles"}]).
ALTER TABLE devices ADD COLUMN commands jsonb NOT NULL DEFAULT '[]';

ALTER TABLE gateways
    -- registration through POST /api/v1/gateways (NULL: known only from its messages)
    ADD COLUMN registered_at            timestamptz,
    ADD COLUMN registered_by            text,
    -- when broker credentials were last issued; the password itself is never stored
    ADD COLUMN credentials_issued_at    timestamptz,
    -- the latest HealthMessage, as sent
    ADD COLUMN health                   jsonb,
    ADD COLUMN health_at                timestamptz,
    -- the configuration version the gateway runs (NULL: its local file), from the newest of
    -- birth, health and config state, and when that report was made
    ADD COLUMN config_running_version   integer,
    ADD COLUMN config_running_at        timestamptz,
    -- the gateway's last answer to a pushed configuration
    ADD COLUMN config_reported_version  integer,
    ADD COLUMN config_reported_status   text CHECK (config_reported_status IN ('applied', 'refused')),
    ADD COLUMN config_reported_reason   text,
    ADD COLUMN config_reported_at       timestamptz;

-- Every configuration version pushed to a gateway; the highest is the desired one.
CREATE TABLE gateway_configs (
    gateway_id    text NOT NULL REFERENCES gateways (id),
    version       integer NOT NULL CHECK (version >= 1),
    document      jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    created_by    text NOT NULL,
    -- the ConfigMessage's id, made once, kept on every republish
    message_id    uuid NOT NULL,
    -- when the broker acknowledged the retained publish (NULL: not yet)
    published_at  timestamptz,
    PRIMARY KEY (gateway_id, version)
);
CREATE INDEX gateway_configs_unpublished ON gateway_configs (created_at) WHERE published_at IS NULL;

-- Commands sent to devices: the row's id is the CommandMessage's id and the ack's command_id.
CREATE TABLE commands (
    id            uuid PRIMARY KEY,
    device_id     bigint NOT NULL REFERENCES devices (id),
    gateway_id    text NOT NULL REFERENCES gateways (id),
    command       text NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}',
    requested_by  text NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'succeeded', 'failed', 'rejected', 'expired')),
    reason        text,
    result        jsonb,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    -- when the broker acknowledged the publish (NULL: waiting for the broker)
    published_at  timestamptz,
    finished_at   timestamptz,
    -- when the gateway's acknowledgement arrived
    acked_at      timestamptz
);
CREATE INDEX commands_device ON commands (device_id, created_at DESC);
CREATE INDEX commands_pending ON commands (expires_at) WHERE state = 'pending';
CREATE INDEX commands_unpublished ON commands (created_at) WHERE state = 'pending' AND published_at IS NULL;
