"""Tickets: filing, reading and every step of the complaint workflow.

Each step is its own endpoint with its own body, so each says exactly what it needs; the role
is checked first (403), then whether the caller reaches the ticket (404 as if it did not exist),
then whether the ticket's state allows the step (409 with the reason).
"""

from datetime import timedelta
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, PrincipalDep, allow
from cloud.api.schemas import TicketDetail, TicketOut
from cloud.domain import complaints, tickets, workflow
from cloud.domain.access import OFFICE, STAFF, Principal, Role, ticket_scope
from cloud.domain.tickets import Channel, Priority, Status, TicketType
from cloud.domain.workflow import WorkflowError
from cloud.storage import telemetry
from contract.common import Category

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

Number = Annotated[str, Path(max_length=40, pattern=r"^T-\d{8}-\d{4,}$")]
Slug = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_-]*$")]
Text = Annotated[str, Field(min_length=1, max_length=5000)]
Short = Annotated[str, Field(min_length=1, max_length=500)]
CauseCode = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_.-]*$")]
Staff = Annotated[Principal, Depends(allow(*STAFF))]
Office = Annotated[Principal, Depends(allow(*OFFICE))]
Filer = Annotated[Principal, Depends(allow(*OFFICE, Role.RESIDENT))]


class TicketIn(BaseModel):
    type: TicketType = TicketType.COMPLAINT
    #: leave out to have it classified from the title and description (docs/classification.md)
    category: Category | None = None
    subcategory: Slug | None = None
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=5000)] = ""
    channel: Channel = Channel.APP
    priority: Priority | None = None
    complainant_id: int | None = None
    unit_id: int | None = None
    device_id: int | None = None
    site_id: Annotated[str, Field(max_length=63)] | None = None
    location: Annotated[str, Field(max_length=200)] | None = None


class TriageIn(BaseModel):
    category: Category | None = None
    subcategory: Slug | None = None
    priority: Priority | None = None
    department_id: int | None = None
    note: Annotated[str, Field(max_length=2000)] = ""


class RedirectIn(BaseModel):
    reason: Short
    where: Short


class AssignIn(BaseModel):
    #: leave out to pick by the routing rule's strategy (round robin or least load)
    assignee_id: int | None = None
    note: Annotated[str, Field(max_length=2000)] = ""


class HoldIn(BaseModel):
    reason: Short


class RecordIn(BaseModel):
    kind: Literal["investigation", "plan", "work", "result"]
    body: Text
    #: plan: who is responsible (default: the author)
    responsible_id: int | None = None
    #: investigation of a device ticket: keep the device's telemetry this many minutes around the alarm
    telemetry_minutes: Annotated[int, Field(ge=1, le=24 * 60)] | None = None


class CommentIn(BaseModel):
    body: Text
    visibility: Literal["internal", "shared"] = "internal"


class ResolveIn(BaseModel):
    work_done: Text
    #: what the resident is told (needed when there is a complainant)
    result: Annotated[str, Field(max_length=5000)] | None = None
    cause_kind: Literal["internal", "external"]
    cause_code: CauseCode
    cause_note: Annotated[str, Field(max_length=2000)] = ""


class CloseIn(BaseModel):
    note: Annotated[str, Field(max_length=2000)] = ""


class RateIn(BaseModel):
    rating: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=2000)] = ""


class RejectIn(BaseModel):
    reason: Short


class CancelIn(BaseModel):
    reason: Short


class LinkIn(BaseModel):
    parent: Annotated[str, Field(max_length=40, pattern=r"^T-\d{8}-\d{4,}$")]


class Candidate(BaseModel):
    number: str
    title: str
    status: str
    type: str
    channel: str
    device_name: str | None
    building: str | None
    reason: str


def cfg(request: Request) -> workflow.Settings:
    return workflow.settings_from(request.app.state.settings)


Cfg = Annotated[workflow.Settings, Depends(cfg)]


def _detail(conn: psycopg.Connection, who: Principal, number: str) -> dict:
    found = tickets.get_ticket(conn, ticket_scope(who), number, staff_view=who.role != Role.RESIDENT)
    if found is None:
        raise WorkflowError(404, f"ticket {number} does not exist")
    return found


@router.get("", response_model=list[TicketOut])
def list_tickets(
    conn: Conn,
    who: PrincipalDep,
    channel: Channel | None = None,
    type: TicketType | None = None,
    status: Status | None = None,
    category: Category | None = None,
    site: Annotated[str | None, Query(max_length=63)] = None,
    assignee: Annotated[int | Literal["me"] | None, Query()] = None,
    department_id: int | None = None,
    unit_id: int | None = None,
    device_id: int | None = None,
    complainant_id: int | None = None,
    breached: bool | None = None,
    open: bool | None = None,
    order: Literal["newest", "urgency", "due"] = "newest",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Tickets the caller reaches, newest first (or by urgency: priority, then deadline)."""
    filters = {
        "channel": channel.value if channel else None,
        "type": type.value if type else None,
        "status": status.value if status else None,
        "category": category.value if category else None,
        "site": site,
        "assignee": who.user_id if assignee == "me" else assignee,
        "department": department_id,
        "unit": unit_id,
        "device": device_id,
        "complainant": complainant_id,
        "breached": breached,
        "open": open,
    }
    return tickets.list_tickets(conn, ticket_scope(who), filters=filters, order=order, limit=limit, offset=offset)


@router.post("", response_model=TicketDetail, status_code=201)
def file_ticket(body: TicketIn, request: Request, conn: Conn, clock: ClockDep, who: Filer, settings: Cfg) -> dict:
    """File a complaint or repair request (a resident in the app; the service desk for a caller).
    Without a category, the text is classified: sure enough, the ticket takes the labels and is routed;
    unsure, it goes to the service desk to classify by hand."""
    new = complaints.NewTicket(
        type=body.type.value,
        category=body.category.value if body.category else None,
        subcategory=body.subcategory,
        title=body.title,
        description=body.description,
        channel=body.channel.value,
        priority=body.priority.value if body.priority else None,
        complainant_id=body.complainant_id,
        unit_id=body.unit_id,
        device_id=body.device_id,
        site_id=body.site_id,
        location=body.location,
    )
    ticket = complaints.open_ticket(
        conn,
        who,
        new,
        clock.now(),
        settings,
        numbers=request.app.state.numbers,
        classifier=request.app.state.classifier,
    )
    return _detail(conn, who, ticket["number"])


@router.get("/{number}", response_model=TicketDetail)
def get_ticket(number: Number, conn: Conn, who: PrincipalDep) -> dict:
    """One ticket with its timeline (residents see what is shared with them), alarms, photos and links."""
    return _detail(conn, who, number)


@router.post("/{number}/triage", response_model=TicketDetail)
def triage(number: Number, body: TriageIn, conn: Conn, clock: ClockDep, who: Office, settings: Cfg) -> dict:
    """Accept the ticket: confirm or correct its category and priority; the department follows the rules."""
    ticket = workflow.load(conn, who, number)
    workflow.triage(
        conn,
        ticket,
        who,
        clock.now(),
        settings,
        category=body.category.value if body.category else None,
        subcategory=body.subcategory,
        priority=body.priority.value if body.priority else None,
        department_id=body.department_id,
        note=body.note,
    )
    return _detail(conn, who, number)


@router.post("/{number}/redirect", response_model=TicketDetail)
def redirect(number: Number, body: RedirectIn, conn: Conn, clock: ClockDep, who: Office) -> dict:
    """Out of scope: say why and where to turn (the resident sees both)."""
    workflow.redirect(conn, workflow.load(conn, who, number), who, clock.now(), reason=body.reason, where=body.where)
    return _detail(conn, who, number)


@router.post("/{number}/assign", response_model=TicketDetail)
def assign(number: Number, body: AssignIn, conn: Conn, clock: ClockDep, who: Office) -> dict:
    workflow.assign(
        conn, workflow.load(conn, who, number), who, clock.now(), assignee_id=body.assignee_id, note=body.note
    )
    return _detail(conn, who, number)


@router.post("/{number}/start", response_model=TicketDetail)
def start(number: Number, conn: Conn, clock: ClockDep, who: Staff) -> dict:
    workflow.start(conn, workflow.load(conn, who, number), who, clock.now())
    return _detail(conn, who, number)


@router.post("/{number}/hold", response_model=TicketDetail)
def hold(number: Number, body: HoldIn, conn: Conn, clock: ClockDep, who: Staff) -> dict:
    """Waiting for parts or access: the SLA clock stops until the ticket resumes."""
    workflow.hold(conn, workflow.load(conn, who, number), who, clock.now(), reason=body.reason)
    return _detail(conn, who, number)


@router.post("/{number}/resume", response_model=TicketDetail)
def resume(number: Number, conn: Conn, clock: ClockDep, who: Staff, settings: Cfg) -> dict:
    workflow.resume(conn, workflow.load(conn, who, number), who, clock.now(), settings)
    return _detail(conn, who, number)


@router.post("/{number}/records", response_model=TicketDetail)
def add_record(number: Number, body: RecordIn, conn: Conn, clock: ClockDep, who: Staff) -> dict:
    """A process step's record: investigation (optionally with the device's telemetry around the alarm),
    plan (with the person responsible), work done, result told to the resident."""
    ticket = workflow.load(conn, who, number)
    data = None
    if body.kind == "investigation" and body.telemetry_minutes:
        data = {"telemetry": _telemetry_around(conn, ticket, body.telemetry_minutes)}
    workflow.add_record(
        conn, ticket, who, clock.now(), kind=body.kind, body=body.body, responsible_id=body.responsible_id, data=data
    )
    return _detail(conn, who, number)


@router.post("/{number}/comments", response_model=TicketDetail)
def add_comment(number: Number, body: CommentIn, conn: Conn, clock: ClockDep, who: PrincipalDep) -> dict:
    """Internal comments are for staff; shared ones reach the resident. A resident's comment is shared."""
    ticket = workflow.load(conn, who, number)
    workflow.comment(conn, ticket, who, clock.now(), body=body.body, shared=body.visibility == "shared")
    return _detail(conn, who, number)


@router.post("/{number}/resolve", response_model=TicketDetail)
def resolve(number: Number, body: ResolveIn, conn: Conn, clock: ClockDep, who: Staff, settings: Cfg) -> dict:
    """The fix is done: the work, what the resident is told, and the cause (internal or external, a code)."""
    workflow.resolve(
        conn,
        workflow.load(conn, who, number),
        who,
        clock.now(),
        settings,
        work_done=body.work_done,
        result=body.result,
        cause_kind=body.cause_kind,
        cause_code=body.cause_code,
        cause_note=body.cause_note,
    )
    return _detail(conn, who, number)


@router.post("/{number}/close", response_model=TicketDetail)
def close(number: Number, body: CloseIn, conn: Conn, clock: ClockDep, who: Office, settings: Cfg) -> dict:
    """Close a resolved ticket without a rating (the resident cannot be reached)."""
    workflow.close(conn, workflow.load(conn, who, number), who, clock.now(), settings, note=body.note)
    return _detail(conn, who, number)


@router.post("/{number}/rate", response_model=TicketDetail)
def rate(number: Number, body: RateIn, conn: Conn, clock: ClockDep, who: Filer, settings: Cfg) -> dict:
    """The resident rates the fix from 1 to 5; the ticket closes."""
    workflow.rate(
        conn, workflow.load(conn, who, number), who, clock.now(), settings, rating=body.rating, comment=body.comment
    )
    return _detail(conn, who, number)


@router.post("/{number}/reject", response_model=TicketDetail)
def reject(number: Number, body: RejectIn, conn: Conn, clock: ClockDep, who: Filer) -> dict:
    """The resident says the problem is still there: the ticket reopens."""
    workflow.reject(conn, workflow.load(conn, who, number), who, clock.now(), reason=body.reason)
    return _detail(conn, who, number)


@router.post("/{number}/cancel", response_model=TicketDetail)
def cancel(number: Number, body: CancelIn, conn: Conn, clock: ClockDep, who: Filer) -> dict:
    workflow.cancel(conn, workflow.load(conn, who, number), who, clock.now(), reason=body.reason)
    return _detail(conn, who, number)


@router.post("/{number}/link", response_model=TicketDetail)
def link(number: Number, body: LinkIn, conn: Conn, clock: ClockDep, who: Office) -> dict:
    """Link this ticket to one already open for the same matter; linked tickets resolve together."""
    ticket = workflow.load(conn, who, number)
    parent = workflow.load(conn, who, body.parent)
    workflow.link(conn, ticket, parent, who, clock.now())
    return _detail(conn, who, number)


@router.get("/{number}/link-candidates", response_model=list[Candidate])
def link_candidates(number: Number, conn: Conn, who: Office) -> list[dict]:
    """Open tickets this one may be about: the same device first, then the same unit, building or location."""
    ticket = workflow.load(conn, who, number, lock=False)
    rows = conn.execute(
        """SELECT t.number, t.title, t.status, t.type, t.channel, d.name AS device_name, t.building,
                  CASE WHEN %(device)s::bigint IS NOT NULL AND t.device_id = %(device)s THEN 'same device'
                       WHEN %(unit)s::bigint IS NOT NULL AND t.unit_id = %(unit)s THEN 'same unit'
                       WHEN %(building_id)s::bigint IS NOT NULL AND t.building_id = %(building_id)s THEN 'same building'
                       WHEN %(building)s::text IS NOT NULL AND t.building = %(building)s THEN 'same building'
                       ELSE 'same location' END AS reason
           FROM tickets t LEFT JOIN devices d ON d.id = t.device_id
           WHERE t.site_id = %(site)s AND t.id <> %(id)s AND t.parent_id IS NULL
             AND t.status NOT IN ('resolved', 'closed', 'cancelled', 'redirected')
             AND ((%(device)s::bigint IS NOT NULL AND t.device_id = %(device)s)
                  OR (%(unit)s::bigint IS NOT NULL AND t.unit_id = %(unit)s)
                  OR (%(building_id)s::bigint IS NOT NULL AND t.building_id = %(building_id)s)
                  OR (%(building)s::text IS NOT NULL AND t.building = %(building)s)
                  OR (%(location)s::text IS NOT NULL AND t.location = %(location)s))
           ORDER BY (t.device_id IS NOT DISTINCT FROM %(device)s) DESC, t.channel = 'device' DESC, t.created_at DESC
           LIMIT 20""",
        {
            "id": ticket["id"],
            "site": ticket["site_id"],
            "device": ticket["device_id"],
            "unit": ticket["unit_id"],
            "building_id": ticket["building_id"],
            "building": ticket["building"],
            "location": ticket["location"],
        },
    ).fetchall()
    return rows


def _telemetry_around(conn: psycopg.Connection, ticket: dict, minutes: int) -> dict:
    """The device's metrics around the alarm (or the ticket) time, in one-minute buckets, kept as evidence."""
    if ticket["device_id"] is None:
        raise WorkflowError(422, "telemetry_minutes: the ticket concerns no device")
    alarm = conn.execute("SELECT raised_at FROM alarms WHERE id = %s", (ticket["alarm_id"],)).fetchone()
    center = alarm["raised_at"] if alarm else ticket["created_at"]
    start, end = center - timedelta(minutes=minutes), center + timedelta(minutes=minutes)
    metrics = [
        r["metric"]
        for r in conn.execute(
            """SELECT DISTINCT metric FROM telemetry WHERE device_id = %s AND time >= %s AND time < %s""",
            (ticket["device_id"], start, end),
        ).fetchall()
    ]
    width = timedelta(minutes=1) if minutes <= 120 else timedelta(minutes=10)
    series = {
        m: [
            {"bucket": b["bucket"].isoformat(), "min": b["min"], "max": b["max"], "mean": b["mean"]}
            for b in telemetry.bucketed(
                conn, device_id=ticket["device_id"], metric=m, start=start, end=end, bucket=width
            )
        ]
        for m in metrics
    }
    return {"around": center.isoformat(), "minutes": minutes, "series": series}
