-- The ticket list in order of urgency (GET /api/v1/tickets?order=urgency, the technician's view):
-- without this index PostgreSQL joins every ticket in the caller's scope to its names (unit,
-- people, department, linked tickets) and only then keeps the first page of a sort; with it, it
-- reads the tickets in this order and stops at the page. EXPLAIN ANALYZE with 10,000 tickets:
-- 17-23 ms of execution before, under 2 ms after (bench/ticket_api.py, docs/benchmarks.md).
--
-- The expressions must stay exactly those of ORDERS["urgency"] in cloud/domain/tickets.py:
-- the planner uses an expression index only for the same expressions.
CREATE INDEX tickets_urgency ON tickets (
    (CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END),
    coalesce(resolution_due_at, 'infinity'),
    created_at
);
