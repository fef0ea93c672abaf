"""Time limits (SLA): which policy applies to a ticket, and when its response and resolution are due.

The arithmetic of working time lives in `cloud.domain.business_hours` (re-exported here, so
callers need one import). This module adds the database side — policies and calendars — and
the rules that turn a policy into deadlines:

- Both deadlines are counted from when the ticket was received, in working time on the
  policy's calendar (around the clock when it has none), in the site's time zone.
- Time on hold pushes both deadlines back by the working time it covered: a hold over a night
  costs the working hours of the evening and the morning, not the night.
- Deadlines are computed once and stored on the ticket; after a hold they are recomputed from
  `received_at` with the ticket's accumulated `paused_seconds`, so they survive restarts and
  never depend on when the scheduler last ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain.business_hours import (
    AROUND_THE_CLOCK,
    BusinessCalendar,
    Holiday,
    WeeklySchedule,
    add_business_time,
    business_seconds_between,
)

__all__ = [
    "AROUND_THE_CLOCK",
    "BusinessCalendar",
    "Deadlines",
    "Holiday",
    "SlaPolicy",
    "WeeklySchedule",
    "add_business_time",
    "business_seconds_between",
    "compute_deadlines",
    "create_calendar",
    "find_policy",
    "is_due_soon",
    "load_calendar",
    "paused_business_seconds",
    "policy_by_id",
]


@dataclass(frozen=True)
class SlaPolicy:
    """One row of `sla_policies`; None in a scope column means "any"."""

    id: int
    site_id: str | None
    category: str | None
    priority: str | None
    response_minutes: int
    resolution_minutes: int
    calendar_id: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SlaPolicy:
        return cls(
            id=row["id"],
            site_id=row["site_id"],
            category=row["category"],
            priority=row["priority"],
            response_minutes=row["response_minutes"],
            resolution_minutes=row["resolution_minutes"],
            calendar_id=row["calendar_id"],
        )


class Deadlines(NamedTuple):
    response_due: datetime
    resolution_due: datetime


def _value(value: StrEnum | str | None) -> str | None:
    return None if value is None else str(value)


def find_policy(
    conn: psycopg.Connection,
    *,
    site_id: str | None,
    category: StrEnum | str | None,
    priority: StrEnum | str | None,
) -> SlaPolicy | None:
    """The active policy that applies to a ticket, or None when no policy covers it.

    Candidates are the active rows whose every scope column is either the ticket's value or
    "any". Among them the most specific wins, compared column by column in this order:

    1. category — an exact category beats "any category". It comes first because the category
       decides the kind of work and usually the calendar: a site's catch-all policy on office
       hours must not quietly take safety tickets off the around-the-clock safety policy.
    2. site — within the same category scope, the site's own policy beats the all-sites one.
    3. priority — an exact priority beats "any priority": the finest adjustment.

    So (all sites, safety, any priority) beats (site A, any category, urgent) for an urgent
    safety ticket at site A, and (site A, facility, any) beats (all sites, facility, urgent).
    The unique index on the scope means at most one active row per combination; the id only
    makes the order total.
    """
    row = conn.execute(
        """SELECT id, site_id, category, priority, response_minutes, resolution_minutes, calendar_id
             FROM sla_policies
            WHERE active
              AND (site_id IS NULL OR site_id = %(site)s)
              AND (category IS NULL OR category = %(category)s)
              AND (priority IS NULL OR priority = %(priority)s)
            ORDER BY category IS NULL, site_id IS NULL, priority IS NULL, id
            LIMIT 1""",
        {"site": site_id, "category": _value(category), "priority": _value(priority)},
    ).fetchone()
    return None if row is None else SlaPolicy.from_row(row)


def policy_by_id(conn: psycopg.Connection, policy_id: int) -> SlaPolicy | None:
    """A policy by id, active or not: a ticket keeps counting on the policy it was given."""
    row = conn.execute(
        """SELECT id, site_id, category, priority, response_minutes, resolution_minutes, calendar_id
             FROM sla_policies WHERE id = %s""",
        (policy_id,),
    ).fetchone()
    return None if row is None else SlaPolicy.from_row(row)


def load_calendar(conn: psycopg.Connection, calendar_id: int | None, timezone: str) -> BusinessCalendar:
    """A stored calendar with its holidays, in the site's `timezone`; None means around the clock.

    The time zone comes from the site, not the calendar, so one calendar ("office hours")
    serves sites in different zones. Raises LookupError for an unknown id.
    """
    if calendar_id is None:
        return AROUND_THE_CLOCK
    row = conn.execute("SELECT schedule FROM business_calendars WHERE id = %s", (calendar_id,)).fetchone()
    if row is None:
        raise LookupError(f"business calendar {calendar_id} does not exist")
    days = conn.execute("SELECT day FROM calendar_holidays WHERE calendar_id = %s", (calendar_id,)).fetchall()
    return BusinessCalendar(
        schedule=WeeklySchedule.model_validate(row["schedule"]),
        holidays=frozenset(r["day"] for r in days),
        timezone=timezone,
    )


def create_calendar(
    conn: psycopg.Connection, name: str, schedule: WeeklySchedule, holidays: list[Holiday] | tuple[Holiday, ...] = ()
) -> int:
    """Store a validated calendar and its holidays; returns its id. The caller commits."""
    row = conn.execute(
        "INSERT INTO business_calendars (name, schedule) VALUES (%s, %s) RETURNING id",
        (name, Jsonb(schedule.to_json())),
    ).fetchone()
    assert row is not None
    calendar_id: int = row["id"]
    for holiday in holidays:
        conn.execute(
            "INSERT INTO calendar_holidays (calendar_id, day, name) VALUES (%s, %s, %s)",
            (calendar_id, holiday.day, holiday.name),
        )
    return calendar_id


def compute_deadlines(
    received_at: datetime, policy: SlaPolicy, calendar: BusinessCalendar, paused_seconds: float = 0
) -> Deadlines:
    """(response_due, resolution_due), in UTC: the policy's limits in working time after `received_at`.

    `paused_seconds` is the working time the ticket has spent on hold (the sum of
    `paused_business_seconds` over its holds); both deadlines move back by exactly that much
    working time. Counting both from reception keeps the result a pure function of what is
    stored on the ticket.
    """
    if paused_seconds < 0:
        raise ValueError(f"paused_seconds must not be negative, got {paused_seconds}")
    return Deadlines(
        add_business_time(received_at, policy.response_minutes * 60 + paused_seconds, calendar),
        add_business_time(received_at, policy.resolution_minutes * 60 + paused_seconds, calendar),
    )


def paused_business_seconds(on_hold_since: datetime, resumed_at: datetime, calendar: BusinessCalendar) -> float:
    """Working seconds a hold covered: what to add to the ticket's `paused_seconds` on resume."""
    return business_seconds_between(on_hold_since, resumed_at, calendar)


def is_due_soon(
    received_at: datetime,
    due_at: datetime,
    now: datetime,
    warn_fraction: float,
    *,
    calendar: BusinessCalendar,
    paused_seconds: float = 0,
) -> bool:
    """True once `warn_fraction` of the working time allowed until `due_at` has been used up.

    Counted in working time, not wall time: a 4-hour limit received Friday 17:00 is due Monday
    12:00; at 75% in wall time the warning would go out on Sunday evening, to nobody at work,
    with three working hours still left. In working time it goes out Monday 11:00, with one
    hour left, which is what the warning is for.

    Measured as what is left: due soon when the working time from `now` to `due_at` is at most
    (1 - warn_fraction) of the allowed time, the working time from `received_at` to `due_at`
    less the `paused_seconds` that pushed the deadline back — so a hold does not make the
    warning come early. Also true once the deadline has passed (the caller checks breaches
    first). A ticket on hold should not be checked at all: its deadline is about to move.
    """
    if not 0 <= warn_fraction <= 1:
        raise ValueError(f"warn_fraction must be between 0 and 1, got {warn_fraction}")
    allowed = business_seconds_between(received_at, due_at, calendar) - paused_seconds
    left = business_seconds_between(now, due_at, calendar)
    return left <= (1 - warn_fraction) * max(allowed, 0.0)
