"""Opening a ticket by hand: a resident in the app, or the service desk for a caller or a visitor.

Where it is (site, building, unit, device) is worked out from what is given and checked against
what the person reaches; then the ticket goes through the same intake as one an alarm opens.
A ticket filed without a category is classified from its text first (cloud/classify): sure
enough, it takes the model's category and subcategory and is routed by the rules; unsure, it
goes to the service desk to classify by hand.
"""

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from cloud.classify import store as classifier_store
from cloud.classify.service import Classifier, Decision, ticket_text
from cloud.domain import audit, workflow
from cloud.domain.access import OFFICE, Principal, Role
from cloud.domain.tickets import NumberSource, add_event, next_number
from cloud.domain.workflow import WorkflowError


@dataclass(frozen=True)
class NewTicket:
    type: str
    #: None: classified from the title and description
    category: str | None
    subcategory: str | None
    title: str
    description: str
    channel: str
    priority: str | None
    complainant_id: int | None
    unit_id: int | None
    device_id: int | None
    site_id: str | None
    location: str | None


RESIDENT_CHANNELS = ("app", "web")


def open_ticket(
    conn: psycopg.Connection,
    who: Principal,
    new: NewTicket,
    now: datetime,
    cfg: workflow.Settings,
    *,
    numbers: NumberSource | None = None,
    classifier: Classifier | None = None,
) -> dict:
    if who.role == Role.RESIDENT:
        if new.channel not in RESIDENT_CHANNELS:
            raise WorkflowError(422, f"channel: residents file through {' or '.join(RESIDENT_CHANNELS)}")
        if new.type not in ("complaint", "repair"):
            raise WorkflowError(422, "type: residents file complaints and repair requests")
        if new.priority is not None:
            raise WorkflowError(422, "priority: set at triage by the service desk")
        if new.complainant_id not in (None, who.person_id):
            raise WorkflowError(403, "residents file tickets for themselves")
        complainant_id: int | None = who.person_id
        unit_id = new.unit_id
        if unit_id is None and len(who.unit_ids) == 1:
            unit_id = next(iter(who.unit_ids))
        if unit_id is not None and unit_id not in who.unit_ids:
            raise WorkflowError(404, f"unit {unit_id} does not exist")
    elif who.role in OFFICE:
        complainant_id = new.complainant_id
        unit_id = new.unit_id
        if new.channel in ("phone", "walk_in") and complainant_id is None:
            raise WorkflowError(422, "complainant_id: who called or came in")
    else:
        raise WorkflowError(403, f"not allowed for the role {who.role.value}")

    site_id, building_id, building_code, floor = new.site_id, None, None, None
    if unit_id is not None:
        unit = conn.execute(
            """SELECT u.id, u.floor, b.id AS building_id, b.code, b.site_id FROM units u
               JOIN buildings b ON b.id = u.building_id WHERE u.id = %s""",
            (unit_id,),
        ).fetchone()
        if unit is None or not who.reaches_site(unit["site_id"]):
            raise WorkflowError(404, f"unit {unit_id} does not exist")
        site_id, building_id, building_code, floor = unit["site_id"], unit["building_id"], unit["code"], unit["floor"]
    device = None
    if new.device_id is not None:
        device = conn.execute(
            """SELECT d.id, d.building, d.floor, d.room, g.site_id FROM devices d
               JOIN gateways g ON g.id = d.gateway_id WHERE d.id = %s""",
            (new.device_id,),
        ).fetchone()
        if device is None or not who.reaches_site(device["site_id"]) or (site_id and device["site_id"] != site_id):
            raise WorkflowError(404, f"device {new.device_id} does not exist")
        site_id = device["site_id"]
    if site_id is None:
        raise WorkflowError(422, "site_id: say where (a unit, a device, or the site)")
    site = conn.execute("SELECT id, timezone FROM sites WHERE id = %s", (site_id,)).fetchone()
    if site is None or not who.reaches_site(site_id):
        raise WorkflowError(404, f"site {site_id} does not exist")
    if complainant_id is not None and who.role != Role.RESIDENT:
        from cloud.domain import people

        if people.get(conn, who, complainant_id) is None:
            raise WorkflowError(404, f"person {complainant_id} does not exist")

    decision: Decision | None = None
    category, subcategory = new.category, new.subcategory
    if category is None:
        if subcategory is not None:
            raise WorkflowError(422, "category: give the category with the subcategory, or leave both out")
        if classifier is None:
            raise WorkflowError(422, "category: required (no classifier here to read it from the text)")
        decision = classifier.decide(conn, ticket_text(new.title, new.description), now)
        category, subcategory = decision.category, decision.subcategory
    priority = new.priority or ("high" if category == "safety" else "normal")
    if numbers is not None:
        number = numbers(timezone=site["timezone"], now=now)
    else:
        number = next_number(conn, timezone=site["timezone"], now=now)
    row = conn.execute(
        """INSERT INTO tickets (number, type, category, subcategory, channel, status, priority, title, description,
                                site_id, building_id, building, floor, unit_id, location, device_id,
                                complainant_id, created_by, created_at, updated_at)
           VALUES (%(number)s, %(type)s, %(category)s, %(subcategory)s, %(channel)s, 'new', %(priority)s, %(title)s,
                   %(description)s, %(site)s, %(building_id)s, %(building)s, %(floor)s, %(unit)s, %(location)s,
                   %(device)s, %(complainant)s, %(by)s, %(now)s, %(now)s)
           RETURNING *""",
        {
            "number": number,
            "type": new.type,
            "category": category,
            "subcategory": subcategory,
            "channel": new.channel,
            "priority": priority,
            "title": new.title,
            "description": new.description,
            "site": site_id,
            "building_id": building_id,
            "building": building_code or (device["building"] if device else None),
            "floor": floor or (device["floor"] if device else None),
            "unit": unit_id,
            "location": new.location or (device["room"] if device else None),
            "device": new.device_id,
            "complainant": complainant_id,
            "by": who.user_id,
            "now": now,
        },
    ).fetchone()
    assert row is not None
    add_event(
        conn,
        row["id"],
        at=now,
        kind="created",
        actor=who.actor,
        actor_user_id=who.user_id,
        visibility="shared",
        body=f"Registered ({new.channel}): {new.title}",
        data={"channel": new.channel, "local_time": now.astimezone(ZoneInfo(site["timezone"])).isoformat()},
    )
    audit.record(conn, actor=who, action="create", entity="tickets", entity_id=number, now=now, after=row)
    if decision is None:
        return workflow.intake(conn, row, who, now, cfg)
    assert classifier is not None
    _record_classification(conn, row, decision, now)
    if decision.applied:
        return workflow.intake(conn, row, who, now, cfg)
    desk = classifier.desk_department_id(conn)
    return workflow.intake(conn, row, who, now, cfg, by_hand=True, desk_department_id=desk)


def _record_classification(conn: psycopg.Connection, ticket: dict, decision: Decision, now: datetime) -> None:
    """The prediction, for the overrides and the figures, and an internal timeline entry that says what it did."""
    p = decision.prediction
    classifier_store.record_prediction(
        conn,
        ticket_id=ticket["id"],
        model_id=decision.model_id,
        text=decision.text,
        prediction=p,
        threshold=decision.threshold,
        applied=decision.applied,
        now=now,
    )
    guess = f"{p.category}/{p.subcategory}"
    if decision.applied:
        body = f"Classified from its text as {guess} (confidence {p.confidence:.2f}, model {decision.model_id})."
    else:
        body = (
            f"Sent to the service desk to classify by hand: the classifier's confidence {p.confidence:.2f} "
            f"is below {decision.threshold:.2f} (best guess {guess}, model {decision.model_id})."
        )
    add_event(
        conn,
        ticket["id"],
        at=now,
        kind="classified",
        actor=workflow.SYSTEM,
        body=body,
        data={
            "model_id": decision.model_id,
            "category": p.category,
            "subcategory": p.subcategory,
            "confidence": round(p.confidence, 4),
            "threshold": decision.threshold,
            "applied": decision.applied,
        },
    )
