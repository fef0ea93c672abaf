-- When the assignee is told a deadline is near: computed with the deadlines, so the scheduler
-- only compares times.
ALTER TABLE tickets
    ADD COLUMN response_warn_at    timestamptz,
    ADD COLUMN resolution_warn_at  timestamptz;
CREATE INDEX tickets_response_warn ON tickets (response_warn_at)
    WHERE response_warned_at IS NULL AND first_response_at IS NULL;
CREATE INDEX tickets_resolution_warn ON tickets (resolution_warn_at)
    WHERE resolution_warned_at IS NULL AND resolved_at IS NULL;
