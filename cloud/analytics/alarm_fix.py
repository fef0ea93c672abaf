"""How long a device alarm waits for its fix: from the alarm that opened the ticket (its raised_at,
the device's own time of the event) to the ticket's resolved_at.

Counted: tickets an alarm opened (alarm_id set) created in the range. Repeats of the alarm attach
to the open ticket and do not restart the clock: the first alarm is the one that waited.
"""

from typing import Any

import psycopg
from psycopg import sql

from cloud.analytics import figures
from cloud.analytics.grouping import GroupBy, arrange, grouping, labelled
from cloud.analytics.selection import Selection, tune_transaction

GROUPS = (
    GroupBy.NONE,
    GroupBy.DAY,
    GroupBy.WEEK,
    GroupBy.MONTH,
    GroupBy.CATEGORY,
    GroupBy.BUILDING,
    GroupBy.DEVICE,
    GroupBy.RULE,
)
COLUMNS = ["group", "alarm_tickets", "fixed", "fix_mean_s", "fix_p50_s", "fix_p90_s"]

_TICKET_COLUMNS = sql.SQL("t.id, t.created_at, t.category, t.device_id, t.alarm_rule, t.resolved_at, t.alarm_id")
#: seconds from the alarm (alias fa) to the fix
_FIX_S = "date_part('epoch', t.resolved_at) - date_part('epoch', fa.raised_at)"


def _row(label: str, agg: dict[str, Any] | None) -> dict[str, Any]:
    a = agg or {}
    pct = a.get("fix_pct") or [None, None]
    return {
        "group": label,
        "alarm_tickets": a.get("alarm_tickets") or 0,
        "fixed": a.get("fixed") or 0,
        "fix_mean_s": figures.seconds(a.get("fix_mean")),
        "fix_p50_s": figures.seconds(pct[0]),
        "fix_p90_s": figures.seconds(pct[1]),
    }


def alarm_fix(conn: psycopg.Connection, selection: Selection, by: GroupBy) -> list[dict[str, Any]]:
    tune_transaction(conn)
    g = grouping(by)
    aggregated = sql.SQL(
        """SELECT {key} AS gkey, count(*) AS alarm_tickets, count(t.resolved_at) AS fixed,
                  avg({fix_s}) AS fix_mean,
                  percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {fix_s}) AS fix_pct
           FROM {tickets} JOIN alarms fa ON fa.id = t.alarm_id
           GROUP BY 1"""
    ).format(key=g.key, fix_s=sql.SQL(_FIX_S), tickets=selection.tickets(_TICKET_COLUMNS))
    query = labelled(g, aggregated)
    found = conn.execute(query, selection.params()).fetchall()
    w = selection.window
    return arrange(by, found, _row, first_day=w.first_day, last_day=w.last_day, size="alarm_tickets")
