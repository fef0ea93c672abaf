"""What managers configure: routing rules, SLA policies and business calendars."""

from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.domain import audit, records, sla
from cloud.domain.access import MANAGEMENT, OFFICE, Principal
from cloud.domain.business_hours import Holiday, WeeklySchedule
from cloud.domain.tickets import Priority
from contract.common import Category

router = APIRouter(prefix="/api/v1", tags=["rules"])
Manager = Annotated[Principal, Depends(allow(*MANAGEMENT))]
Office = Annotated[Principal, Depends(allow(*OFFICE))]
Sub = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_-]*$")]


class RuleIn(BaseModel):
    site_id: Annotated[str, Field(max_length=63)] | None = None
    category: Category | None = None
    subcategory: Sub | None = None
    building_id: int | None = None
    department_id: int
    skill: Sub | None = None
    auto_assign: bool = False
    strategy: Literal["round_robin", "least_load"] = "least_load"
    position: Annotated[int, Field(ge=0, le=10_000)] = 100
    active: bool = True


class RuleOut(RuleIn):
    id: int


class PolicyIn(BaseModel):
    site_id: Annotated[str, Field(max_length=63)] | None = None
    category: Category | None = None
    priority: Priority | None = None
    response_minutes: Annotated[int, Field(gt=0, le=60 * 24 * 365)]
    resolution_minutes: Annotated[int, Field(gt=0, le=60 * 24 * 365)]
    #: a business calendar; leave out for around the clock
    calendar_id: int | None = None
    active: bool = True


class PolicyOut(PolicyIn):
    id: int


class CalendarIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    schedule: WeeklySchedule
    holidays: list[Holiday] = Field(default_factory=list, max_length=1000)


class CalendarOut(CalendarIn):
    id: int


def _site_ok(conn: psycopg.Connection, who: Principal, site_id: str | None) -> None:
    if site_id is None:
        if who.site_ids is not None:
            raise ApiError(403, "only an admin sets rules for every site; name your site")
        return
    if records.fetch(conn, "sites", site_id) is None or not who.reaches_site(site_id):
        raise ApiError(404, f"site {site_id} does not exist")


def _rule_refs(conn: psycopg.Connection, body: RuleIn) -> None:
    if records.fetch(conn, "departments", body.department_id) is None:
        raise ApiError(404, f"department {body.department_id} does not exist")
    if body.building_id is not None:
        b = records.fetch(conn, "buildings", body.building_id)
        if b is None or b["site_id"] != body.site_id:
            raise ApiError(422, "building_id: the building must belong to the rule's site")


def _in_reach(who: Principal, row: dict | None, what: str, row_id: int) -> dict:
    if (
        row is None
        or (row["site_id"] is None and who.site_ids is not None)
        or not (row["site_id"] is None or who.reaches_site(row["site_id"]))
    ):
        raise ApiError(404, f"{what} {row_id} does not exist")
    return row


@router.get("/routing-rules", response_model=list[RuleOut])
def list_rules(conn: Conn, who: Office) -> list[dict]:
    return conn.execute(
        """SELECT * FROM routing_rules WHERE site_id IS NULL OR %(all)s OR site_id = ANY(%(sites)s)
           ORDER BY position, id""",
        {"all": who.site_ids is None, "sites": who.site_list() or []},
    ).fetchall()


@router.post("/routing-rules", response_model=RuleOut, status_code=201)
def create_rule(body: RuleIn, conn: Conn, clock: ClockDep, who: Manager) -> dict:
    """Route tickets of a category (and subcategory, building) at a site to a department, with a skill
    and automatic assignment by round robin or least load."""
    _site_ok(conn, who, body.site_id)
    _rule_refs(conn, body)
    return records.insert(conn, "routing_rules", body.model_dump(mode="json"), actor=who, now=clock.now())


@router.put("/routing-rules/{rule_id}", response_model=RuleOut)
def replace_rule(rule_id: int, body: RuleIn, conn: Conn, clock: ClockDep, who: Manager) -> dict:
    _in_reach(who, records.fetch(conn, "routing_rules", rule_id), "routing rule", rule_id)
    _site_ok(conn, who, body.site_id)
    _rule_refs(conn, body)
    values = body.model_dump(mode="json")
    return records.update(conn, "routing_rules", rule_id, values, columns=values.keys(), actor=who, now=clock.now())


@router.delete("/routing-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, conn: Conn, clock: ClockDep, who: Manager) -> None:
    _in_reach(who, records.fetch(conn, "routing_rules", rule_id), "routing rule", rule_id)
    records.delete(conn, "routing_rules", rule_id, actor=who, now=clock.now())


@router.get("/sla-policies", response_model=list[PolicyOut])
def list_policies(conn: Conn, who: Office) -> list[dict]:
    return conn.execute(
        """SELECT * FROM sla_policies WHERE site_id IS NULL OR %(all)s OR site_id = ANY(%(sites)s)
           ORDER BY site_id NULLS FIRST, category NULLS FIRST, priority NULLS FIRST, id""",
        {"all": who.site_ids is None, "sites": who.site_list() or []},
    ).fetchall()


def _policy_refs(conn: psycopg.Connection, body: PolicyIn) -> None:
    if body.calendar_id is not None and records.fetch(conn, "business_calendars", body.calendar_id) is None:
        raise ApiError(404, f"calendar {body.calendar_id} does not exist")
    if body.resolution_minutes < body.response_minutes:
        raise ApiError(422, "resolution_minutes: cannot be shorter than response_minutes")


@router.post("/sla-policies", response_model=PolicyOut, status_code=201)
def create_policy(body: PolicyIn, conn: Conn, clock: ClockDep, who: Manager) -> dict:
    """Time limits for a category and priority (a missing one matches any): response and resolution, in
    minutes of the calendar's working time (no calendar: around the clock). Applies to new tickets."""
    _site_ok(conn, who, body.site_id)
    _policy_refs(conn, body)
    try:
        with conn.transaction():
            return records.insert(conn, "sla_policies", body.model_dump(mode="json"), actor=who, now=clock.now())
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "an active policy for that site, category and priority exists; change it instead") from None


@router.put("/sla-policies/{policy_id}", response_model=PolicyOut)
def replace_policy(policy_id: int, body: PolicyIn, conn: Conn, clock: ClockDep, who: Manager) -> dict:
    _in_reach(who, records.fetch(conn, "sla_policies", policy_id), "policy", policy_id)
    _site_ok(conn, who, body.site_id)
    _policy_refs(conn, body)
    values = body.model_dump(mode="json")
    try:
        with conn.transaction():
            return records.update(
                conn, "sla_policies", policy_id, values, columns=values.keys(), actor=who, now=clock.now()
            )
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "an active policy for that site, category and priority exists") from None


def _calendar_out(conn: psycopg.Connection, row: dict) -> dict:
    holidays = conn.execute(
        "SELECT day, name FROM calendar_holidays WHERE calendar_id = %s ORDER BY day", (row["id"],)
    ).fetchall()
    return {**row, "holidays": holidays}


@router.get("/calendars", response_model=list[CalendarOut])
def list_calendars(conn: Conn, _who: Office) -> list[dict]:
    return [
        _calendar_out(conn, r)
        for r in conn.execute("SELECT id, name, schedule FROM business_calendars ORDER BY name").fetchall()
    ]


@router.post("/calendars", response_model=CalendarOut, status_code=201)
def create_calendar(body: CalendarIn, conn: Conn, clock: ClockDep, who: Manager) -> dict:
    """Working hours per weekday and holidays, for SLA policies."""
    if conn.execute("SELECT 1 FROM business_calendars WHERE name = %s", (body.name,)).fetchone():
        raise ApiError(409, f"a calendar {body.name!r} exists")
    calendar_id = sla.create_calendar(conn, body.name, body.schedule, body.holidays)
    row = records.fetch(conn, "business_calendars", calendar_id)
    assert row is not None
    audit.record(
        conn,
        actor=who,
        action="create",
        entity="business_calendars",
        entity_id=calendar_id,
        now=clock.now(),
        after=body.model_dump(mode="json"),
    )
    return _calendar_out(conn, row)


@router.put("/calendars/{calendar_id}", response_model=CalendarOut)
def replace_calendar(calendar_id: int, body: CalendarIn, conn: Conn, clock: ClockDep, who: Manager) -> dict:
    """Change hours or holidays; deadlines already set stay (they were promised), new ones follow."""
    before = records.fetch(conn, "business_calendars", calendar_id)
    if before is None:
        raise ApiError(404, f"calendar {calendar_id} does not exist")
    if conn.execute(
        "SELECT 1 FROM business_calendars WHERE name = %s AND id <> %s", (body.name, calendar_id)
    ).fetchone():
        raise ApiError(409, f"a calendar {body.name!r} exists")
    conn.execute(
        "UPDATE business_calendars SET name = %s, schedule = %s WHERE id = %s",
        (body.name, Jsonb(body.schedule.to_json()), calendar_id),
    )
    conn.execute("DELETE FROM calendar_holidays WHERE calendar_id = %s", (calendar_id,))
    for h in body.holidays:
        conn.execute(
            "INSERT INTO calendar_holidays (calendar_id, day, name) VALUES (%s, %s, %s)", (calendar_id, h.day, h.name)
        )
    audit.record(
        conn,
        actor=who,
        action="update",
        entity="business_calendars",
        entity_id=calendar_id,
        now=clock.now(),
        before=_calendar_out(conn, before) | {"holidays": None},
        after=body.model_dump(mode="json"),
    )
    row = records.fetch(conn, "business_calendars", calendar_id)
    assert row is not None
    return _calendar_out(conn, row)
