-- Analytics (cloud/analytics) read a site's tickets created in a range, but only a few short columns
-- of each. With 0017's (site_id, created_at) alone, every ticket in range is still fetched from the
-- table, whose rows are wide (titles, descriptions, notes: about 470 bytes each); for a year of three
-- estates (110,000 of 200,000 tickets) the planner reads the whole table instead (94 MB, more than
-- the default shared_buffers keeps beside everything else). This index carries the columns the views
-- read (INCLUDE), so they are answered by an index-only scan: 23 MB for that year, no table page.
-- bench/analytics.py, 200,000 tickets, a year: CPU per request of /kpis for all three estates 250 ms
-- before, 150 ms after; /causes 150 ms before, 60 ms after (docs/benchmarks.md). 41 MB of index.
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
