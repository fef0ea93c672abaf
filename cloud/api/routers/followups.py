"""Follow-up visits after closing, and the audit log."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.domain import audit, complaints, workflow
from cloud.domain.access import OFFICE, Principal, Role
from cloud.domain.tickets import add_event

router = APIRouter(prefix="/api/v1", tags=["follow-ups"])
Office = Annotated[Principal, Depends(allow(*OFFICE, Role.TECHNICIAN))]


class FollowupOut(BaseModel):
    id: int
    ticket_number: str
    title: str
    site_id: str | None
    unit_id: int | None
    complainant_name: str | None
    due_at: datetime
    done_at: datetime | None
    problem_recurred: bool | None
    note: str | None
    new_ticket_number: str | None


class FollowupDone(BaseModel):
    problem_recurred: bool
    note: Annotated[str, Field(max_length=2000)] = ""


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    before: Any
    after: Any


_SQL = """SELECT f.id, t.number AS ticket_number, t.title, t.site_id, t.unit_id, p.full_name AS complainant_name,
                 f.due_at, f.done_at, f.problem_recurred, f.note, n.number AS new_ticket_number
          FROM followups f JOIN tickets t ON t.id = f.ticket_id LEFT JOIN people p ON p.id = t.complainant_id
          LEFT JOIN tickets n ON n.id = f.new_ticket_id"""


@router.get("/followups", response_model=list[FollowupOut])
def list_followups(
    conn: Conn,
    who: Office,
    done: bool = False,
    due_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict]:
    """Visits to make (or made) at the sites within reach, soonest first."""
    return conn.execute(
        _SQL
        + """ WHERE (%(all)s OR t.site_id = ANY(%(sites)s)) AND (f.done_at IS NOT NULL) = %(done)s
                AND (%(before)s::timestamptz IS NULL OR f.due_at <= %(before)s)
              ORDER BY f.due_at, f.id LIMIT %(limit)s""",
        {
            "all": who.site_ids is None,
            "sites": who.site_list() or [],
            "done": done,
            "before": due_before,
            "limit": limit,
        },
    ).fetchall()


@router.post("/followups/{followup_id}", response_model=FollowupOut)
def record_visit(
    followup_id: int, body: FollowupDone, request: Request, conn: Conn, clock: ClockDep, who: Office
) -> dict:
    """Record the visit: is the problem really fixed? If it came back, a new ticket opens as a re-complaint."""
    row = conn.execute(
        """SELECT f.*, t.site_id, t.number FROM followups f JOIN tickets t ON t.id = f.ticket_id
           WHERE f.id = %s FOR UPDATE OF f""",
        (followup_id,),
    ).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"follow-up {followup_id} does not exist")
    if row["done_at"] is not None:
        raise ApiError(409, f"follow-up {followup_id} was recorded already")
    now = clock.now()
    new_id = None
    original = conn.execute("SELECT * FROM tickets WHERE id = %s", (row["ticket_id"],)).fetchone()
    assert original is not None
    if body.problem_recurred:
        new = complaints.NewTicket(
            type=original["type"],
            category=original["category"],
            subcategory=original["subcategory"],
            title=f"Came back: {original['title']}"[:200],
            description=f"Found at the follow-up visit of {original['number']}. {body.note}".strip(),
            channel="walk_in",
            priority=None,
            complainant_id=original["complainant_id"],
            unit_id=original["unit_id"],
            device_id=original["device_id"],
            site_id=original["site_id"],
            location=original["location"],
        )
        cfg = workflow.settings_from(request.app.state.settings)
        ticket = complaints.open_ticket(conn, who, new, now, cfg, numbers=request.app.state.numbers)
        new_id = ticket["id"]
        conn.execute("UPDATE tickets SET recomplaint_of = %s WHERE id = %s", (original["id"], new_id))
    conn.execute(
        "UPDATE followups SET done_at = %s, done_by = %s, problem_recurred = %s, note = %s, new_ticket_id = %s "
        "WHERE id = %s",
        (now, who.user_id, body.problem_recurred, body.note or None, new_id, followup_id),
    )
    add_event(
        conn,
        original["id"],
        at=now,
        kind="followup",
        actor=who.actor,
        actor_user_id=who.user_id,
        body="Follow-up visit: "
        + ("the problem came back." if body.problem_recurred else "it stays fixed.")
        + (f" {body.note}" if body.note else ""),
    )
    audit.record(
        conn, actor=who, action="followup", entity="followups", entity_id=followup_id, now=now, after=body.model_dump()
    )
    found = conn.execute(_SQL + " WHERE f.id = %s", (followup_id,)).fetchone()
    return found  # type: ignore[return-value]


@router.get("/audit", response_model=list[AuditOut], tags=["audit"])
def audit_log(
    conn: Conn,
    _who: Annotated[Principal, Depends(allow(Role.ADMIN))],
    entity: Annotated[str | None, Query(max_length=60)] = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Every write, newest first: who, when, what, before and after (personal data masked)."""
    return conn.execute(
        """SELECT id, at, actor, action, entity, entity_id, before, after FROM audit_log
           WHERE (%(entity)s::text IS NULL OR entity = %(entity)s)
             AND (%(entity_id)s::text IS NULL OR entity_id = %(entity_id)s)
             AND (%(actor)s::text IS NULL OR actor = %(actor)s)
           ORDER BY at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s""",
        {"entity": entity, "entity_id": entity_id, "actor": actor, "limit": limit, "offset": offset},
    ).fetchall()
