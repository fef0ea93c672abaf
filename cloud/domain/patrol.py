"""Security patrol: checkpoints, routes, schedules and guards' assignments; the rounds the scheduler
makes from them; scans from checkpoint readers and guards' phones; missed and late checkpoints as
alarms that open safety tickets. The rules, with examples: docs/patrol.md.

Timing of one checkpoint on a round that starts at S: it is due at S + offset, its window is
due ± tolerance. A scan inside the window is on time; after it and up to the round's end, late.
With no scan by `late_until` (window end + the route's late minutes) the pass marks it missed; a
scan that still comes before the round ends turns it into late (and clears the missed alarm,
whose ticket stays open for a person to close). Each checkpoint-round raises at most one alarm.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cloud.domain import alarms, audit, workflow
from cloud.domain.access import Principal, Role, site_scope
from cloud.domain.changes import notify
from cloud.domain.errors import Refused
from contract.common import Category, Severity, TicketKind
from contract.patrol import PATROL_SCAN_EVENT

if TYPE_CHECKING:
    from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

MISSED_RULE = "patrol_missed"
LATE_RULE = "patrol_late"
#: what a scan counted for; the first two count on a round
Outcome = Literal["on_time", "late", "early", "repeat", "no_round", "unknown_tag"]


class PatrolRefused(Refused):
    pass


@dataclass(frozen=True)
class Settings:
    """The patrol's knobs, from CloudSettings."""

    missed_severity: Severity = Severity.MAJOR
    late_severity: Severity = Severity.MINOR
    late_opens_ticket: bool = True
    plan_ahead: timedelta = timedelta(hours=24)


def settings_from(settings: "CloudSettings") -> Settings:
    return Settings(
        missed_severity=Severity(settings.patrol_missed_severity),
        late_severity=Severity(settings.patrol_late_severity),
        late_opens_ticket=settings.patrol_late_opens_ticket,
        plan_ahead=timedelta(hours=settings.patrol_plan_ahead_hours),
    )


def alarm_key(round_id: int, position: int) -> str:
    return f"patrol:{round_id}:{position}"


def _local(ts: datetime, timezone: str) -> str:
    return ts.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _reach(who: Principal, site_id: str, what: str) -> None:
    """Rows of other sites answer as if they did not exist."""
    if not who.reaches_site(site_id):
        raise PatrolRefused(404, f"{what} does not exist")


def _reach_existing_site(conn: psycopg.Connection, who: Principal, site_id: str) -> None:
    """The site a new checkpoint or route goes to: in reach and there (404 otherwise)."""
    _reach(who, site_id, f"site {site_id}")
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (site_id,)).fetchone() is None:
        raise PatrolRefused(404, f"site {site_id} does not exist")


# --- checkpoints ---------------------------------------------------------------------------------

CHECKPOINT_FIELDS = ("code", "name", "place", "tag", "tag_kind")


def _unique_violation(exc: psycopg.errors.UniqueViolation, site_id: str) -> PatrolRefused:
    constraint = exc.diag.constraint_name or ""
    if constraint.endswith("_tag"):
        return PatrolRefused(409, f"tag: another checkpoint of site {site_id} has this tag")
    if constraint.endswith("_code"):
        return PatrolRefused(409, f"code: another checkpoint of site {site_id} has this code")
    return PatrolRefused(409, f"name: another route of site {site_id} has this name")


def create_checkpoint(
    conn: psycopg.Connection, who: Principal, *, site_id: str, values: dict[str, Any], now: datetime
) -> dict:
    _reach_existing_site(conn, who, site_id)
    try:
        with conn.transaction():
            row = conn.execute(
                """INSERT INTO patrol_checkpoints (site_id, code, name, place, tag, tag_kind, created_at)
                   VALUES (%(site)s, %(code)s, %(name)s, %(place)s, %(tag)s, %(tag_kind)s, %(now)s) RETURNING *""",
                {"site": site_id, "now": now, **{k: values[k] for k in CHECKPOINT_FIELDS}},
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _unique_violation(exc, site_id) from None
    assert row is not None
    audit.record(conn, actor=who, action="create", entity="patrol_checkpoints", entity_id=row["id"], now=now, after=row)
    return row


def get_checkpoint(conn: psycopg.Connection, who: Principal, checkpoint_id: int, *, lock: bool = False) -> dict:
    row = conn.execute(
        "SELECT * FROM patrol_checkpoints WHERE id = %s AND retired_at IS NULL" + (" FOR UPDATE" if lock else ""),
        (checkpoint_id,),
    ).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise PatrolRefused(404, f"checkpoint {checkpoint_id} does not exist")
    return row


def list_checkpoints(conn: psycopg.Connection, who: Principal, site_id: str | None = None) -> list[dict]:
    query = sql.SQL(
        """SELECT * FROM patrol_checkpoints WHERE retired_at IS NULL AND {scope}
           AND (%(site)s::text IS NULL OR site_id = %(site)s) ORDER BY site_id, code"""
    ).format(scope=site_scope(who, "site_id"))
    return conn.execute(query, {"site": site_id}).fetchall()


def update_checkpoint(
    conn: psycopg.Connection, who: Principal, checkpoint_id: int, changes: dict[str, Any], now: datetime
) -> dict:
    before = get_checkpoint(conn, who, checkpoint_id, lock=True)
    values = {k: changes.get(k, before[k]) for k in CHECKPOINT_FIELDS}
    try:
        with conn.transaction():
            row = conn.execute(
                """UPDATE patrol_checkpoints SET code = %(code)s, name = %(name)s, place = %(place)s, tag = %(tag)s,
                          tag_kind = %(tag_kind)s WHERE id = %(id)s RETURNING *""",
                {**values, "id": checkpoint_id},
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _unique_violation(exc, before["site_id"]) from None
    audit.record(
        conn, actor=who, action="update", entity="patrol_checkpoints", entity_id=checkpoint_id, now=now,
        before=before, after=row,
    )  # fmt: skip
    return row  # type: ignore[return-value]


def retire_checkpoint(conn: psycopg.Connection, who: Principal, checkpoint_id: int, now: datetime) -> None:
    """Retire a checkpoint no route uses: its history stays, its tag and code are free again."""
    before = get_checkpoint(conn, who, checkpoint_id, lock=True)
    used = conn.execute(
        """SELECT r.name FROM patrol_route_checkpoints rc JOIN patrol_routes r ON r.id = rc.route_id
           WHERE rc.checkpoint_id = %s AND r.retired_at IS NULL ORDER BY r.name LIMIT 1""",
        (checkpoint_id,),
    ).fetchone()
    if used is not None:
        raise PatrolRefused(409, f"checkpoint {before['code']} is on the route {used['name']!r}: take it off first")
    conn.execute("UPDATE patrol_checkpoints SET retired_at = %s WHERE id = %s", (now, checkpoint_id))
    audit.record(
        conn, actor=who, action="retire", entity="patrol_checkpoints", entity_id=checkpoint_id, now=now, before=before
    )


# --- routes --------------------------------------------------------------------------------------


def _route_stops(conn: psycopg.Connection, route_id: int) -> list[dict]:
    return conn.execute(
        """SELECT rc.position, rc.checkpoint_id, c.code, c.name, c.place, rc.offset_minutes, rc.tolerance_minutes
           FROM patrol_route_checkpoints rc JOIN patrol_checkpoints c ON c.id = rc.checkpoint_id
           WHERE rc.route_id = %s ORDER BY rc.position""",
        (route_id,),
    ).fetchall()


def _route_view(conn: psycopg.Connection, row: dict) -> dict:
    return {**row, "checkpoints": _route_stops(conn, row["id"])}


def get_route(conn: psycopg.Connection, who: Principal, route_id: int, *, lock: bool = False) -> dict:
    row = conn.execute(
        "SELECT * FROM patrol_routes WHERE id = %s AND retired_at IS NULL" + (" FOR UPDATE" if lock else ""),
        (route_id,),
    ).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise PatrolRefused(404, f"route {route_id} does not exist")
    return row


def route_view(conn: psycopg.Connection, who: Principal, route_id: int) -> dict:
    return _route_view(conn, get_route(conn, who, route_id))


def list_routes(conn: psycopg.Connection, who: Principal, site_id: str | None = None) -> list[dict]:
    query = sql.SQL(
        """SELECT * FROM patrol_routes WHERE retired_at IS NULL AND {scope}
           AND (%(site)s::text IS NULL OR site_id = %(site)s) ORDER BY site_id, name"""
    ).format(scope=site_scope(who, "site_id"))
    return [_route_view(conn, r) for r in conn.execute(query, {"site": site_id}).fetchall()]


def _set_stops(conn: psycopg.Connection, route_id: int, site_id: str, stops: list[dict[str, Any]]) -> None:
    if not stops:
        raise PatrolRefused(422, "checkpoints: a route needs at least one checkpoint")
    seen: set[int] = set()
    for i, stop in enumerate(stops):
        cp = conn.execute(
            "SELECT site_id FROM patrol_checkpoints WHERE id = %s AND retired_at IS NULL", (stop["checkpoint_id"],)
        ).fetchone()
        if cp is None or cp["site_id"] != site_id:
            raise PatrolRefused(422, f"checkpoints[{i}]: checkpoint {stop['checkpoint_id']} is not one of {site_id}")
        if stop["checkpoint_id"] in seen:
            raise PatrolRefused(422, f"checkpoints[{i}]: checkpoint {stop['checkpoint_id']} is already on the route")
        seen.add(stop["checkpoint_id"])
    conn.execute("DELETE FROM patrol_route_checkpoints WHERE route_id = %s", (route_id,))
    for position, stop in enumerate(stops, start=1):
        conn.execute(
            """INSERT INTO patrol_route_checkpoints (route_id, position, checkpoint_id, offset_minutes,
                                                     tolerance_minutes) VALUES (%s, %s, %s, %s, %s)""",
            (route_id, position, stop["checkpoint_id"], stop["offset_minutes"], stop["tolerance_minutes"]),
        )


ROUTE_FIELDS = ("name", "late_minutes", "missed_severity", "late_severity")


def create_route(
    conn: psycopg.Connection, who: Principal, *, site_id: str, values: dict[str, Any], now: datetime
) -> dict:
    _reach_existing_site(conn, who, site_id)
    try:
        with conn.transaction():
            row = conn.execute(
                """INSERT INTO patrol_routes (site_id, name, late_minutes, missed_severity, late_severity, created_at)
                   VALUES (%(site)s, %(name)s, %(late_minutes)s, %(missed_severity)s, %(late_severity)s, %(now)s)
                   RETURNING *""",
                {"site": site_id, "now": now, **{k: values[k] for k in ROUTE_FIELDS}},
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _unique_violation(exc, site_id) from None
    assert row is not None
    _set_stops(conn, row["id"], site_id, values["checkpoints"])
    view = _route_view(conn, row)
    audit.record(conn, actor=who, action="create", entity="patrol_routes", entity_id=row["id"], now=now, after=view)
    return view


def _drop_future_rounds(
    conn: psycopg.Connection, now: datetime, *, route_id: int | None = None, schedule_id: int | None = None
) -> int:
    """Rounds not begun yet are made again by the next pass from the changed plan."""
    rows = conn.execute(
        """DELETE FROM patrol_rounds r WHERE r.state = 'planned' AND r.planned_start > %(now)s
             AND (%(route)s::bigint IS NULL OR r.route_id = %(route)s)
             AND (%(schedule)s::bigint IS NULL OR r.schedule_id = %(schedule)s)
             AND NOT EXISTS (SELECT 1 FROM patrol_scans s WHERE s.round_id = r.id)
           RETURNING r.id""",
        {"now": now, "route": route_id, "schedule": schedule_id},
    ).fetchall()
    return len(rows)


def replace_route(
    conn: psycopg.Connection, who: Principal, route_id: int, values: dict[str, Any], now: datetime
) -> dict:
    """Change a route; rounds not begun yet are planned again with it, rounds under way keep theirs."""
    before = _route_view(conn, get_route(conn, who, route_id, lock=True))
    try:
        with conn.transaction():
            row = conn.execute(
                """UPDATE patrol_routes SET name = %(name)s, late_minutes = %(late_minutes)s,
                          missed_severity = %(missed_severity)s, late_severity = %(late_severity)s
                   WHERE id = %(id)s RETURNING *""",
                {**{k: values[k] for k in ROUTE_FIELDS}, "id": route_id},
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _unique_violation(exc, before["site_id"]) from None
    _set_stops(conn, route_id, before["site_id"], values["checkpoints"])
    _drop_future_rounds(conn, now, route_id=route_id)
    view = _route_view(conn, row)  # type: ignore[arg-type]
    audit.record(
        conn, actor=who, action="update", entity="patrol_routes", entity_id=route_id, now=now, before=before, after=view
    )
    return view


def retire_route(conn: psycopg.Connection, who: Principal, route_id: int, now: datetime) -> None:
    """Retire a route and its schedules; its recorded rounds stay, rounds not begun are dropped."""
    before = get_route(conn, who, route_id, lock=True)
    conn.execute("UPDATE patrol_routes SET retired_at = %s WHERE id = %s", (now, route_id))
    conn.execute(
        "UPDATE patrol_schedules SET retired_at = %s WHERE route_id = %s AND retired_at IS NULL", (now, route_id)
    )
    _drop_future_rounds(conn, now, route_id=route_id)
    audit.record(conn, actor=who, action="retire", entity="patrol_routes", entity_id=route_id, now=now, before=before)


# --- schedules and assignments -------------------------------------------------------------------


def _schedule_view(row: dict) -> dict:
    return {
        **row,
        "times": [t.strftime("%H:%M") for t in row["times"]] if row["times"] is not None else None,
        "from_time": row["from_time"].strftime("%H:%M") if row["from_time"] else None,
        "until_time": row["until_time"].strftime("%H:%M") if row["until_time"] else None,
    }


def get_schedule(conn: psycopg.Connection, who: Principal, schedule_id: int) -> dict:
    row = conn.execute(
        """SELECT s.*, r.site_id, r.name AS route_name FROM patrol_schedules s
           JOIN patrol_routes r ON r.id = s.route_id WHERE s.id = %s AND s.retired_at IS NULL""",
        (schedule_id,),
    ).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise PatrolRefused(404, f"schedule {schedule_id} does not exist")
    return row


def list_schedules(conn: psycopg.Connection, who: Principal, site_id: str | None = None) -> list[dict]:
    query = sql.SQL(
        """SELECT s.*, r.site_id, r.name AS route_name FROM patrol_schedules s JOIN patrol_routes r ON r.id = s.route_id
           WHERE s.retired_at IS NULL AND {scope} AND (%(site)s::text IS NULL OR r.site_id = %(site)s)
           ORDER BY r.site_id, r.name, s.id"""
    ).format(scope=site_scope(who, "r.site_id"))
    return [_schedule_view(r) for r in conn.execute(query, {"site": site_id}).fetchall()]


def create_schedule(
    conn: psycopg.Connection, who: Principal, *, route_id: int, values: dict[str, Any], now: datetime
) -> dict:
    """Rounds at listed local times, or every N minutes between two local times, on ISO weekdays."""
    route = get_route(conn, who, route_id)
    times, every = values.get("times"), values.get("every_minutes")
    if (times is None) == (every is None):
        raise PatrolRefused(422, "times or every_minutes: give exactly one")
    if every is not None and (values.get("from_time") is None or values.get("until_time") is None):
        raise PatrolRefused(422, "from_time and until_time: needed with every_minutes")
    if every is not None and values["until_time"] < values["from_time"]:
        raise PatrolRefused(422, "until_time: must not be before from_time (a night schedule: two schedules)")
    row = conn.execute(
        """INSERT INTO patrol_schedules (route_id, weekdays, times, every_minutes, from_time, until_time, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (
            route_id,
            sorted(set(values["weekdays"])),
            sorted(set(times)) if times is not None else None,
            every,
            values.get("from_time") if every is not None else None,
            values.get("until_time") if every is not None else None,
            now,
        ),
    ).fetchone()
    assert row is not None
    view = _schedule_view({**row, "site_id": route["site_id"], "route_name": route["name"]})
    audit.record(conn, actor=who, action="create", entity="patrol_schedules", entity_id=row["id"], now=now, after=view)
    return view


def retire_schedule(conn: psycopg.Connection, who: Principal, schedule_id: int, now: datetime) -> None:
    before = get_schedule(conn, who, schedule_id)
    conn.execute("UPDATE patrol_schedules SET retired_at = %s WHERE id = %s", (now, schedule_id))
    _drop_future_rounds(conn, now, schedule_id=schedule_id)
    audit.record(
        conn, actor=who, action="retire", entity="patrol_schedules", entity_id=schedule_id, now=now, before=before
    )


def _pick_guard(conn: psycopg.Connection, schedule_id: int, weekday: int) -> int | None:
    row = conn.execute(
        """SELECT user_id FROM patrol_assignments WHERE schedule_id = %s AND (weekdays IS NULL OR %s = ANY(weekdays))
           ORDER BY id LIMIT 1""",
        (schedule_id, weekday),
    ).fetchone()
    return row["user_id"] if row else None


def _reassign_future(conn: psycopg.Connection, schedule_id: int, now: datetime) -> None:
    """Rounds not begun yet take the guard the assignments now give them."""
    rounds = conn.execute(
        """SELECT r.id, r.planned_start, st.timezone FROM patrol_rounds r JOIN sites st ON st.id = r.site_id
           WHERE r.schedule_id = %s AND r.state = 'planned' AND r.planned_start > %s FOR UPDATE OF r""",
        (schedule_id, now),
    ).fetchall()
    for r in rounds:
        weekday = r["planned_start"].astimezone(ZoneInfo(r["timezone"])).isoweekday()
        guard = _pick_guard(conn, schedule_id, weekday)
        conn.execute("UPDATE patrol_rounds SET guard_user_id = %s WHERE id = %s", (guard, r["id"]))


ASSIGNMENT_SELECT = """SELECT a.*, s.route_id, r.site_id, u.username, p.full_name AS guard_name
    FROM patrol_assignments a JOIN patrol_schedules s ON s.id = a.schedule_id JOIN patrol_routes r ON r.id = s.route_id
    JOIN users u ON u.id = a.user_id JOIN people p ON p.id = u.person_id"""


def create_assignment(
    conn: psycopg.Connection,
    who: Principal,
    *,
    schedule_id: int,
    user_id: int,
    weekdays: list[int] | None,
    now: datetime,
) -> dict:
    schedule = get_schedule(conn, who, schedule_id)
    guard = conn.execute(
        """SELECT u.role, u.active, EXISTS (SELECT 1 FROM staff_sites ss WHERE ss.person_id = u.person_id
                                             AND ss.site_id = %s) AS at_site
           FROM users u WHERE u.id = %s""",
        (schedule["site_id"], user_id),
    ).fetchone()
    if guard is None or guard["role"] != Role.GUARD.value or not guard["active"]:
        raise PatrolRefused(422, f"user_id: user {user_id} is not an active guard")
    if not guard["at_site"]:
        raise PatrolRefused(422, f"user_id: user {user_id} does not work at {schedule['site_id']}")
    row = conn.execute(
        """INSERT INTO patrol_assignments (schedule_id, user_id, weekdays, created_at) VALUES (%s, %s, %s, %s)
           RETURNING id""",
        (schedule_id, user_id, sorted(set(weekdays)) if weekdays else None, now),
    ).fetchone()
    assert row is not None
    _reassign_future(conn, schedule_id, now)
    view = conn.execute(ASSIGNMENT_SELECT + " WHERE a.id = %s", (row["id"],)).fetchone()
    audit.record(
        conn, actor=who, action="create", entity="patrol_assignments", entity_id=row["id"], now=now, after=view
    )
    return view  # type: ignore[return-value]


def list_assignments(conn: psycopg.Connection, who: Principal, site_id: str | None = None) -> list[dict]:
    query = sql.SQL(
        ASSIGNMENT_SELECT
        + """ WHERE s.retired_at IS NULL AND {scope} AND (%(site)s::text IS NULL OR r.site_id = %(site)s)
              ORDER BY r.site_id, a.schedule_id, a.id"""
    ).format(scope=site_scope(who, "r.site_id"))
    return conn.execute(query, {"site": site_id}).fetchall()


def delete_assignment(conn: psycopg.Connection, who: Principal, assignment_id: int, now: datetime) -> None:
    row = conn.execute(ASSIGNMENT_SELECT + " WHERE a.id = %s", (assignment_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise PatrolRefused(404, f"assignment {assignment_id} does not exist")
    conn.execute("DELETE FROM patrol_assignments WHERE id = %s", (assignment_id,))
    _reassign_future(conn, row["schedule_id"], now)
    audit.record(
        conn, actor=who, action="delete", entity="patrol_assignments", entity_id=assignment_id, now=now, before=row
    )


# --- the scheduler pass --------------------------------------------------------------------------


@dataclass
class PassCounts:
    planned: int = 0
    started: int = 0
    missed: int = 0
    alarms: int = 0
    finished: int = 0


def _start_times(schedule: dict) -> list[time]:
    if schedule["times"] is not None:
        return list(schedule["times"])
    step = timedelta(minutes=schedule["every_minutes"])
    at = datetime.combine(date.min, schedule["from_time"])
    until = datetime.combine(date.min, schedule["until_time"])
    starts = []
    while at <= until:
        starts.append(at.time())
        at += step
    return starts


def _plan_rounds(conn: psycopg.Connection, now: datetime, ahead: timedelta) -> int:
    """Rounds of every schedule starting up to `ahead` from now (and those started but not yet over).

    Each pass (every few seconds) reads the starts already made and tries only the others, so a
    quiet pass writes nothing; INSERT … ON CONFLICT on (schedule, planned start) still makes each
    round once, however many processes plan at the same moment. Starts before the schedule existed
    are never made.
    """
    made = 0
    schedules = conn.execute(
        """SELECT s.*, r.site_id, r.late_minutes, st.timezone FROM patrol_schedules s
           JOIN patrol_routes r ON r.id = s.route_id JOIN sites st ON st.id = r.site_id
           WHERE s.retired_at IS NULL AND r.retired_at IS NULL"""
    ).fetchall()
    for s in schedules:
        stops = conn.execute(
            "SELECT * FROM patrol_route_checkpoints WHERE route_id = %s ORDER BY position", (s["route_id"],)
        ).fetchall()
        if not stops:
            continue
        late = timedelta(minutes=s["late_minutes"])
        span = max(timedelta(minutes=c["offset_minutes"] + c["tolerance_minutes"]) for c in stops) + late
        tz = ZoneInfo(s["timezone"])
        day = (now - span).astimezone(tz).date() - timedelta(days=1)
        last_day = (now + ahead).astimezone(tz).date()
        starts = _start_times(s)
        made_already = {
            r["planned_start"]
            for r in conn.execute(
                """SELECT planned_start FROM patrol_rounds
                   WHERE schedule_id = %s AND planned_start > %s AND planned_start <= %s""",
                (s["id"], now - span, now + ahead),
            ).fetchall()
        }
        while day <= last_day:
            if day.isoweekday() in s["weekdays"]:
                for t in starts:
                    start = datetime.combine(day, t, tzinfo=tz).astimezone(UTC)
                    if start < s["created_at"] or start > now + ahead or start + span <= now or start in made_already:
                        continue
                    made += _make_round(conn, s, stops, start, start + span, late, day.isoweekday(), now)
            day += timedelta(days=1)
    return made


def _make_round(
    conn: psycopg.Connection,
    schedule: dict,
    stops: list[dict],
    start: datetime,
    ends_at: datetime,
    late: timedelta,
    weekday: int,
    now: datetime,
) -> int:
    row = conn.execute(
        """INSERT INTO patrol_rounds (site_id, route_id, schedule_id, planned_start, ends_at, guard_user_id, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (schedule_id, planned_start) DO NOTHING RETURNING id""",
        (
            schedule["site_id"],
            schedule["route_id"],
            schedule["id"],
            start,
            ends_at,
            _pick_guard(conn, schedule["id"], weekday),
            now,
        ),
    ).fetchone()
    if row is None:
        return 0
    for c in stops:
        due = start + timedelta(minutes=c["offset_minutes"])
        tolerance = timedelta(minutes=c["tolerance_minutes"])
        conn.execute(
            """INSERT INTO patrol_round_checkpoints (round_id, position, checkpoint_id, window_start, due_at,
                                                     window_end, late_until) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (row["id"], c["position"], c["checkpoint_id"], due - tolerance, due, due + tolerance,
             due + tolerance + late),
        )  # fmt: skip
    notify(conn, "patrol_round", {"site": schedule["site_id"], "round_id": row["id"], "state": "planned"})
    return 1


def _start_due_rounds(conn: psycopg.Connection, now: datetime) -> int:
    rows = conn.execute(
        """UPDATE patrol_rounds SET state = 'in_progress', started_at = planned_start
           WHERE state = 'planned' AND planned_start <= %s RETURNING id, site_id""",
        (now,),
    ).fetchall()
    for r in rows:
        notify(conn, "patrol_round", {"site": r["site_id"], "round_id": r["id"], "state": "in_progress"})
    return len(rows)


def _mark_missed(conn: psycopg.Connection, now: datetime) -> int:
    rows = conn.execute(
        """UPDATE patrol_round_checkpoints rc SET status = 'missed', missed_at = %(now)s
           FROM patrol_rounds r WHERE r.id = rc.round_id AND rc.status = 'pending' AND rc.late_until <= %(now)s
           RETURNING rc.round_id, rc.position, rc.checkpoint_id, r.site_id""",
        {"now": now},
    ).fetchall()
    for r in rows:
        notify(
            conn,
            "patrol_checkpoint",
            {"site": r["site_id"], "round_id": r["round_id"], "position": r["position"],
             "checkpoint_id": r["checkpoint_id"], "status": "missed"},
        )  # fmt: skip
    return len(rows)


def _raise_alarms(conn: psycopg.Connection, now: datetime, cfg: Settings, wf: workflow.Settings | None) -> int:
    """One alarm per late or missed checkpoint-round, claimed by setting `alarm_raised_at`."""
    rows = conn.execute(
        """UPDATE patrol_round_checkpoints rc SET alarm_raised_at = %(now)s
           FROM patrol_rounds r WHERE r.id = rc.round_id AND rc.status IN ('late', 'missed')
             AND rc.alarm_raised_at IS NULL
           RETURNING rc.*""",
        {"now": now},
    ).fetchall()
    for rc in rows:
        info = conn.execute(
            """SELECT r.id, r.site_id, r.planned_start, st.timezone, rt.name AS route_name, rt.missed_severity,
                      rt.late_severity, c.code, c.name, c.place, p.full_name AS guard_name
               FROM patrol_rounds r JOIN sites st ON st.id = r.site_id JOIN patrol_routes rt ON rt.id = r.route_id
               JOIN patrol_checkpoints c ON c.id = %s
               LEFT JOIN users u ON u.id = r.guard_user_id LEFT JOIN people p ON p.id = u.person_id
               WHERE r.id = %s""",
            (rc["checkpoint_id"], rc["round_id"]),
        ).fetchone()
        assert info is not None
        tz = info["timezone"]
        window = f"{_local(rc['window_start'], tz)}–{_local(rc['window_end'], tz)[-5:]} ({tz})"
        guard = info["guard_name"] or "no guard assigned"
        if rc["status"] == "missed":
            rule, severity = MISSED_RULE, Severity(info["missed_severity"] or cfg.missed_severity)
            ticket = TicketKind.SAFETY
            what = f"missed: no scan by {_local(rc['late_until'], tz)}"
            raised_at = rc["late_until"]
        else:
            rule, severity = LATE_RULE, Severity(info["late_severity"] or cfg.late_severity)
            ticket = TicketKind.SAFETY if cfg.late_opens_ticket else TicketKind.NONE
            what = f"scanned late at {_local(rc['scanned_at'], tz)}"
            raised_at = rc["scanned_at"]
        message = (
            f"Patrol checkpoint {info['code']} ({info['name']}) on route {info['route_name']!r} {what}; "
            f"window {window}; guard: {guard}"
        )
        outcome = alarms.raise_cloud_alarm(
            conn,
            key=alarm_key(rc["round_id"], rc["position"]),
            site_id=info["site_id"],
            site_timezone=tz,
            rule=rule,
            severity=severity,
            title=f"Patrol: checkpoint {info['code']} {info['name']} {'missed' if rule == MISSED_RULE else 'late'}",
            message=message,
            value={"round_id": rc["round_id"], "position": rc["position"], "checkpoint": info["code"]},
            ticket_kind=ticket,
            category=Category.SAFETY,
            raised_at=raised_at,
            now=now,
            location=info["place"] or None,
            cfg=wf,
        )
        conn.execute(
            "UPDATE patrol_round_checkpoints SET alarm_id = %s WHERE round_id = %s AND position = %s",
            (outcome.alarm_id, rc["round_id"], rc["position"]),
        )
        log.warning("patrol: %s", message)
    return len(rows)


def _finish_rounds(conn: psycopg.Connection, now: datetime) -> int:
    rows = conn.execute(
        """UPDATE patrol_rounds r SET finished_at = %(now)s,
               state = CASE WHEN EXISTS (SELECT 1 FROM patrol_round_checkpoints rc WHERE rc.round_id = r.id
                                         AND rc.status IN ('pending', 'missed')) THEN 'incomplete' ELSE 'completed' END
           WHERE r.state IN ('planned', 'in_progress') AND r.ends_at <= %(now)s
           RETURNING r.id, r.site_id, r.state""",
        {"now": now},
    ).fetchall()
    for r in rows:
        notify(conn, "patrol_round", {"site": r["site_id"], "round_id": r["id"], "state": r["state"]})
    return len(rows)


def run_pass(conn: psycopg.Connection, now: datetime, cfg: Settings, wf: workflow.Settings | None) -> PassCounts:
    """One patrol pass, each step in its own transaction; running it twice changes nothing more."""
    counts = PassCounts()
    with conn.transaction():
        counts.planned = _plan_rounds(conn, now, cfg.plan_ahead)
    with conn.transaction():
        counts.started = _start_due_rounds(conn, now)
    with conn.transaction():
        counts.missed = _mark_missed(conn, now)
    with conn.transaction():
        counts.alarms = _raise_alarms(conn, now, cfg, wf)
    with conn.transaction():
        counts.finished = _finish_rounds(conn, now)
    return counts


# --- scans ---------------------------------------------------------------------------------------


@dataclass
class ScanResult:
    scan_id: int
    outcome: Outcome
    reason: str
    site_id: str | None
    checkpoint: dict | None = None
    round_id: int | None = None
    position: int | None = None


def _guard_of_card(conn: psycopg.Connection, card: str, site_id: str) -> int | None:
    row = conn.execute(
        """SELECT u.id FROM cards c JOIN users u ON u.person_id = c.person_id
           JOIN staff_sites ss ON ss.person_id = c.person_id AND ss.site_id = %s
           WHERE c.number = %s AND u.role = 'guard' AND u.active""",
        (site_id, card.strip().upper()),
    ).fetchone()
    return row["id"] if row else None


def record_scan(
    conn: psycopg.Connection,
    *,
    sites: list[str],
    tag: str,
    at: datetime,
    now: datetime,
    via: str,
    user_id: int | None = None,
    gateway_id: str | None = None,
    device: str | None = None,
    card: str | None = None,
    message_id: Any = None,
) -> ScanResult:
    """Keep a scan and count it on the round that expects its checkpoint at `at`, if one does.

    `sites`: where the tag is looked up (the gateway's site; the guard's sites). Every scan is
    kept, whatever it counted for; the result says what and why.
    """
    checkpoint = conn.execute(
        """SELECT c.*, st.timezone FROM patrol_checkpoints c JOIN sites st ON st.id = c.site_id
           WHERE c.tag = %s AND c.site_id = ANY(%s) AND c.retired_at IS NULL ORDER BY c.id LIMIT 1""",
        (tag, sites),
    ).fetchone()
    site_id = checkpoint["site_id"] if checkpoint else (sites[0] if len(sites) == 1 else None)
    if checkpoint is not None and user_id is None and card is not None:
        user_id = _guard_of_card(conn, card, checkpoint["site_id"])
    counted: dict | None = None
    outcome: Outcome = "unknown_tag"
    reason = f"no checkpoint of {' or '.join(sites) or 'your sites'} has the tag {tag!r}"
    if checkpoint is not None:
        outcome, reason, counted = _match(conn, checkpoint, at, user_id)
    scan = conn.execute(
        """INSERT INTO patrol_scans (site_id, tag, checkpoint_id, at, received_at, via, gateway_id, device, card,
                                     message_id, user_id, round_id, position, outcome, reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            site_id,
            tag,
            checkpoint["id"] if checkpoint else None,
            at,
            now,
            via,
            gateway_id,
            device,
            card,
            message_id,
            user_id,
            counted["round_id"] if counted else None,
            counted["position"] if counted else None,
            outcome,
            reason,
        ),
    ).fetchone()
    assert scan is not None
    result = ScanResult(scan["id"], outcome, reason, site_id, checkpoint)
    if counted is not None:
        result.round_id, result.position = counted["round_id"], counted["position"]
        if outcome in ("on_time", "late"):
            _count(conn, counted, scan["id"], outcome, at, user_id, via, now)
    notify(
        conn,
        "patrol_scan",
        {"site": site_id, "scan_id": scan["id"], "outcome": outcome, "round_id": result.round_id,
         "checkpoint_id": checkpoint["id"] if checkpoint else None},
    )  # fmt: skip
    return result


def _match(
    conn: psycopg.Connection, checkpoint: dict, at: datetime, user_id: int | None
) -> tuple[Outcome, str, dict | None]:
    """Which round's checkpoint this scan is for, and what it counts as.

    Rounds that have begun by `at` (their first window opened) and not ended; among those still
    expecting the checkpoint, the scanning guard's own round first, then the earliest window.
    """
    tz = checkpoint["timezone"]
    candidates = conn.execute(
        """SELECT rc.*, r.guard_user_id, r.ends_at, r.site_id, r.state AS round_state FROM patrol_round_checkpoints rc
           JOIN patrol_rounds r ON r.id = rc.round_id
           WHERE rc.checkpoint_id = %(cp)s AND r.ends_at >= %(at)s
             AND (SELECT min(x.window_start) FROM patrol_round_checkpoints x WHERE x.round_id = r.id) <= %(at)s
           ORDER BY (r.guard_user_id IS NOT DISTINCT FROM %(user)s) DESC, rc.window_start
           FOR UPDATE OF rc""",
        {"cp": checkpoint["id"], "at": at, "user": user_id},
    ).fetchall()
    open_ = [c for c in candidates if c["status"] in ("pending", "missed")]
    for c in open_:
        if c["window_start"] <= at:
            return ("on_time" if at <= c["window_end"] else "late"), "", c
    if open_:
        c = open_[0]
        return "early", f"too early: the window of {checkpoint['code']} opens at {_local(c['window_start'], tz)}", c
    if candidates:
        c = candidates[0]
        done = _local(c["scanned_at"], tz) if c["scanned_at"] else "?"
        return "repeat", f"{checkpoint['code']} was already scanned on this round at {done}", c
    return "no_round", f"no round under way at {checkpoint['site_id']} expects {checkpoint['code']} now", None


def _count(
    conn: psycopg.Connection,
    rc: dict,
    scan_id: int,
    status: str,
    at: datetime,
    user_id: int | None,
    via: str,
    now: datetime,
) -> None:
    conn.execute(
        """UPDATE patrol_round_checkpoints SET status = %s, scanned_at = %s, scanned_by = %s, scanned_via = %s,
                  scan_id = %s WHERE round_id = %s AND position = %s""",
        (status, at, user_id, via, scan_id, rc["round_id"], rc["position"]),
    )
    if rc["status"] == "missed" and rc["alarm_id"] is not None:
        # the guard did pass, late (or the reader's scan arrived late): the missed alarm ends, its ticket stays
        alarms.clear(
            conn,
            key=alarm_key(rc["round_id"], rc["position"]),
            cleared_at=at,
            value={"status": status, "scanned_at": at.isoformat()},
            now=now,
        )
    notify(
        conn,
        "patrol_checkpoint",
        {"site": rc["site_id"], "round_id": rc["round_id"], "position": rc["position"],
         "checkpoint_id": rc["checkpoint_id"], "status": status},
    )  # fmt: skip
    left = conn.execute(
        "SELECT count(*) AS n FROM patrol_round_checkpoints WHERE round_id = %s AND status IN ('pending', 'missed')",
        (rc["round_id"],),
    ).fetchone()
    if left is not None and left["n"] == 0:
        state, finished = "completed", now
    elif rc["round_state"] == "planned":
        state, finished = "in_progress", None
    else:
        return
    conn.execute(
        """UPDATE patrol_rounds SET state = %s, started_at = coalesce(started_at, %s), finished_at = %s
           WHERE id = %s""",
        (state, at, finished, rc["round_id"]),
    )
    notify(conn, "patrol_round", {"site": rc["site_id"], "round_id": rc["round_id"], "state": state})


# --- reading rounds and scans --------------------------------------------------------------------

ROUND_SELECT = """SELECT r.*, rt.name AS route_name, u.username AS guard_username, p.full_name AS guard_name
    FROM patrol_rounds r JOIN patrol_routes rt ON rt.id = r.route_id
    LEFT JOIN users u ON u.id = r.guard_user_id LEFT JOIN people p ON p.id = u.person_id"""


def _with_checkpoints(conn: psycopg.Connection, rounds: list[dict], now: datetime) -> list[dict]:
    if not rounds:
        return []
    rows = conn.execute(
        """SELECT rc.round_id, rc.position, rc.checkpoint_id, c.code, c.name, c.place, rc.window_start, rc.due_at,
                  rc.window_end, rc.late_until, rc.status, rc.scanned_at, rc.scanned_via, rc.alarm_id,
                  su.username AS scanned_by, t.number AS ticket_number
           FROM patrol_round_checkpoints rc JOIN patrol_checkpoints c ON c.id = rc.checkpoint_id
           LEFT JOIN users su ON su.id = rc.scanned_by
           LEFT JOIN alarms a ON a.id = rc.alarm_id LEFT JOIN tickets t ON t.id = a.ticket_id
           WHERE rc.round_id = ANY(%s) ORDER BY rc.round_id, rc.position""",
        ([r["id"] for r in rounds],),
    ).fetchall()
    by_round: dict[int, list[dict]] = {}
    for row in rows:
        # overdue: still pending after its window (a live screen shows it before the pass marks it missed)
        row["overdue"] = row["status"] == "pending" and row["window_end"] < now
        by_round.setdefault(row.pop("round_id"), []).append(row)
    out = []
    for r in rounds:
        checkpoints = by_round.get(r["id"], [])
        counts = {s: sum(1 for c in checkpoints if c["status"] == s) for s in ("pending", "on_time", "late", "missed")}
        out.append({**r, "checkpoints": checkpoints, "counts": counts})
    return out


def get_round(conn: psycopg.Connection, who: Principal, round_id: int, now: datetime) -> dict:
    row = conn.execute(ROUND_SELECT + " WHERE r.id = %s", (round_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise PatrolRefused(404, f"round {round_id} does not exist")
    return _with_checkpoints(conn, [row], now)[0]


def list_rounds(
    conn: psycopg.Connection,
    who: Principal,
    now: datetime,
    *,
    site_id: str | None = None,
    route_id: int | None = None,
    guard_user_id: int | None = None,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    query = sql.SQL(
        ROUND_SELECT
        + """ WHERE {scope} AND (%(site)s::text IS NULL OR r.site_id = %(site)s)
              AND (%(route)s::bigint IS NULL OR r.route_id = %(route)s)
              AND (%(guard)s::bigint IS NULL OR r.guard_user_id = %(guard)s)
              AND (%(state)s::text IS NULL OR r.state = %(state)s)
              AND (%(since)s::timestamptz IS NULL OR r.planned_start >= %(since)s)
              AND (%(until)s::timestamptz IS NULL OR r.planned_start < %(until)s)
              ORDER BY r.planned_start DESC, r.id DESC LIMIT %(limit)s OFFSET %(offset)s"""
    ).format(scope=site_scope(who, "r.site_id"))
    params = {
        "site": site_id,
        "route": route_id,
        "guard": guard_user_id,
        "state": state,
        "since": since,
        "until": until,
        "limit": limit,
        "offset": offset,
    }
    return _with_checkpoints(conn, conn.execute(query, params).fetchall(), now)


def current_rounds(
    conn: psycopg.Connection, who: Principal, now: datetime, *, site_id: str | None = None, mine: bool = False
) -> list[dict]:
    """Rounds in course now (begun, not ended, not yet completed), for the guard console.

    `mine`: only the asking guard's rounds. Sorted by start.
    """
    query = sql.SQL(
        ROUND_SELECT
        + """ WHERE {scope} AND (%(site)s::text IS NULL OR r.site_id = %(site)s)
              AND (%(user)s::bigint IS NULL OR r.guard_user_id = %(user)s)
              AND r.state IN ('planned', 'in_progress') AND r.ends_at > %(now)s
              AND (SELECT min(x.window_start) FROM patrol_round_checkpoints x WHERE x.round_id = r.id) <= %(now)s
              ORDER BY r.planned_start, r.id"""
    ).format(scope=site_scope(who, "r.site_id"))
    params = {"site": site_id, "user": who.user_id if mine else None, "now": now}
    return _with_checkpoints(conn, conn.execute(query, params).fetchall(), now)


def list_scans(
    conn: psycopg.Connection,
    who: Principal,
    *,
    site_id: str | None = None,
    outcome: str | None = None,
    round_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    """Scans of the sites in reach, newest first, with what each counted for (unknown tags too; a
    phone scan of an unknown tag by a guard of several sites has no site and shows to that guard)."""
    query = sql.SQL(
        """SELECT s.*, c.code AS checkpoint_code, c.name AS checkpoint_name, u.username
           FROM patrol_scans s LEFT JOIN patrol_checkpoints c ON c.id = s.checkpoint_id
           LEFT JOIN users u ON u.id = s.user_id
           WHERE ({scope} OR (s.site_id IS NULL AND s.user_id = %(me)s))
             AND (%(site)s::text IS NULL OR s.site_id = %(site)s)
             AND (%(outcome)s::text IS NULL OR s.outcome = %(outcome)s)
             AND (%(round)s::bigint IS NULL OR s.round_id = %(round)s)
           ORDER BY s.at DESC, s.id DESC LIMIT %(limit)s OFFSET %(offset)s"""
    ).format(scope=site_scope(who, "s.site_id"))
    params = {
        "site": site_id,
        "outcome": outcome,
        "round": round_id,
        "me": who.user_id,
        "limit": limit,
        "offset": offset,
    }
    return conn.execute(query, params).fetchall()


def phone_scan(
    conn: psycopg.Connection, who: Principal, *, tag: str, at: datetime, now: datetime, site_id: str | None = None
) -> ScanResult:
    """A guard's phone scan: kept as a scan and as an event (kind `patrol_scan`, like a reader's).

    An unknown tag is kept too; the caller commits before it answers with the refusal.
    """
    if site_id is not None:
        _reach(who, site_id, f"site {site_id}")
        sites = [site_id]
    else:
        sites = who.site_list() or [r["id"] for r in conn.execute("SELECT id FROM sites ORDER BY id").fetchall()]
    result = record_scan(conn, sites=sites, tag=tag, at=at, now=now, via="phone", user_id=who.user_id)
    data = {"tag": tag, "via": "phone", "user": who.username, "scan_id": result.scan_id, "outcome": result.outcome}
    conn.execute(
        """INSERT INTO events (at, received_at, site_id, kind, detail, data) VALUES (%s, %s, %s, %s, %s, %s)""",
        (at, now, result.site_id, PATROL_SCAN_EVENT, result.reason or None, Jsonb(data)),
    )
    return result
