"""Put a ticket's SLA deadlines on it: the policy for its category and priority, counted on the
policy's calendar in the site's time zone, pushed back by the working time spent on hold."""

from datetime import datetime, timedelta

import psycopg

from cloud.domain import sla
from cloud.domain.business_hours import BusinessCalendar, add_business_time


def _calendar(conn: psycopg.Connection, ticket: dict, calendar_id: int | None) -> BusinessCalendar:
    row = conn.execute("SELECT timezone FROM sites WHERE id = %s", (ticket["site_id"],)).fetchone()
    return sla.load_calendar(conn, calendar_id, row["timezone"] if row else "UTC")


def set_deadlines(
    conn: psycopg.Connection, ticket: dict, now: datetime, warn_fraction: float, *, keep_policy: bool = False
) -> dict:
    """Compute and store the deadlines (and the moments to warn); a ticket no policy covers has none."""
    policy = None
    if keep_policy and ticket["sla_policy_id"] is not None:
        policy = sla.policy_by_id(conn, ticket["sla_policy_id"])
    if policy is None:
        policy = sla.find_policy(
            conn, site_id=ticket["site_id"], category=ticket["category"], priority=ticket["priority"]
        )
    values: dict = {
        "sla_policy_id": None,
        "response_due_at": None,
        "resolution_due_at": None,
        "response_warn_at": None,
        "resolution_warn_at": None,
    }
    if policy is not None:
        calendar = _calendar(conn, ticket, policy.calendar_id)
        received = ticket["created_at"]
        paused = float(ticket["paused_seconds"] or 0)
        response_due, resolution_due = sla.compute_deadlines(received, policy, calendar, paused_seconds=paused)
        values.update(
            sla_policy_id=policy.id,
            response_due_at=response_due,
            resolution_due_at=resolution_due,
            response_warn_at=add_business_time(
                received, policy.response_minutes * 60 * warn_fraction + paused, calendar
            ),
            resolution_warn_at=add_business_time(
                received, policy.resolution_minutes * 60 * warn_fraction + paused, calendar
            ),
        )
    conn.execute(
        """UPDATE tickets SET sla_policy_id = %(sla_policy_id)s, response_due_at = %(response_due_at)s,
               resolution_due_at = %(resolution_due_at)s, response_warn_at = %(response_warn_at)s,
               resolution_warn_at = %(resolution_warn_at)s
           WHERE id = %(id)s""",
        {**values, "id": ticket["id"]},
    )
    return {**ticket, **values}


def paused_seconds(conn: psycopg.Connection, ticket: dict, since: datetime | None, until: datetime) -> float:
    """Working seconds between going on hold and resuming, on the ticket's calendar."""
    if since is None or until <= since:
        return 0.0
    policy = sla.policy_by_id(conn, ticket["sla_policy_id"]) if ticket["sla_policy_id"] else None
    if policy is None:
        return (until - since) / timedelta(seconds=1)
    return sla.paused_business_seconds(since, until, _calendar(conn, ticket, policy.calendar_id))
