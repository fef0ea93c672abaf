"""Security patrol: checkpoints, routes, schedules and assignments (management); rounds with each
checkpoint's status (staff); the round in course for the guard console; scans from guards' phones.
How it fits together: docs/patrol.md.
"""

from datetime import datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from cloud.api.deps import ClockDep, Conn, allow
from cloud.domain import patrol
from cloud.domain.access import MANAGEMENT, OFFICE, STAFF, Principal, Role
from contract.common import Severity, Slug
from contract.patrol import Tag

router = APIRouter(prefix="/api/v1/patrol", tags=["patrol"])
Management = Annotated[Principal, Depends(allow(*MANAGEMENT))]
#: who reads the patrol's set-up and scans: the office and the guards
Readers = Annotated[Principal, Depends(allow(*OFFICE, Role.GUARD))]
Staff = Annotated[Principal, Depends(allow(*STAFF))]
Guard = Annotated[Principal, Depends(allow(Role.GUARD))]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Place = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Weekday = Annotated[int, Field(ge=1, le=7)]
#: a scan's phone clock may run a little ahead of the server's
_CLOCK_SKEW = timedelta(minutes=2)


class CheckpointIn(BaseModel):
    site_id: Slug
    code: Code
    name: Name
    place: Place = ""
    #: the NFC tag's uid or the QR code's text; unique within the site
    tag: Tag
    tag_kind: Literal["nfc", "qr"]


class CheckpointPatch(BaseModel):
    code: Code | None = None
    name: Name | None = None
    place: Place | None = None
    tag: Tag | None = None
    tag_kind: Literal["nfc", "qr"] | None = None


class StopIn(BaseModel):
    checkpoint_id: int
    #: minutes after the round's start when the checkpoint is due
    offset_minutes: Annotated[int, Field(ge=0, le=24 * 60)]
    #: the due window: due ± this many minutes
    tolerance_minutes: Annotated[int, Field(ge=0, le=240)]


class RouteBody(BaseModel):
    name: Name
    #: how long after a checkpoint's window a scan still counts, as late, before it is missed
    late_minutes: Annotated[int, Field(ge=0, le=240)] = 15
    missed_severity: Severity | None = None
    late_severity: Severity | None = None
    #: in walking order
    checkpoints: Annotated[list[StopIn], Field(min_length=1, max_length=100)]


class RouteIn(RouteBody):
    site_id: Slug


class ScheduleIn(BaseModel):
    route_id: int
    #: ISO weekdays, 1 = Monday, in the site's time zone
    weekdays: Annotated[list[Weekday], Field(min_length=1, max_length=7)] = [1, 2, 3, 4, 5, 6, 7]
    #: local start times; or every_minutes from from_time to until_time
    times: Annotated[list[time], Field(min_length=1, max_length=96)] | None = None
    every_minutes: Annotated[int, Field(ge=5, le=24 * 60)] | None = None
    from_time: time | None = None
    until_time: time | None = None


class AssignmentIn(BaseModel):
    schedule_id: int
    #: a user with the role guard who works at the route's site
    user_id: int
    #: only these ISO weekdays (none: every day)
    weekdays: Annotated[list[Weekday], Field(min_length=1, max_length=7)] | None = None


class ScanIn(BaseModel):
    tag: Tag
    #: when the tag was read (default: now); a phone that was offline sends its own time
    at: AwareDatetime | None = None
    #: the site, for a guard of several sites whose checkpoints share a tag
    site_id: Slug | None = None


# --- checkpoints ---------------------------------------------------------------------------------


@router.get("/checkpoints")
def list_checkpoints(conn: Conn, who: Readers, site_id: str | None = None) -> list[dict]:
    return patrol.list_checkpoints(conn, who, site_id)


@router.post("/checkpoints", status_code=201)
def create_checkpoint(body: CheckpointIn, conn: Conn, clock: ClockDep, who: Management) -> dict:
    """A checkpoint with its tag; 409 when the site already has the code or the tag."""
    return patrol.create_checkpoint(conn, who, site_id=body.site_id, values=body.model_dump(), now=clock.now())


@router.patch("/checkpoints/{checkpoint_id}")
def update_checkpoint(checkpoint_id: int, body: CheckpointPatch, conn: Conn, clock: ClockDep, who: Management) -> dict:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return patrol.update_checkpoint(conn, who, checkpoint_id, changes, clock.now())


@router.delete("/checkpoints/{checkpoint_id}", status_code=204)
def retire_checkpoint(checkpoint_id: int, conn: Conn, clock: ClockDep, who: Management) -> None:
    """Retire a checkpoint (409 while a route uses it); its recorded rounds keep it."""
    patrol.retire_checkpoint(conn, who, checkpoint_id, clock.now())


# --- routes --------------------------------------------------------------------------------------


@router.get("/routes")
def list_routes(conn: Conn, who: Readers, site_id: str | None = None) -> list[dict]:
    return patrol.list_routes(conn, who, site_id)


@router.post("/routes", status_code=201)
def create_route(body: RouteIn, conn: Conn, clock: ClockDep, who: Management) -> dict:
    return patrol.create_route(conn, who, site_id=body.site_id, values=body.model_dump(mode="json"), now=clock.now())


@router.get("/routes/{route_id}")
def get_route(route_id: int, conn: Conn, who: Readers) -> dict:
    return patrol.route_view(conn, who, route_id)


@router.put("/routes/{route_id}")
def replace_route(route_id: int, body: RouteBody, conn: Conn, clock: ClockDep, who: Management) -> dict:
    """Change a route: rounds not begun yet are planned again with it; rounds under way keep theirs."""
    return patrol.replace_route(conn, who, route_id, body.model_dump(mode="json"), clock.now())


@router.delete("/routes/{route_id}", status_code=204)
def retire_route(route_id: int, conn: Conn, clock: ClockDep, who: Management) -> None:
    """Retire a route and its schedules; recorded rounds stay, rounds not begun are dropped."""
    patrol.retire_route(conn, who, route_id, clock.now())


# --- schedules and assignments -------------------------------------------------------------------


@router.get("/schedules")
def list_schedules(conn: Conn, who: Readers, site_id: str | None = None) -> list[dict]:
    return patrol.list_schedules(conn, who, site_id)


@router.post("/schedules", status_code=201)
def create_schedule(body: ScheduleIn, conn: Conn, clock: ClockDep, who: Management) -> dict:
    """Rounds of a route at local times of day, or every N minutes between two local times."""
    return patrol.create_schedule(conn, who, route_id=body.route_id, values=body.model_dump(), now=clock.now())


@router.delete("/schedules/{schedule_id}", status_code=204)
def retire_schedule(schedule_id: int, conn: Conn, clock: ClockDep, who: Management) -> None:
    patrol.retire_schedule(conn, who, schedule_id, clock.now())


@router.get("/assignments")
def list_assignments(conn: Conn, who: Readers, site_id: str | None = None) -> list[dict]:
    return patrol.list_assignments(conn, who, site_id)


@router.post("/assignments", status_code=201)
def create_assignment(body: AssignmentIn, conn: Conn, clock: ClockDep, who: Management) -> dict:
    """A guard walks the schedule's rounds (422 for a user who is not an active guard of the site)."""
    return patrol.create_assignment(
        conn, who, schedule_id=body.schedule_id, user_id=body.user_id, weekdays=body.weekdays, now=clock.now()
    )


@router.delete("/assignments/{assignment_id}", status_code=204)
def delete_assignment(assignment_id: int, conn: Conn, clock: ClockDep, who: Management) -> None:
    patrol.delete_assignment(conn, who, assignment_id, clock.now())


# --- rounds and scans ----------------------------------------------------------------------------


@router.get("/rounds/current")
def current_rounds(
    conn: Conn, clock: ClockDep, who: Staff, site_id: str | None = None, mine: bool = False
) -> list[dict]:
    """Rounds in course now, with each checkpoint's status: the guard console's view. `mine=true`:
    only the asking guard's rounds."""
    return patrol.current_rounds(conn, who, clock.now(), site_id=site_id, mine=mine)


@router.get("/rounds")
def list_rounds(
    conn: Conn,
    clock: ClockDep,
    who: Staff,
    site_id: str | None = None,
    route_id: int | None = None,
    guard_user_id: int | None = None,
    state: Literal["planned", "in_progress", "completed", "incomplete"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Rounds, latest start first, each with its checkpoints' statuses (on_time, late, missed, pending)."""
    return patrol.list_rounds(
        conn,
        who,
        clock.now(),
        site_id=site_id,
        route_id=route_id,
        guard_user_id=guard_user_id,
        state=state,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


@router.get("/rounds/{round_id}")
def get_round(round_id: int, conn: Conn, clock: ClockDep, who: Staff) -> dict:
    return patrol.get_round(conn, who, round_id, clock.now())


@router.post("/scans", status_code=201)
def scan(body: ScanIn, request: Request, conn: Conn, clock: ClockDep, who: Guard) -> dict:
    """A guard's phone read a checkpoint's tag. The answer says what it counted for: `on_time` or
    `late` on a round, or not counted (`early`, `repeat`, `no_round`) with the reason; every scan is
    kept. An unknown tag is kept too, and answered 422 with the reason."""
    now = clock.now()
    at = body.at or now
    if at > now + _CLOCK_SKEW:
        raise patrol.PatrolRefused(422, "at: in the future")
    max_age = request.app.state.settings.patrol_phone_scan_max_age_minutes
    if at < now - timedelta(minutes=max_age):
        raise patrol.PatrolRefused(
            422, f"at: more than {max_age:g} minutes ago; a phone scan must reach the cloud within that time"
        )
    result = patrol.phone_scan(conn, who, tag=body.tag, at=at, now=now, site_id=body.site_id)
    if result.outcome == "unknown_tag":
        conn.commit()  # kept, although the answer is a refusal
        raise patrol.PatrolRefused(422, f"tag: {result.reason}")
    cp = result.checkpoint or {}
    return {
        "scan_id": result.scan_id,
        "outcome": result.outcome,
        "counted": result.outcome in ("on_time", "late"),
        "reason": result.reason,
        "site_id": result.site_id,
        "at": at,
        "checkpoint": {k: cp.get(k) for k in ("id", "code", "name", "place")},
        "round_id": result.round_id,
        "position": result.position,
    }


@router.get("/scans")
def list_scans(
    conn: Conn,
    who: Readers,
    site_id: str | None = None,
    outcome: patrol.Outcome | None = None,
    round_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Every scan, newest first, counted or not (unknown tags too), with its outcome and reason."""
    return patrol.list_scans(conn, who, site_id=site_id, outcome=outcome, round_id=round_id, limit=limit, offset=offset)
