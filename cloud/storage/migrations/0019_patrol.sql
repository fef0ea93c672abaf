-- Security patrol (issue 7): checkpoints with NFC or QR tags, routes of ordered checkpoints,
-- schedules of rounds, guards assigned to them, the rounds and each checkpoint's record, and
-- every scan (counted or not). The rules: docs/patrol.md.

-- A place a guard must pass, marked by a tag: an NFC uid or the text of a QR code. A retired
-- checkpoint keeps its history but frees its tag and code.
CREATE TABLE patrol_checkpoints (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (id),
    code        text NOT NULL,
    name        text NOT NULL,
    place       text NOT NULL DEFAULT '',
    tag         text NOT NULL,
    tag_kind    text NOT NULL CHECK (tag_kind IN ('nfc', 'qr')),
    created_at  timestamptz NOT NULL,
    retired_at  timestamptz
);
CREATE UNIQUE INDEX patrol_checkpoints_code ON patrol_checkpoints (site_id, code) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX patrol_checkpoints_tag ON patrol_checkpoints (site_id, tag) WHERE retired_at IS NULL;

-- A route: checkpoints in order. `late_minutes`: how long after a checkpoint's window a scan
-- still counts (as late) before the checkpoint is missed; the round ends that long after the
-- last window. Severities NULL: the settings' (COMMUNITY_PATROL_*_SEVERITY).
CREATE TABLE patrol_routes (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id           text NOT NULL REFERENCES sites (id),
    name              text NOT NULL,
    late_minutes      integer NOT NULL DEFAULT 15 CHECK (late_minutes >= 0),
    missed_severity   text CHECK (missed_severity IN ('critical', 'major', 'minor', 'warning')),
    late_severity     text CHECK (late_severity IN ('critical', 'major', 'minor', 'warning')),
    created_at        timestamptz NOT NULL,
    retired_at        timestamptz
);
CREATE UNIQUE INDEX patrol_routes_name ON patrol_routes (site_id, name) WHERE retired_at IS NULL;

-- The route's checkpoints: expected `offset_minutes` after the round's start, give or take
-- `tolerance_minutes` (the due window).
CREATE TABLE patrol_route_checkpoints (
    route_id           bigint NOT NULL REFERENCES patrol_routes (id) ON DELETE CASCADE,
    position           integer NOT NULL CHECK (position >= 1),
    checkpoint_id      bigint NOT NULL REFERENCES patrol_checkpoints (id),
    offset_minutes     integer NOT NULL CHECK (offset_minutes >= 0),
    tolerance_minutes  integer NOT NULL CHECK (tolerance_minutes >= 0),
    PRIMARY KEY (route_id, position)
);
CREATE INDEX patrol_route_checkpoints_checkpoint ON patrol_route_checkpoints (checkpoint_id);

-- When rounds of a route start, in the site's time zone: at listed times of day, or every N
-- minutes from `from_time` up to `until_time` (inclusive); on the listed ISO weekdays (1 = Monday).
CREATE TABLE patrol_schedules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route_id       bigint NOT NULL REFERENCES patrol_routes (id),
    weekdays       integer[] NOT NULL,
    times          time[],
    every_minutes  integer CHECK (every_minutes >= 5),
    from_time      time,
    until_time     time,
    created_at     timestamptz NOT NULL,
    retired_at     timestamptz,
    CHECK ((times IS NOT NULL) <> (every_minutes IS NOT NULL)),
    CHECK (every_minutes IS NULL OR (from_time IS NOT NULL AND until_time IS NOT NULL))
);
CREATE INDEX patrol_schedules_route ON patrol_schedules (route_id);

-- A guard walks the rounds of a schedule (on the listed ISO weekdays; NULL: every day). When
-- several match, the oldest assignment wins.
CREATE TABLE patrol_assignments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id  bigint NOT NULL REFERENCES patrol_schedules (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users (id),
    weekdays     integer[],
    created_at   timestamptz NOT NULL
);
CREATE INDEX patrol_assignments_schedule ON patrol_assignments (schedule_id);

-- One round per scheduled start, made ahead by the scheduler pass.
CREATE TABLE patrol_rounds (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id        text NOT NULL REFERENCES sites (id),
    route_id       bigint NOT NULL REFERENCES patrol_routes (id),
    schedule_id    bigint REFERENCES patrol_schedules (id),
    planned_start  timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    guard_user_id  bigint REFERENCES users (id),
    state          text NOT NULL DEFAULT 'planned'
                       CHECK (state IN ('planned', 'in_progress', 'completed', 'incomplete')),
    started_at     timestamptz,
    finished_at    timestamptz,
    created_at     timestamptz NOT NULL,
    UNIQUE (schedule_id, planned_start)
);
CREATE INDEX patrol_rounds_site_time ON patrol_rounds (site_id, planned_start DESC);
CREATE INDEX patrol_rounds_open ON patrol_rounds (state, planned_start) WHERE state IN ('planned', 'in_progress');

-- Every scan, counted on a round or not: by a reader at the checkpoint (over MQTT) or a guard's
-- phone (the API). `outcome` says what it counted for; unknown tags are kept too.
CREATE TABLE patrol_scans (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id         text REFERENCES sites (id),
    tag             text NOT NULL,
    checkpoint_id   bigint REFERENCES patrol_checkpoints (id),
    at              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    via             text NOT NULL CHECK (via IN ('reader', 'phone')),
    gateway_id      text REFERENCES gateways (id),
    device          text,
    card            text,
    message_id      uuid,
    user_id         bigint REFERENCES users (id),
    round_id        bigint REFERENCES patrol_rounds (id),
    position        integer,
    outcome         text NOT NULL CHECK (outcome IN ('on_time', 'late', 'early', 'repeat', 'no_round', 'unknown_tag')),
    reason          text NOT NULL DEFAULT ''
);
CREATE INDEX patrol_scans_site_at ON patrol_scans (site_id, at DESC);

-- Each checkpoint of a round: its due window, and what happened.
CREATE TABLE patrol_round_checkpoints (
    round_id         bigint NOT NULL REFERENCES patrol_rounds (id) ON DELETE CASCADE,
    position         integer NOT NULL,
    checkpoint_id    bigint NOT NULL REFERENCES patrol_checkpoints (id),
    window_start     timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    -- after this the checkpoint is missed (a scan until the round's end still makes it late)
    late_until       timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'on_time', 'late', 'missed')),
    scanned_at       timestamptz,
    scanned_by       bigint REFERENCES users (id),
    scanned_via      text CHECK (scanned_via IN ('reader', 'phone')),
    scan_id          bigint REFERENCES patrol_scans (id),
    missed_at        timestamptz,
    -- set when the pass raised this checkpoint-round's one alarm
    alarm_raised_at  timestamptz,
    alarm_id         bigint REFERENCES alarms (id),
    PRIMARY KEY (round_id, position)
);
CREATE INDEX patrol_round_checkpoints_due ON patrol_round_checkpoints (late_until) WHERE status = 'pending';
CREATE INDEX patrol_round_checkpoints_alarm ON patrol_round_checkpoints (status)
    WHERE alarm_raised_at IS NULL AND status IN ('late', 'missed');
