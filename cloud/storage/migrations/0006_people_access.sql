-- People, places and access: buildings and units, residents and staff, departments, logins,
-- and the audit log. Personal data is stored encrypted (AES-GCM, key from configuration) with a
-- keyed hash beside it for exact-value lookups; see cloud/security/pii.py.

CREATE TABLE buildings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (id),
    code        text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, code)
);

CREATE TABLE units (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    building_id  bigint NOT NULL REFERENCES buildings (id),
    number       text NOT NULL,
    floor        text,
    area_m2      numeric(10, 2) CHECK (area_m2 IS NULL OR area_m2 > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (building_id, number)
);

CREATE TABLE departments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    description      text NOT NULL DEFAULT '',
    manager_user_id  bigint,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Everyone the platform knows by name: residents and owners, staff. `*_enc` is AES-GCM
-- ciphertext, `*_hash` a keyed HMAC of the normalised value (exact-match lookups only).
CREATE TABLE people (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('resident', 'staff')),
    full_name       text NOT NULL,
    phone_enc       bytea,
    phone_hash      bytea,
    id_number_enc   bytea,
    id_number_hash  bytea,
    email_enc       bytea,
    email_hash      bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_phone_hash ON people (phone_hash) WHERE phone_hash IS NOT NULL;
CREATE INDEX people_id_number_hash ON people (id_number_hash) WHERE id_number_hash IS NOT NULL;
CREATE INDEX people_email_hash ON people (email_hash) WHERE email_hash IS NOT NULL;

-- Residents live in units, as owners, tenants or family.
CREATE TABLE unit_occupants (
    unit_id    bigint NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    person_id  bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    relation   text NOT NULL CHECK (relation IN ('owner', 'tenant', 'family')),
    since      date,
    PRIMARY KEY (unit_id, person_id)
);
CREATE INDEX unit_occupants_person ON unit_occupants (person_id);

CREATE TABLE staff (
    person_id         bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    department_id     bigint REFERENCES departments (id),
    title             text NOT NULL DEFAULT '',
    skills            text[] NOT NULL DEFAULT '{}',
    on_duty           boolean NOT NULL DEFAULT true,
    last_assigned_at  timestamptz
);

-- The sites a member of staff works at; they see nothing of the others.
CREATE TABLE staff_sites (
    person_id  bigint NOT NULL REFERENCES staff (person_id) ON DELETE CASCADE,
    site_id    text NOT NULL REFERENCES sites (id),
    PRIMARY KEY (person_id, site_id)
);
CREATE INDEX staff_sites_site ON staff_sites (site_id);

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username = lower(username)),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'manager', 'service_desk', 'technician', 'guard', 'resident')),
    person_id      bigint NOT NULL UNIQUE REFERENCES people (id),
    active         boolean NOT NULL DEFAULT true,
    -- bumped on password change or deactivation: older tokens stop working
    token_version  integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);

ALTER TABLE departments ADD FOREIGN KEY (manager_user_id) REFERENCES users (id);

-- Every write: who, when, what, before and after (personal data only masked).
CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL,
    actor_user_id  bigint REFERENCES users (id),
    actor          text NOT NULL,
    action         text NOT NULL,
    entity         text NOT NULL,
    entity_id      text,
    before         jsonb,
    after          jsonb
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, at DESC);
CREATE INDEX audit_log_at ON audit_log (at DESC);
