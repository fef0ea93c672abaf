-- Analytics (cloud/analytics) read a site's tickets created in a range, but only a few short columns
-- of each: with 0017's (site_id, created_at) alone, every ticket in range is still fetched from the
-- table, whose rows are wide (titles, descriptions, notes: about 700 bytes each), so a year of
-- 110,000 tickets is 90 MB of table pages — more than PostgreSQL's default shared_buffers holds.
-- This index carries the columns the views read (INCLUDE), so the planner answers them with an
-- index-only scan of about a fifth of that. bench/analytics.py, 200,000 tickets, a year for all
-- three sites: 300 ms of CPU per /kpis request before, 150 ms after (docs/benchmarks.md).
--
-- It replaces 0017's index (same key). Keep the INCLUDE list in step with the columns that
-- cloud/analytics/{selection,kpis,causes,top,alarm_fix,forecast_report}.py read from tickets: a
-- column missing here makes the scan fetch every row from the table again (still right, slower).
DROP INDEX IF EXISTS tickets_site_created;
CREATE INDEX tickets_analytics ON tickets (site_id, created_at) INCLUDE (
    id, type, category, channel, status, building_id, building, floor, location, unit_id,
    department_id, assignee_id, device_id, alarm_id, alarm_rule,
    first_response_at, resolved_at, cancelled_at, on_hold_since, response_due_at, resolution_due_at,
    rating, recomplaint_of, reopen_count, cause_kind, cause_code
);
