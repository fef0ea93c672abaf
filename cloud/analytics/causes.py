"""What caused the resolved tickets: internal or external, by cause code, per group.

A resolved ticket is one with resolved_at set (resolved or closed after it): a ticket reopened
since and not resolved again has no resolved_at and is not counted, although its earlier cause is
still on the row. Tickets resolved without a cause are one row with kind and code "(none)".
"""

from typing import Any

import psycopg
from psycopg import sql

from cloud.analytics import figures
from cloud.analytics.grouping import ALL_LABEL, NONE_LABEL, GroupBy, grouping, label_of, labelled
from cloud.analytics.selection import Selection, tune_transaction

GROUPS = (GroupBy.NONE, GroupBy.CATEGORY, GroupBy.BUILDING)
COLUMNS = ["group", "cause_kind", "cause_code", "tickets", "share"]

_TICKET_COLUMNS = sql.SQL("t.id, t.category, t.resolved_at, t.cause_kind, t.cause_code")


def causes(conn: psycopg.Connection, selection: Selection, by: GroupBy) -> list[dict[str, Any]]:
    """Rows by group (most tickets first), cause kind and code; share is of the group's resolved tickets."""
    tune_transaction(conn)
    g = grouping(by)
    aggregated = sql.SQL(
        """SELECT {key} AS gkey, t.cause_kind, t.cause_code, count(*) AS tickets,
                  sum(count(*)) OVER (PARTITION BY {key}) AS group_total
           FROM {tickets}
           WHERE t.resolved_at IS NOT NULL
           GROUP BY 1, 2, 3"""
    ).format(key=g.key, tickets=selection.tickets(_TICKET_COLUMNS))
    query = labelled(g, aggregated)
    rows = []
    for r in conn.execute(query, selection.params()).fetchall():
        no_cause = r["cause_kind"] is None and r["cause_code"] is None
        rows.append(
            {
                "group": ALL_LABEL if by == GroupBy.NONE else label_of(r["glabel"]),
                "cause_kind": r["cause_kind"] or NONE_LABEL,
                "cause_code": r["cause_code"] or NONE_LABEL,
                "tickets": r["tickets"],
                "share": figures.rate(r["tickets"], int(r["group_total"])),
                "_order": (-int(r["group_total"]), no_cause, -r["tickets"]),
            }
        )
    rows.sort(key=lambda r: (r["_order"][0], r["group"], *r["_order"][1:], r["cause_kind"], r["cause_code"]))
    for r in rows:
        del r["_order"]
    return rows
