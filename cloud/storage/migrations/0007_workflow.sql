-- The complaint workflow on the tickets table of 0004: who and where, routing, SLA deadlines,
-- every timestamp the KPIs need, process records, feedback, links, notifications, follow-ups.

ALTER TABLE tickets
    ADD COLUMN complainant_id          bigint REFERENCES people (id),
    ADD COLUMN created_by              bigint REFERENCES users (id),
    ADD COLUMN unit_id                 bigint REFERENCES units (id),
    ADD COLUMN building_id             bigint REFERENCES buildings (id),
    ADD COLUMN department_id           bigint REFERENCES departments (id),
    ADD COLUMN assignee_id             bigint REFERENCES users (id),
    -- SLA: deadlines are stored (they survive restarts) and pushed back by time on hold
    ADD COLUMN sla_policy_id           bigint,
    ADD COLUMN response_due_at         timestamptz,
    ADD COLUMN resolution_due_at       timestamptz,
    ADD COLUMN response_warned_at      timestamptz,
    ADD COLUMN resolution_warned_at    timestamptz,
    ADD COLUMN response_breached_at    timestamptz,
    ADD COLUMN resolution_breached_at  timestamptz,
    ADD COLUMN escalation_level        integer NOT NULL DEFAULT 0,
    ADD COLUMN on_hold_since           timestamptz,
    ADD COLUMN held_from_status        text,
    ADD COLUMN paused_seconds          double precision NOT NULL DEFAULT 0,
    -- the KPIs' timestamps
    ADD COLUMN first_response_at       timestamptz,
    ADD COLUMN triaged_at              timestamptz,
    ADD COLUMN assigned_at             timestamptz,
    ADD COLUMN started_at              timestamptz,
    ADD COLUMN resolved_at             timestamptz,
    ADD COLUMN cancelled_at            timestamptz,
    -- the brief's process steps
    ADD COLUMN redirect_reason         text,
    ADD COLUMN redirect_to             text,
    ADD COLUMN plan                    text,
    ADD COLUMN plan_owner_id           bigint REFERENCES users (id),
    ADD COLUMN work_done               text,
    ADD COLUMN result_note             text,
    ADD COLUMN cause_kind              text CHECK (cause_kind IN ('internal', 'external')),
    ADD COLUMN cause_code              text,
    ADD COLUMN cause_note              text,
    -- the resident's feedback
    ADD COLUMN rating                  smallint CHECK (rating BETWEEN 1 AND 5),
    ADD COLUMN rating_comment          text,
    ADD COLUMN rated_at                timestamptz,
    ADD COLUMN reopen_count            integer NOT NULL DEFAULT 0,
    -- links: a complaint about a device with an open alarm ticket; a re-complaint
    ADD COLUMN parent_id               bigint REFERENCES tickets (id),
    ADD COLUMN recomplaint_of          bigint REFERENCES tickets (id);

CREATE INDEX tickets_site_status ON tickets (site_id, status, created_at DESC);
CREATE INDEX tickets_complainant ON tickets (complainant_id, created_at DESC);
CREATE INDEX tickets_unit ON tickets (unit_id, created_at DESC);
CREATE INDEX tickets_assignee ON tickets (assignee_id, status);
CREATE INDEX tickets_department ON tickets (department_id, status);
CREATE INDEX tickets_parent ON tickets (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tickets_response_due ON tickets (response_due_at)
    WHERE first_response_at IS NULL AND response_breached_at IS NULL;
CREATE INDEX tickets_resolution_due ON tickets (resolution_due_at)
    WHERE resolved_at IS NULL AND resolution_breached_at IS NULL;

ALTER TABLE ticket_events
    ADD COLUMN actor_user_id  bigint REFERENCES users (id),
    ADD COLUMN visibility     text NOT NULL DEFAULT 'internal' CHECK (visibility IN ('internal', 'shared'));

-- Photos and documents on a ticket; the file lives under the attachments folder, named by id.
CREATE TABLE attachments (
    id             uuid PRIMARY KEY,
    ticket_id      bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    uploaded_by    bigint REFERENCES users (id),
    original_name  text NOT NULL,
    content_type   text NOT NULL,
    size_bytes     integer NOT NULL,
    sha256         text NOT NULL,
    visibility     text NOT NULL DEFAULT 'shared' CHECK (visibility IN ('internal', 'shared')),
    created_at     timestamptz NOT NULL
);
CREATE INDEX attachments_ticket ON attachments (ticket_id);

-- Which department a ticket goes to, and whether it is assigned by itself.
CREATE TABLE routing_rules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id        text REFERENCES sites (id),
    category       text CHECK (category IN ('service', 'facility', 'environment', 'safety', 'other')),
    subcategory    text,
    building_id    bigint REFERENCES buildings (id),
    department_id  bigint NOT NULL REFERENCES departments (id),
    skill          text,
    auto_assign    boolean NOT NULL DEFAULT false,
    strategy       text NOT NULL DEFAULT 'least_load' CHECK (strategy IN ('round_robin', 'least_load')),
    position       integer NOT NULL DEFAULT 100,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Working hours per weekday ({"mon": [["09:00", "18:00"]], ...}) and holidays.
CREATE TABLE business_calendars (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    schedule    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE calendar_holidays (
    calendar_id  bigint NOT NULL REFERENCES business_calendars (id) ON DELETE CASCADE,
    day          date NOT NULL,
    name         text NOT NULL DEFAULT '',
    PRIMARY KEY (calendar_id, day)
);

-- Time limits per category and priority; no calendar means around the clock.
CREATE TABLE sla_policies (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id             text REFERENCES sites (id),
    category            text CHECK (category IN ('service', 'facility', 'environment', 'safety', 'other')),
    priority            text CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    response_minutes    integer NOT NULL CHECK (response_minutes > 0),
    resolution_minutes  integer NOT NULL CHECK (resolution_minutes > 0),
    calendar_id         bigint REFERENCES business_calendars (id),
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sla_policies_scope ON sla_policies
    (coalesce(site_id, ''), coalesce(category, ''), coalesce(priority, '')) WHERE active;

ALTER TABLE tickets ADD FOREIGN KEY (sla_policy_id) REFERENCES sla_policies (id);

-- In-app messages, one row per person told; e-mail and SMS copies go out from the deliveries.
CREATE TABLE notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    ticket_id   bigint REFERENCES tickets (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    read_at     timestamptz
);
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC);

CREATE TABLE notification_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    sent_at          timestamptz
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE status = 'pending';

-- A visit some time after closing: did the problem come back?
CREATE TABLE followups (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id        bigint NOT NULL UNIQUE REFERENCES tickets (id) ON DELETE CASCADE,
    due_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    done_at          timestamptz,
    done_by          bigint REFERENCES users (id),
    problem_recurred boolean,
    note             text,
    new_ticket_id    bigint REFERENCES tickets (id)
);
CREATE INDEX followups_due ON followups (due_at) WHERE done_at IS NULL;
