"""The tickets an analytics request counts: those of the window's sites created in its range, with
the request's building, type and category.

One SQL fragment for every view, so that /kpis, /causes, /top and /alarm-fix count the same
tickets. The views read only columns that migration 0018's covering index `tickets_analytics`
(site_id, created_at) carries, so a range is an index-only scan: a view reading another ticket
column must add it to that index (in a new migration), or every row is fetched from the table again.
"""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cloud.analytics.scope import Window

#: the building a ticket is in: its building_id, else the building of its site whose code or name
#: the ticket's building text gives (a complaint about a device, filed without a unit, has only the
#: device's building text); NULL when neither
TICKET_BUILDING = sql.SQL(
    """coalesce(t.building_id, (SELECT bb.id FROM buildings bb
                                WHERE bb.site_id = t.site_id AND t.building IN (bb.code, bb.name)
                                ORDER BY bb.id LIMIT 1))"""
)
#: the same for a device (alias d) behind a gateway (alias g): by the device's building text
DEVICE_BUILDING = sql.SQL(
    """(SELECT bb.id FROM buildings bb
        WHERE bb.site_id = g.site_id AND d.building IN (bb.code, bb.name) ORDER BY bb.id LIMIT 1)"""
)


def tune_transaction(conn: psycopg.Connection) -> None:
    """Settings for the rest of the transaction (the request's, so the pooled connection gets its
    own back) that keep these queries fast:

    - a custom plan for every execution: psycopg prepares a statement run five times on one
      connection, and PostgreSQL then may keep a generic plan that cannot know how long the range
      is (a day or a year, an index or a full scan); measured two to three times slower;
    - no JIT compilation: over 100,000 tickets PostgreSQL thinks the queries costly enough to
      compile, and compiling took longer (about 0.3 s) than running them;
    - sort memory for a year of tickets: the percentiles need the rows sorted by group, and at the
      default 4 MB a year of three estates (100,000 tickets) was sorted on disk.
    """
    conn.execute(  # set_config(..., true) is SET LOCAL; one round trip for the three
        """SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true),
                  set_config('work_mem', '32MB', true)"""
    )


@dataclass(frozen=True)
class Selection:
    window: Window
    #: complaint, repair or safety; None: every type
    ticket_type: str | None
    category: str | None

    def params(self) -> dict[str, Any]:
        """The parameters every fragment below refers to."""
        return {
            "sites": self.window.site_ids,
            "start": self.window.start,
            "end": self.window.end,
            "building": self.window.building_id,
            "type": self.ticket_type,
            "category": self.category,
            "tz": self.window.tz.key,
            "multi_site": len(self.window.site_ids) > 1,
        }

    def tickets(self, columns: sql.Composable) -> sql.Composed:
        """A derived table `t` of the counted tickets: the given columns of `tickets t`, plus
        `building_ref` (the ticket's building, see TICKET_BUILDING)."""
        return sql.SQL(
            """(SELECT * FROM (
                   SELECT {columns}, {building} AS building_ref
                   FROM tickets t
                   WHERE t.site_id = ANY(%(sites)s) AND t.created_at >= %(start)s AND t.created_at < %(end)s
                     AND (%(type)s::text IS NULL OR t.type = %(type)s)
                     AND (%(category)s::text IS NULL OR t.category = %(category)s)
               ) sel WHERE %(building)s::bigint IS NULL OR sel.building_ref = %(building)s) t"""
        ).format(columns=columns, building=TICKET_BUILDING)
