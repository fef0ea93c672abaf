-- Face and card entry (issue 5): consent and face enrolments, cards, doors learned from gateway
-- configs, time profiles, holidays, rights, visitor passes, per-gateway whitelists, access events.

-- A person's recorded consent to face entry; withdrawing it deletes the row (the audit log keeps
-- who recorded and who withdrew it, and when).
CREATE TABLE face_consents (
    person_id    bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    method       text NOT NULL CHECK (method IN ('paper_form', 'app', 'in_person')),
    note         text NOT NULL DEFAULT '',
    given_at     timestamptz NOT NULL,
    recorded_by  text NOT NULL
);

-- One enrolled face: the 128-d encoding, AES-GCM encrypted (cloud/security/biometric.py), and
-- the photo's file id when photos are kept (COMMUNITY_FACE_KEEP_PHOTOS).
CREATE TABLE face_enrolments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    encoding_enc  bytea NOT NULL,
    photo_id      uuid,
    created_at    timestamptz NOT NULL,
    created_by    text NOT NULL
);
CREATE INDEX face_enrolments_person ON face_enrolments (person_id);

-- Access cards; the number as upper-case hex/decimal digits, unique across the installation.
CREATE TABLE cards (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    number       text NOT NULL UNIQUE,
    valid_from   timestamptz,
    valid_until  timestamptz,
    lost_at      timestamptz,
    lost_by      text,
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL
);
CREATE INDEX cards_person ON cards (person_id);

-- Doors as the gateways' pushed configurations name them (access.doors); replaced on every push.
CREATE TABLE doors (
    gateway_id  text NOT NULL REFERENCES gateways (id),
    name        text NOT NULL,
    site_id     text NOT NULL REFERENCES sites (id),
    building    text,
    floor       text,
    room        text,
    PRIMARY KEY (gateway_id, name)
);
CREATE INDEX doors_site_building ON doors (site_id, building);

CREATE TABLE time_profiles (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id      text NOT NULL REFERENCES sites (id),
    name         text NOT NULL,
    weekdays     integer[] NOT NULL,
    -- [{"start": "07:00:00", "end": "22:00:00"}], local time of the site
    segments     jsonb NOT NULL,
    on_holidays  boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL
);

CREATE TABLE holidays (
    site_id  text NOT NULL REFERENCES sites (id),
    day      date NOT NULL,
    name     text NOT NULL DEFAULT '',
    PRIMARY KEY (site_id, day)
);

-- A right: these doors, at the times of a profile (NULL: any time), for one person or for the
-- residents of one building.
CREATE TABLE access_rights (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id          text NOT NULL REFERENCES sites (id),
    person_id        bigint REFERENCES people (id) ON DELETE CASCADE,
    building_id      bigint REFERENCES buildings (id) ON DELETE CASCADE,
    time_profile_id  bigint REFERENCES time_profiles (id),
    -- [{"gateway_id": ..., "door": ...}]
    doors            jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    created_by       text NOT NULL,
    CHECK ((person_id IS NULL) <> (building_id IS NULL))
);
CREATE INDEX access_rights_site ON access_rights (site_id);

-- Visitor passes: only a salt and the hashes of the PIN and QR token are kept (contract.access.hash_secret).
CREATE TABLE visitor_passes (
    id              uuid PRIMARY KEY,
    site_id         text NOT NULL REFERENCES sites (id),
    host_person_id  bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    guest_name      text NOT NULL,
    doors           jsonb NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_until     timestamptz NOT NULL,
    uses_total      integer NOT NULL CHECK (uses_total >= 1),
    uses_left       integer NOT NULL CHECK (uses_left >= 0),
    salt            text NOT NULL,
    pin_hash        text NOT NULL,
    qr_hash         text NOT NULL,
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX visitor_passes_host ON visitor_passes (host_person_id);

-- Each gateway's whitelist: the version last built and a digest of each of its entries (the diff
-- base: no encodings), a flag to rebuild it, and a flag that the gateway asked for the full one.
CREATE TABLE whitelist_state (
    gateway_id      text PRIMARY KEY REFERENCES gateways (id),
    version         integer NOT NULL DEFAULT 0,
    snapshot        jsonb,
    dirty           boolean NOT NULL DEFAULT true,
    full_requested  boolean NOT NULL DEFAULT false,
    built_at        timestamptz
);

-- Whitelist messages to publish (QoS 1, not retained); the row's id is the message id. The body
-- holds face encodings, so it is kept encrypted (like the encodings) and dropped once published.
CREATE TABLE whitelist_messages (
    id            uuid PRIMARY KEY,
    gateway_id    text NOT NULL REFERENCES gateways (id),
    version       integer NOT NULL,
    base_version  integer,
    people        integer NOT NULL DEFAULT 0,
    passes        integer NOT NULL DEFAULT 0,
    removed       integer NOT NULL DEFAULT 0,
    body_enc      bytea,
    created_at    timestamptz NOT NULL,
    published_at  timestamptz
);
CREATE INDEX whitelist_messages_unpublished ON whitelist_messages (created_at) WHERE published_at IS NULL;
CREATE INDEX whitelist_messages_gateway ON whitelist_messages (gateway_id, created_at DESC);

-- Every decision at a door; the id is the AccessEvent's message id (stored once).
CREATE TABLE access_events (
    id                 uuid PRIMARY KEY,
    at                 timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    site_id            text NOT NULL,
    gateway_id         text NOT NULL,
    door               text NOT NULL,
    method             text NOT NULL,
    granted            boolean NOT NULL,
    reason             text,
    person_id          bigint REFERENCES people (id) ON DELETE SET NULL,
    pass_id            uuid REFERENCES visitor_passes (id) ON DELETE SET NULL,
    -- the host of the pass at the time of use: a pass's uses are logged against the resident
    host_person_id     bigint REFERENCES people (id) ON DELETE SET NULL,
    card               text,
    distance           double precision,
    offline            boolean NOT NULL DEFAULT false,
    whitelist_version  integer,
    source             text,
    detail             text,
    -- the JPEG snapshot, a file under the attachments folder named by this id
    snapshot_id        uuid
);
CREATE INDEX access_events_at ON access_events (at DESC);
CREATE INDEX access_events_person ON access_events (person_id, at DESC);
CREATE INDEX access_events_host ON access_events (host_person_id, at DESC);
CREATE INDEX access_events_door ON access_events (gateway_id, door, at DESC);

-- A camera's snapshot of an alarm (EventMessage kind "alarm_snapshot"): the file id.
ALTER TABLE alarms ADD COLUMN snapshot_id uuid;
