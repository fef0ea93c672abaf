"""The complaint workflow: a ticket's states, who may move it, and what each step records.

    new → triaged → assigned → in_progress → resolved → closed
    with redirected (out of scope), on_hold (the SLA clock pauses), reopened (the resident
    rejects the fix) and cancelled.

Every function here runs inside the caller's transaction and leaves its trace: the ticket's
columns (the facts the KPIs need), a timeline entry with actor and time, the audit log, and the
notifications for those concerned. A step the state or the role does not allow raises
WorkflowError with a 409 or 403 and the reason.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from cloud.classify import store as classifier_store
from cloud.domain import audit, notifications, routing, sla_apply
from cloud.domain.access import OFFICE, Principal, Role, ticket_scope
from cloud.domain.errors import Refused
from cloud.domain.tickets import FINISHED, Priority, Status, add_event

SYSTEM = "system"

if TYPE_CHECKING:
    from cloud.settings import CloudSettings

#: states in which the work is over, or waits only for the resident's answer
DONE = (Status.RESOLVED, Status.CLOSED, Status.CANCELLED, Status.REDIRECTED)
PRIORITY_UP = {Priority.LOW: Priority.NORMAL, Priority.NORMAL: Priority.HIGH, Priority.HIGH: Priority.URGENT}


class WorkflowError(Refused):
    """A step of the workflow that cannot be taken, and why."""


@dataclass(frozen=True)
class Settings:
    """The workflow's knobs, from CloudSettings."""

    feedback_days: float
    followup_days: float
    recomplaint_window_days: float
    warn_fraction: float


def settings_from(settings: "CloudSettings") -> Settings:
    return Settings(
        feedback_days=settings.feedback_days,
        followup_days=settings.followup_days,
        recomplaint_window_days=settings.recomplaint_window_days,
        warn_fraction=settings.sla_warn_fraction,
    )


def load(conn: psycopg.Connection, who: Principal | None, number: str, *, lock: bool = True) -> dict:
    """The ticket by number, locked for the change, if the principal reaches it (404 otherwise)."""
    scope = ticket_scope(who) if who is not None else psycopg.sql.SQL("TRUE")
    query = psycopg.sql.SQL("SELECT t.* FROM tickets t WHERE t.number = %s AND {}{}").format(
        scope, psycopg.sql.SQL(" FOR UPDATE") if lock else psycopg.sql.SQL("")
    )
    row = conn.execute(query, (number,)).fetchone()
    if row is None:
        raise WorkflowError(404, f"ticket {number} does not exist")
    return row


# --- who is concerned ------------------------------------------------------------------------


def complainant_users(conn: psycopg.Connection, ticket: dict) -> list[int]:
    if ticket["complainant_id"] is None:
        return []
    return [
        r["id"]
        for r in conn.execute(
            "SELECT id FROM users WHERE person_id = %s AND active", (ticket["complainant_id"],)
        ).fetchall()
    ]


def department_managers(conn: psycopg.Connection, ticket: dict) -> list[int]:
    """The department's manager when they work at the ticket's site, else the managers of the site."""
    if ticket["department_id"] is not None:
        row = conn.execute(
            """SELECT d.manager_user_id FROM departments d JOIN users u ON u.id = d.manager_user_id
               WHERE d.id = %s AND u.active AND (u.role = 'admin' OR EXISTS (
                   SELECT 1 FROM staff_sites ss WHERE ss.person_id = u.person_id AND ss.site_id = %s))""",
            (ticket["department_id"], ticket["site_id"]),
        ).fetchone()
        if row and row["manager_user_id"]:
            return [row["manager_user_id"]]
    return [
        r["id"]
        for r in conn.execute(
            """SELECT u.id FROM users u JOIN staff_sites ss ON ss.person_id = u.person_id
           WHERE u.role = 'manager' AND u.active AND ss.site_id = %s""",
            (ticket["site_id"],),
        ).fetchall()
    ]


def tell(
    conn: psycopg.Connection, users: list[int], ticket: dict, kind: str, title: str, body: str, now: datetime
) -> None:
    if users:
        notifications.notify(
            conn,
            user_ids=users,
            kind=kind,
            title=f"{ticket['number']}: {title}",
            body=body,
            ticket_id=ticket["id"],
            now=now,
        )


def _tell_complainant(conn: psycopg.Connection, ticket: dict, status: str, body: str, now: datetime) -> None:
    tell(conn, complainant_users(conn, ticket), ticket, "status_changed", status.replace("_", " "), body, now)


# --- records ---------------------------------------------------------------------------------


def _actor(who: Principal | None) -> str:
    return who.actor if who is not None else SYSTEM


def _record(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal | None,
    now: datetime,
    *,
    kind: str,
    body: str,
    shared: bool,
    changes: dict[str, Any],
    data: dict[str, Any] | None = None,
) -> dict:
    """Apply column changes, write the timeline entry and the audit record; return the new row."""
    before = {k: ticket[k] for k in changes}
    if changes:
        sets = psycopg.sql.SQL(", ").join(
            psycopg.sql.SQL("{} = {}").format(psycopg.sql.Identifier(k), psycopg.sql.Placeholder(k)) for k in changes
        )
        conn.execute(
            psycopg.sql.SQL("UPDATE tickets SET {}, updated_at = %(_now)s WHERE id = %(_id)s").format(sets),
            {**changes, "_now": now, "_id": ticket["id"]},
        )
    add_event(
        conn,
        ticket["id"],
        at=now,
        kind=kind,
        body=body,
        actor=_actor(who),
        data={**(data or {}), **({"changes": audit.plain(changes)} if changes else {})},
        actor_user_id=who.user_id if who else None,
        visibility="shared" if shared else "internal",
    )
    audit.record(
        conn,
        actor=who or SYSTEM,
        action=kind,
        entity="tickets",
        entity_id=ticket["number"],
        now=now,
        before=before,
        after=changes,
    )
    return {**ticket, **changes, "updated_at": now}


def _first_response(ticket: dict, who: Principal | None, now: datetime) -> dict[str, Any]:
    """Staff answering for the first time stops the response clock."""
    if ticket["first_response_at"] is None and who is not None and who.role != Role.RESIDENT:
        return {"first_response_at": now}
    return {}


# --- the steps -------------------------------------------------------------------------------


def _require(cond: bool, status: int, reason: str) -> None:
    if not cond:
        raise WorkflowError(status, reason)


def _state(ticket: dict, allowed: tuple[Status, ...], action: str) -> None:
    if Status(ticket["status"]) not in allowed:
        allowed_text = ", ".join(s.value for s in allowed)
        raise WorkflowError(409, f"cannot {action} a ticket that is {ticket['status']} (only when {allowed_text})")


def _is_assignee(ticket: dict, who: Principal) -> bool:
    return ticket["assignee_id"] == who.user_id


def _office_or_assignee(ticket: dict, who: Principal, action: str) -> None:
    if who.role in OFFICE or _is_assignee(ticket, who):
        return
    raise WorkflowError(403, f"only the assignee or the office may {action} this ticket")


def triage(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal,
    now: datetime,
    cfg: Settings,
    *,
    category: str | None,
    subcategory: str | None,
    priority: str | None,
    department_id: int | None,
    note: str,
) -> dict:
    """The initial triage: in scope, with its category, priority and department."""
    _require(who.role in OFFICE, 403, "only the office triages tickets")
    _state(ticket, (Status.NEW,), "triage")
    changes: dict[str, Any] = {"status": Status.TRIAGED.value, "triaged_at": now, **_first_response(ticket, who, now)}
    for key, value in (("category", category), ("subcategory", subcategory), ("priority", priority)):
        if value is not None and value != ticket[key]:
            changes[key] = value
    if department_id is not None:
        changes["department_id"] = department_id
    ticket = _record(conn, ticket, who, now, kind="triaged", body=note or "Accepted.", shared=True, changes=changes)
    if category is not None or subcategory is not None:
        classifier_store.record_staff_labels(conn, ticket, user_id=who.user_id, actor=who.actor, now=now)
    if {"category", "subcategory", "priority"} & changes.keys() or department_id is None:
        ticket, _route = _route_and_time(conn, ticket, who, now, cfg, keep_department=department_id is not None)
    _tell_complainant(conn, ticket, "triaged", note or "Your request was accepted.", now)
    return ticket


def redirect(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, *, reason: str, where: str) -> dict:
    """Out of scope: the reason and where to turn, shown to the resident."""
    _require(who.role in OFFICE, 403, "only the office redirects tickets")
    _state(ticket, (Status.NEW, Status.TRIAGED), "redirect")
    changes = {
        "status": Status.REDIRECTED.value,
        "redirect_reason": reason,
        "redirect_to": where,
        "triaged_at": now,
        **_first_response(ticket, who, now),
    }
    body = f"Not ours to handle: {reason}. Please turn to: {where}."
    ticket = _record(conn, ticket, who, now, kind="redirected", body=body, shared=True, changes=changes)
    _tell_complainant(conn, ticket, "redirected", body, now)
    return ticket


def assign(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal | None,
    now: datetime,
    *,
    assignee_id: int | None,
    note: str = "",
    route: routing.Route | None = None,
) -> dict:
    """Give the ticket to a technician (or guard); without one, pick by the routing rule's strategy
    (`route`, when the caller has looked it up already)."""
    if who is not None:
        _require(who.role in OFFICE, 403, "only the office assigns tickets")
    _state(ticket, (Status.NEW, Status.TRIAGED, Status.ASSIGNED, Status.IN_PROGRESS, Status.REOPENED), "assign")
    if assignee_id is None:
        if ticket["department_id"] is None:
            raise WorkflowError(409, "no department to pick from: triage the ticket or name the assignee")
        route = route or routing.route_for(conn, ticket)
        picked = routing.pick_assignee(
            conn,
            department_id=ticket["department_id"],
            site_id=ticket["site_id"],
            skill=route.skill if route and route.department_id == ticket["department_id"] else None,
            strategy=route.strategy if route else "least_load",
        )
        if picked is None:
            raise WorkflowError(409, "nobody on duty in the department can take it: name the assignee")
        assignee = {
            "id": picked["user_id"],
            "person_id": picked["person_id"],
            "full_name": picked["full_name"],
            "department_id": ticket["department_id"],
        }
    else:
        assignee = conn.execute(
            """SELECT u.id, u.person_id, p.full_name, s.department_id FROM users u
               JOIN people p ON p.id = u.person_id JOIN staff s ON s.person_id = u.person_id
               WHERE u.id = %s AND u.active AND u.role IN ('technician', 'guard', 'service_desk', 'manager')
                 AND (%s::text IS NULL OR EXISTS (SELECT 1 FROM staff_sites ss
                                                  WHERE ss.person_id = u.person_id AND ss.site_id = %s))""",
            (assignee_id, ticket["site_id"], ticket["site_id"]),
        ).fetchone()
        if assignee is None:
            raise WorkflowError(422, f"assignee_id: user {assignee_id} is not active staff of the ticket's site")
    routing.mark_assigned(conn, assignee["person_id"], now)
    changes: dict[str, Any] = {
        "status": Status.ASSIGNED.value,
        "assignee_id": assignee["id"],
        "assigned_at": now,
        **_first_response(ticket, who, now),
    }
    if ticket["triaged_at"] is None:
        changes["triaged_at"] = now
    if ticket["department_id"] is None and assignee["department_id"] is not None:
        changes["department_id"] = assignee["department_id"]
    body = f"Assigned to {assignee['full_name']}." + (f" {note}" if note else "")
    ticket = _record(
        conn,
        ticket,
        who,
        now,
        kind="assigned",
        body=body,
        shared=True,
        changes=changes,
        data={"assignee_id": assignee["id"]},
    )
    tell(conn, [assignee["id"]], ticket, "assigned", "assigned to you", ticket["title"], now)
    _tell_complainant(conn, ticket, "assigned", f"{assignee['full_name']} will take care of it.", now)
    return ticket


def start(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime) -> dict:
    _office_or_assignee(ticket, who, "start")
    _state(ticket, (Status.ASSIGNED, Status.REOPENED), "start")
    changes = {
        "status": Status.IN_PROGRESS.value,
        "started_at": ticket["started_at"] or now,
        **_first_response(ticket, who, now),
    }
    ticket = _record(conn, ticket, who, now, kind="started", body="Work started.", shared=True, changes=changes)
    _tell_complainant(conn, ticket, "in_progress", "Work on your request has started.", now)
    return ticket


def hold(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, *, reason: str) -> dict:
    """Waiting for parts or access: the SLA clock pauses until resumed."""
    _office_or_assignee(ticket, who, "put on hold")
    _state(ticket, (Status.ASSIGNED, Status.IN_PROGRESS), "put on hold")
    changes = {
        "status": Status.ON_HOLD.value,
        "on_hold_since": now,
        "held_from_status": ticket["status"],
        **_first_response(ticket, who, now),
    }
    ticket = _record(conn, ticket, who, now, kind="on_hold", body=f"On hold: {reason}", shared=True, changes=changes)
    _tell_complainant(conn, ticket, "on_hold", f"On hold: {reason}", now)
    return ticket


def resume(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, cfg: Settings) -> dict:
    _office_or_assignee(ticket, who, "resume")
    _state(ticket, (Status.ON_HOLD,), "resume")
    paused = sla_apply.paused_seconds(conn, ticket, ticket["on_hold_since"], now)
    changes: dict[str, Any] = {
        "status": ticket["held_from_status"] or Status.ASSIGNED.value,
        "on_hold_since": None,
        "held_from_status": None,
        "paused_seconds": ticket["paused_seconds"] + paused,
    }
    ticket = _record(
        conn,
        ticket,
        who,
        now,
        kind="resumed",
        body="Work resumed.",
        shared=True,
        changes=changes,
        data={"paused_working_seconds": paused},
    )
    ticket = sla_apply.set_deadlines(conn, ticket, now, cfg.warn_fraction, keep_policy=True)
    _tell_complainant(conn, ticket, ticket["status"], "Work on your request resumed.", now)
    return ticket


def add_record(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal,
    now: datetime,
    *,
    kind: str,
    body: str,
    responsible_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> dict:
    """A process step's record: investigation (with evidence), plan (with its owner), work done, result told."""
    _require(who.role != Role.RESIDENT, 403, "residents add comments, not process records")
    _office_or_assignee(ticket, who, "record work on")
    _require(
        Status(ticket["status"]) not in (Status.CLOSED, Status.CANCELLED, Status.REDIRECTED),
        409,
        f"the ticket is {ticket['status']}: nothing more is recorded on it",
    )
    changes: dict[str, Any] = {}
    if kind == "plan":
        if responsible_id is not None:
            ok = conn.execute(
                "SELECT 1 FROM users WHERE id = %s AND role <> 'resident' AND active", (responsible_id,)
            ).fetchone()
            _require(ok is not None, 422, f"responsible_id: user {responsible_id} is not active staff")
        changes = {"plan": body, "plan_owner_id": responsible_id or who.user_id}
    elif kind == "work":
        changes = {"work_done": body}
    elif kind == "result":
        changes = {"result_note": body}
    shared = kind == "result"
    return _record(conn, ticket, who, now, kind=kind, body=body, shared=shared, changes=changes, data=data)


def comment(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, *, body: str, shared: bool) -> dict:
    """A comment: internal (staff only) or shared with the resident. Residents' comments are always shared."""
    if who.role == Role.RESIDENT:
        shared = True
    changes = _first_response(ticket, who, now) if shared else {}
    ticket = _record(conn, ticket, who, now, kind="comment", body=body, shared=shared, changes=changes)
    if shared and who.role != Role.RESIDENT:
        tell(conn, complainant_users(conn, ticket), ticket, "comment", "a new message", body, now)
    elif who.role == Role.RESIDENT and ticket["assignee_id"] is not None:
        tell(conn, [ticket["assignee_id"]], ticket, "comment", "the resident wrote", body, now)
    return ticket


def resolve(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal | None,
    now: datetime,
    cfg: Settings,
    *,
    work_done: str,
    result: str | None,
    cause_kind: str,
    cause_code: str,
    cause_note: str = "",
    via: str | None = None,
) -> dict:
    """The fix is done: what was done, what the resident is told, and the cause for the analysis.

    Tickets linked to this one (a complaint about a device with an alarm ticket) resolve with it.
    A ticket without a complainant has nobody to ask for feedback and closes at once.
    """
    if who is not None and via is None:  # a linked ticket follows the one its resolver may resolve
        _office_or_assignee(ticket, who, "resolve")
    _state(
        ticket,
        (Status.IN_PROGRESS,)
        if via is None
        else (Status.NEW, Status.TRIAGED, Status.ASSIGNED, Status.IN_PROGRESS, Status.ON_HOLD, Status.REOPENED),
        "resolve",
    )
    if ticket["complainant_id"] is not None and not result:
        raise WorkflowError(422, "result: say what the resident is told")
    changes: dict[str, Any] = {
        "status": Status.RESOLVED.value,
        "resolved_at": now,
        "work_done": work_done,
        "result_note": result,
        "cause_kind": cause_kind,
        "cause_code": cause_code,
        "cause_note": cause_note or None,
        "on_hold_since": None,
        "held_from_status": None,
        **_first_response(ticket, who, now),
    }
    body = f"Resolved: {result or work_done}" + (f" (together with {via})" if via else "")
    ticket = _record(conn, ticket, who, now, kind="resolved", body=body, shared=True, changes=changes)
    if ticket["complainant_id"] is None:
        ticket = _close(conn, ticket, None, now, cfg, body="Closed: no complainant to ask for feedback.")
    else:
        _tell_complainant(
            conn,
            ticket,
            "resolved",
            f"{result} Please rate the work from 1 to 5, or reject the fix if the problem is still there.",
            now,
        )
    if via is None:
        for linked in conn.execute(
            """SELECT * FROM tickets WHERE id <> %(id)s AND status <> ALL(%(done)s) AND (
                   parent_id = %(id)s OR id = %(parent)s OR (parent_id IS NOT NULL AND parent_id = %(parent)s))
               FOR UPDATE""",
            {"id": ticket["id"], "parent": ticket["parent_id"], "done": [s.value for s in DONE]},
        ).fetchall():
            resolve(
                conn,
                linked,
                who,
                now,
                cfg,
                work_done=work_done,
                result=result or work_done,
                cause_kind=cause_kind,
                cause_code=cause_code,
                cause_note=cause_note,
                via=ticket["number"],
            )
    return ticket


def _close(
    conn: psycopg.Connection, ticket: dict, who: Principal | None, now: datetime, cfg: Settings, *, body: str
) -> dict:
    ticket = _record(
        conn,
        ticket,
        who,
        now,
        kind="closed",
        body=body,
        shared=True,
        changes={"status": Status.CLOSED.value, "closed_at": now},
    )
    if ticket["complainant_id"] is not None:
        conn.execute(
            "INSERT INTO followups (ticket_id, due_at, created_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (ticket["id"], now + timedelta(days=cfg.followup_days), now),
        )
    return ticket


def close(
    conn: psycopg.Connection, ticket: dict, who: Principal | None, now: datetime, cfg: Settings, *, note: str
) -> dict:
    """Close a resolved ticket without the resident's rating (unreachable, or the feedback time ran out)."""
    if who is not None:
        _require(who.role in OFFICE, 403, "only the office closes tickets")
    _state(ticket, (Status.RESOLVED,), "close")
    ticket = _close(conn, ticket, who, now, cfg, body=note or "Closed.")
    _tell_complainant(conn, ticket, "closed", note or "Your request is closed.", now)
    return ticket


def _may_answer_feedback(ticket: dict, who: Principal) -> bool:
    if who.role in OFFICE:
        return True  # recorded on the resident's behalf (a phone call)
    return who.role == Role.RESIDENT and ticket["complainant_id"] == who.person_id


def rate(
    conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, cfg: Settings, *, rating: int, comment: str
) -> dict:
    _require(_may_answer_feedback(ticket, who), 403, "only the resident who filed it rates a ticket")
    _state(ticket, (Status.RESOLVED,), "rate")
    ticket = _record(
        conn,
        ticket,
        who,
        now,
        kind="rated",
        body=f"Rated {rating}/5. {comment}".strip(),
        shared=True,
        changes={"rating": rating, "rating_comment": comment or None, "rated_at": now},
    )
    ticket = _close(conn, ticket, who, now, cfg, body="Closed after the resident's rating.")
    if ticket["assignee_id"] is not None:
        tell(conn, [ticket["assignee_id"]], ticket, "rated", f"rated {rating}/5", comment, now)
    return ticket


def reject(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, *, reason: str) -> dict:
    """The resident says the problem is still there: the ticket reopens and the reopen is counted."""
    _require(_may_answer_feedback(ticket, who), 403, "only the resident who filed it rejects a fix")
    _state(ticket, (Status.RESOLVED,), "reject the fix of")
    changes = {"status": Status.REOPENED.value, "reopen_count": ticket["reopen_count"] + 1, "resolved_at": None}
    ticket = _record(
        conn, ticket, who, now, kind="reopened", body=f"The fix was rejected: {reason}", shared=True, changes=changes
    )
    tell(
        conn,
        [u for u in [ticket["assignee_id"]] if u] + department_managers(conn, ticket),
        ticket,
        "reopened",
        "the resident rejected the fix",
        reason,
        now,
    )
    return ticket


def cancel(conn: psycopg.Connection, ticket: dict, who: Principal, now: datetime, *, reason: str) -> dict:
    own = who.role == Role.RESIDENT and ticket["complainant_id"] == who.person_id
    _require(who.role in OFFICE or own, 403, "only the office or the resident who filed it cancels a ticket")
    allowed = (Status.NEW, Status.TRIAGED) if own else (Status.NEW, Status.TRIAGED, Status.ASSIGNED, Status.ON_HOLD)
    _state(ticket, allowed, "cancel")
    changes = {"status": Status.CANCELLED.value, "cancelled_at": now, "on_hold_since": None}
    ticket = _record(
        conn, ticket, who, now, kind="cancelled", body=f"Cancelled: {reason}", shared=True, changes=changes
    )
    if not own:
        _tell_complainant(conn, ticket, "cancelled", f"Cancelled: {reason}", now)
    return ticket


def link(conn: psycopg.Connection, ticket: dict, parent: dict, who: Principal, now: datetime) -> dict:
    """Attach a ticket (a resident's complaint) to one already open for the same matter (an alarm ticket)."""
    _require(who.role in OFFICE, 403, "only the office links tickets")
    _require(ticket["id"] != parent["id"], 422, "a ticket cannot be linked to itself")
    _require(parent["parent_id"] is None, 409, f"{parent['number']} is itself linked to another ticket; link to that")
    _require(
        Status(parent["status"]) not in DONE, 409, f"{parent['number']} is {parent['status']}: link to an open one"
    )
    _require(Status(ticket["status"]) not in DONE, 409, f"{ticket['number']} is {ticket['status']}")
    _require(parent["site_id"] == ticket["site_id"], 409, "linked tickets must be at the same site")
    ticket = _record(
        conn,
        ticket,
        who,
        now,
        kind="linked",
        shared=True,
        changes={"parent_id": parent["id"]},
        body=f"Linked to {parent['number']} ({parent['title']}): they are resolved together.",
    )
    add_event(
        conn,
        parent["id"],
        at=now,
        kind="linked",
        actor=who.actor,
        actor_user_id=who.user_id,
        body=f"{ticket['number']} was linked to this ticket.",
        data={"child": ticket["number"]},
    )
    return ticket


# --- a new ticket ----------------------------------------------------------------------------


def _route_and_time(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal | None,
    now: datetime,
    cfg: Settings,
    *,
    keep_department: bool = False,
) -> tuple[dict, routing.Route | None]:
    """Department from the routing rules, deadlines from the SLA policy; also the rule that applied."""
    route = routing.route_for(conn, ticket)
    if route is not None and not keep_department and route.department_id != ticket["department_id"]:
        conn.execute("UPDATE tickets SET department_id = %s WHERE id = %s", (route.department_id, ticket["id"]))
        ticket = {**ticket, "department_id": route.department_id}
    return sla_apply.set_deadlines(conn, ticket, now, cfg.warn_fraction), route


def find_earlier(conn: psycopg.Connection, ticket: dict, window_days: float) -> dict | None:
    """An earlier ticket on the same matter (same unit or device, same subcategory or category),
    resolved within the window: this one is then a re-complaint."""
    if ticket["unit_id"] is None and ticket["device_id"] is None:
        return None
    return conn.execute(
        """SELECT id, number FROM tickets
           WHERE id <> %(id)s AND resolved_at IS NOT NULL AND resolved_at >= %(since)s
             AND ((%(unit)s::bigint IS NOT NULL AND unit_id = %(unit)s)
                  OR (%(device)s::bigint IS NOT NULL AND device_id = %(device)s))
             AND coalesce(subcategory, category) = coalesce(%(sub)s, %(cat)s)
           ORDER BY resolved_at DESC LIMIT 1""",
        {
            "id": ticket["id"],
            "unit": ticket["unit_id"],
            "device": ticket["device_id"],
            "sub": ticket["subcategory"],
            "cat": ticket["category"],
            "since": ticket["created_at"] - timedelta(days=window_days),
        },
    ).fetchone()


def intake(
    conn: psycopg.Connection,
    ticket: dict,
    who: Principal | None,
    now: datetime,
    cfg: Settings,
    *,
    by_hand: bool = False,
    desk_department_id: int | None = None,
) -> dict:
    """What happens to every new ticket, typed in or opened by an alarm: route it, time it, notice a
    re-complaint, tell the department, and assign it when the rule says so.

    `by_hand`: the classifier could not tell what the ticket is about; it goes to the service desk's
    department (`desk_department_id`; the routing rules' choice when there is none) and is not
    assigned automatically: the desk classifies and triages it first.
    """
    if by_hand and desk_department_id is not None:
        conn.execute("UPDATE tickets SET department_id = %s WHERE id = %s", (desk_department_id, ticket["id"]))
        ticket = {**ticket, "department_id": desk_department_id}
    keep = by_hand and desk_department_id is not None
    ticket, route = _route_and_time(conn, ticket, who, now, cfg, keep_department=keep)
    if by_hand:
        route = None
    # a ticket the desk has yet to classify is about nothing known yet: no re-complaint to match
    earlier = None if by_hand else find_earlier(conn, ticket, cfg.recomplaint_window_days)
    if earlier is not None:
        conn.execute("UPDATE tickets SET recomplaint_of = %s WHERE id = %s", (earlier["id"], ticket["id"]))
        ticket = {**ticket, "recomplaint_of": earlier["id"]}
        add_event(
            conn,
            ticket["id"],
            at=now,
            kind="recomplaint",
            actor=SYSTEM,
            body=f"The same matter as {earlier['number']}, resolved recently: counted as a re-complaint.",
            data={"earlier": earlier["number"]},
        )
    tell(
        conn,
        department_managers(conn, ticket),
        ticket,
        "new_ticket",
        "new ticket for your department",
        ticket["title"],
        now,
    )
    if route is not None and route.auto_assign and ticket["status"] == Status.NEW.value:
        try:
            with conn.transaction():
                ticket = assign(conn, ticket, None, now, assignee_id=None, note="(assigned automatically)", route=route)
        except WorkflowError as exc:
            add_event(
                conn,
                ticket["id"],
                at=now,
                kind="assignment_pending",
                actor=SYSTEM,
                body=f"Not assigned automatically: {exc.reason}",
            )
    return ticket


__all__ = [
    "DONE",
    "FINISHED",
    "PRIORITY_UP",
    "Settings",
    "WorkflowError",
    "add_record",
    "assign",
    "cancel",
    "close",
    "comment",
    "intake",
    "link",
    "load",
    "rate",
    "redirect",
    "reject",
    "resolve",
    "resume",
    "start",
    "triage",
]
