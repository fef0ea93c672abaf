"""The complaint KPIs by group: volume, response and handling times, resolution, SLA compliance,
satisfaction, re-complaints and reopens (docs/analytics.md has every definition).

One pass over the range's tickets: every figure is an aggregate with a FILTER clause, the
percentiles PostgreSQL's percentile_cont (linear interpolation).
"""

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cloud.analytics import figures
from cloud.analytics.grouping import GroupBy, arrange, grouping, labelled
from cloud.analytics.selection import Selection, tune_transaction

COLUMNS = [
    "group",
    "tickets",
    "cancelled",
    "redirected",
    "responded",
    "response_mean_s",
    "response_p50_s",
    "response_p90_s",
    "resolved",
    "handling_mean_s",
    "handling_p50_s",
    "handling_p90_s",
    "resolution_rate",
    "sla_response_due",
    "sla_response_met",
    "sla_response_rate",
    "sla_resolution_due",
    "sla_resolution_met",
    "sla_resolution_rate",
    "rated",
    "satisfaction_mean",
    "rating_1",
    "rating_2",
    "rating_3",
    "rating_4",
    "rating_5",
    "recomplaints",
    "recomplaint_rate",
    "reopened",
    "reopen_rate",
]

#: the counted tickets' columns the figures need, with the two durations in seconds
_TICKET_COLUMNS = sql.SQL(
    """t.id, t.status, t.created_at, t.first_response_at, t.resolved_at, t.cancelled_at, t.on_hold_since,
       t.response_due_at, t.resolution_due_at, t.rating, t.recomplaint_of, t.reopen_count,
       t.category, t.channel, t.department_id, t.assignee_id, t.device_id, t.alarm_rule,
       date_part('epoch', t.first_response_at) - date_part('epoch', t.created_at) AS response_s,
       date_part('epoch', t.resolved_at) - date_part('epoch', t.first_response_at) AS handling_s"""
)

# A deadline is due once it can be judged: met (answered in time) or missed (answered late, or
# passed while the clock ran). The clock stops at cancelling and pauses on hold (resuming moves the
# stored deadline on), so a deadline passing after either is not yet, or never, missed.
_RUNNING_UNTIL = "least(%(now)s, t.cancelled_at, t.on_hold_since)"
_AGGREGATES = sql.SQL(
    f"""count(*) AS tickets,
       count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE t.status = 'redirected') AS redirected,
       count(t.response_s) AS responded,
       avg(t.response_s) AS response_mean,
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY t.response_s) AS response_pct,
       count(t.resolved_at) AS resolved,
       avg(t.handling_s) AS handling_mean,
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY t.handling_s) AS handling_pct,
       count(*) FILTER (WHERE t.response_due_at IS NOT NULL AND (
           t.first_response_at IS NOT NULL OR t.response_due_at <= {_RUNNING_UNTIL})) AS sla_response_due,
       count(*) FILTER (WHERE t.first_response_at <= t.response_due_at) AS sla_response_met,
       count(*) FILTER (WHERE t.resolution_due_at IS NOT NULL AND t.status <> 'redirected' AND (
           t.resolved_at IS NOT NULL OR t.resolution_due_at <= {_RUNNING_UNTIL})) AS sla_resolution_due,
       count(*) FILTER (WHERE t.resolved_at <= t.resolution_due_at AND t.status <> 'redirected')
           AS sla_resolution_met,
       count(t.rating) AS rated,
       avg(t.rating)::float8 AS satisfaction_mean,
       count(*) FILTER (WHERE t.rating = 1) AS rating_1,
       count(*) FILTER (WHERE t.rating = 2) AS rating_2,
       count(*) FILTER (WHERE t.rating = 3) AS rating_3,
       count(*) FILTER (WHERE t.rating = 4) AS rating_4,
       count(*) FILTER (WHERE t.rating = 5) AS rating_5,
       count(t.recomplaint_of) AS recomplaints,
       count(*) FILTER (WHERE t.reopen_count > 0) AS reopened,
       count(*) FILTER (WHERE t.resolved_at IS NOT NULL OR t.reopen_count > 0) AS resolved_ever"""
)


def _row(label: str, agg: dict[str, Any] | None) -> dict[str, Any]:
    """One output row from the aggregates (None: an empty period, zeros and nulls)."""
    a = agg or {}
    count = {k: a.get(k) or 0 for k in ("tickets", "cancelled", "redirected", "responded", "resolved", "rated")}
    response_pct = a.get("response_pct") or [None, None]
    handling_pct = a.get("handling_pct") or [None, None]
    due_resp, met_resp = a.get("sla_response_due") or 0, a.get("sla_response_met") or 0
    due_res, met_res = a.get("sla_resolution_due") or 0, a.get("sla_resolution_met") or 0
    ratings = [a.get(f"rating_{k}") or 0 for k in range(1, 6)]
    recomplaints, reopened = a.get("recomplaints") or 0, a.get("reopened") or 0
    return {
        "group": label,
        **{k: count[k] for k in ("tickets", "cancelled", "redirected", "responded")},
        "response_mean_s": figures.seconds(a.get("response_mean")),
        "response_p50_s": figures.seconds(response_pct[0]),
        "response_p90_s": figures.seconds(response_pct[1]),
        "resolved": count["resolved"],
        "handling_mean_s": figures.seconds(a.get("handling_mean")),
        "handling_p50_s": figures.seconds(handling_pct[0]),
        "handling_p90_s": figures.seconds(handling_pct[1]),
        # cancelled and redirected tickets are not the office's to resolve
        "resolution_rate": figures.rate(count["resolved"], count["tickets"] - count["cancelled"] - count["redirected"]),
        "sla_response_due": due_resp,
        "sla_response_met": met_resp,
        "sla_response_rate": figures.rate(met_resp, due_resp),
        "sla_resolution_due": due_res,
        "sla_resolution_met": met_res,
        "sla_resolution_rate": figures.rate(met_res, due_res),
        "rated": count["rated"],
        "satisfaction_mean": figures.rounded(a.get("satisfaction_mean"), figures.SCORE_PLACES),
        **{f"rating_{k}": ratings[k - 1] for k in range(1, 6)},
        "recomplaints": recomplaints,
        "recomplaint_rate": figures.rate(recomplaints, count["tickets"]),
        "reopened": reopened,
        "reopen_rate": figures.rate(reopened, a.get("resolved_ever") or 0),
    }


def kpis(conn: psycopg.Connection, selection: Selection, by: GroupBy, *, now: datetime) -> list[dict[str, Any]]:
    """One row per group, in the order of COLUMNS."""
    tune_transaction(conn)
    g = grouping(by)
    aggregated = sql.SQL("SELECT {key} AS gkey, {aggregates} FROM {tickets} GROUP BY 1").format(
        key=g.key, aggregates=_AGGREGATES, tickets=selection.tickets(_TICKET_COLUMNS)
    )
    query = labelled(g, aggregated)
    found = conn.execute(query, {**selection.params(), "now": now}).fetchall()
    w = selection.window
    return arrange(by, found, _row, first_day=w.first_day, last_day=w.last_day, size="tickets")
