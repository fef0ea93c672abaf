"""Time-driven workflow: deadlines coming up, deadlines missed, feedback that never came.

Each pass claims its rows with a conditional UPDATE … RETURNING, so a change happens once even
when several cloud processes run passes at the same moment: the second UPDATE finds the row
already changed and returns nothing. Everything a pass does to a ticket (the mark, the raised
priority, the timeline entry, the notifications) commits in the same transaction.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from cloud.domain import audit, workflow
from cloud.domain.tickets import add_event

log = logging.getLogger(__name__)

#: tickets whose clocks run: not finished, not waiting for the resident, not on hold
RUNNING = "status NOT IN ('resolved', 'closed', 'cancelled', 'redirected', 'on_hold')"


@dataclass
class PassCounts:
    warned: int = 0
    breached: int = 0
    closed: int = 0


def _warn(conn: psycopg.Connection, now: datetime, which: str) -> int:
    met = "first_response_at" if which == "response" else "resolved_at"
    rows = conn.execute(
        f"""UPDATE tickets SET {which}_warned_at = %(now)s
            WHERE {which}_warn_at <= %(now)s AND {which}_warned_at IS NULL AND {met} IS NULL
              AND {which}_breached_at IS NULL AND {RUNNING}
            RETURNING *""",
        {"now": now},
    ).fetchall()
    for t in rows:
        due = t[f"{which}_due_at"]
        who = [t["assignee_id"]] if t["assignee_id"] else workflow.department_managers(conn, t)
        add_event(conn, t["id"], at=now, kind=f"{which}_due_soon", body=f"The {which} deadline ({due}) is near.")
        workflow.tell(conn, who, t, "due_soon", f"{which} due soon", f"Due {due.isoformat()}: {t['title']}", now)
    return len(rows)


def _breach(conn: psycopg.Connection, now: datetime, which: str) -> int:
    met = "first_response_at" if which == "response" else "resolved_at"
    rows = conn.execute(
        f"""UPDATE tickets SET {which}_breached_at = %(now)s, escalation_level = escalation_level + 1,
                priority = CASE priority WHEN 'low' THEN 'normal' WHEN 'normal' THEN 'high' ELSE 'urgent' END,
                updated_at = %(now)s
            WHERE {which}_due_at <= %(now)s AND {which}_breached_at IS NULL AND {met} IS NULL AND {RUNNING}
            RETURNING *, (SELECT priority FROM tickets x WHERE x.id = tickets.id) AS old_priority""",
        {"now": now},
    ).fetchall()
    for t in rows:
        body = (
            f"The {which} deadline ({t[f'{which}_due_at'].isoformat()}) was missed: escalated to the department "
            f"manager, priority {t['old_priority']} -> {t['priority']}."
        )
        add_event(conn, t["id"], at=now, kind=f"{which}_breached", body=body, data={"priority": t["priority"]})
        audit.record(
            conn,
            actor=workflow.SYSTEM,
            action=f"{which}_breached",
            entity="tickets",
            entity_id=t["number"],
            now=now,
            before={"priority": t["old_priority"]},
            after={"priority": t["priority"], "escalation_level": t["escalation_level"]},
        )
        managers = workflow.department_managers(conn, t)
        workflow.tell(conn, managers, t, "sla_breached", f"{which} deadline missed", body, now)
        log.warning("ticket %s: %s deadline missed, escalated", t["number"], which)
    return len(rows)


def _auto_close(conn: psycopg.Connection, now: datetime, cfg: workflow.Settings) -> int:
    rows = conn.execute(
        """SELECT * FROM tickets WHERE status = 'resolved' AND resolved_at <= %s
           ORDER BY resolved_at LIMIT 200 FOR UPDATE SKIP LOCKED""",
        (now - timedelta(days=cfg.feedback_days),),
    ).fetchall()
    for t in rows:
        workflow.close(
            conn, t, None, now, cfg, note=f"Closed: no answer from the resident within {cfg.feedback_days:g} days."
        )
    return len(rows)


def run_pass(conn: psycopg.Connection, now: datetime, cfg: workflow.Settings) -> PassCounts:
    """One pass; each step in its own transaction."""
    counts = PassCounts()
    for which in ("response", "resolution"):
        with conn.transaction():
            counts.breached += _breach(conn, now, which)
        with conn.transaction():
            counts.warned += _warn(conn, now, which)
    with conn.transaction():
        counts.closed += _auto_close(conn, now, cfg)
    return counts
