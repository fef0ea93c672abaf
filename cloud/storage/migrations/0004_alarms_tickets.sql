-- Alarms and the tickets they open. The ticket table is the one model for complaints, repair
-- requests and alarm tickets that the complaint workflow builds on.

CREATE TABLE tickets (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number              text NOT NULL UNIQUE,
    type                text NOT NULL CHECK (type IN ('complaint', 'repair', 'safety')),
    category            text NOT NULL CHECK (category IN ('service', 'facility', 'environment', 'safety', 'other')),
    subcategory         text,
    channel             text NOT NULL CHECK (channel IN ('app', 'web', 'phone', 'walk_in', 'device')),
    status              text NOT NULL DEFAULT 'new' CHECK (status IN (
                            'new', 'triaged', 'assigned', 'in_progress', 'on_hold', 'resolved',
                            'closed', 'redirected', 'reopened', 'cancelled')),
    priority            text NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    title               text NOT NULL,
    description         text NOT NULL DEFAULT '',
    site_id             text REFERENCES sites (id),
    building            text,
    floor               text,
    location            text,
    -- what raised it, for tickets a device opened
    source_type         text CHECK (source_type IN ('device', 'gateway', 'cloud')),
    gateway_id          text REFERENCES gateways (id),
    device_id           bigint REFERENCES devices (id),
    alarm_rule          text,
    -- one open ticket per source and rule: repeats attach to it
    alarm_key           text,
    occurrences         integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    last_occurrence_at  timestamptz,
    closed_at           timestamptz
);
CREATE UNIQUE INDEX tickets_one_open_per_alarm_key ON tickets (alarm_key)
    WHERE alarm_key IS NOT NULL AND status NOT IN ('closed', 'cancelled');
CREATE INDEX tickets_status ON tickets (status, created_at DESC);
CREATE INDEX tickets_created ON tickets (created_at DESC);

-- Per-day counters behind the readable ticket numbers (T-20261124-0007).
CREATE TABLE ticket_counters (
    day         date PRIMARY KEY,
    last_value  integer NOT NULL
);

-- The ticket's timeline: every transition, comment and alarm occurrence, with actor and time.
CREATE TABLE ticket_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    kind        text NOT NULL,
    body        text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, at, id);

CREATE TABLE alarms (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_type       text NOT NULL CHECK (source_type IN ('device', 'gateway', 'cloud')),
    site_id           text REFERENCES sites (id),
    gateway_id        text REFERENCES gateways (id),
    device_id         bigint REFERENCES devices (id),
    rule              text NOT NULL,
    -- identifies "the same alarm" across repeats: device:<id>:<rule>, gateway:<id>:<rule>, ...
    alarm_key         text NOT NULL,
    severity          text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    state             text NOT NULL CHECK (state IN ('active', 'acknowledged', 'cleared')),
    message           text NOT NULL DEFAULT '',
    value             jsonb,
    ticket_type       text NOT NULL DEFAULT 'none' CHECK (ticket_type IN ('repair', 'safety', 'none')),
    ticket_id         bigint REFERENCES tickets (id),
    raised_at         timestamptz NOT NULL,
    received_at       timestamptz NOT NULL,
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    ack_note          text,
    cleared_at        timestamptz,
    clear_value       jsonb
);
-- at most one alarm not yet cleared per source and rule
CREATE UNIQUE INDEX alarms_one_uncleared_per_key ON alarms (alarm_key) WHERE state <> 'cleared';
CREATE INDEX alarms_state_raised ON alarms (state, raised_at DESC);
CREATE INDEX alarms_raised ON alarms (raised_at DESC);
CREATE INDEX alarms_device ON alarms (device_id, raised_at DESC);

ALTER TABLE tickets ADD COLUMN alarm_id bigint REFERENCES alarms (id);
