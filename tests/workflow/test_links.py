"""An alarm ticket goes through the same intake as a complaint; a resident's complaint about the same
device is linked to it and resolved with it; the same matter again soon after is a re-complaint."""

from datetime import timedelta

from cloud.domain import alarms, registry, workflow
from cloud.storage.db import connect
from contract.messages import AlarmMessage
from tests.workflow.conftest import World

T = "/api/v1/tickets"


def raise_lift_alarm(world: World) -> str:
    with connect(world.database_url) as conn:
        conn.execute("INSERT INTO gateways (id, site_id, name) VALUES ('gw-a', 'estate-a', 'A') ON CONFLICT DO NOTHING")
        device_id = conn.execute(
            """INSERT INTO devices (gateway_id, name, profile, building, floor, room)
               VALUES ('gw-a', 'lift-1a', 'elevator', 'Building 1', '1', 'Lift A') RETURNING id"""
        ).fetchone()["id"]
        outcome = alarms.raise_device_alarm(
            conn,
            device=registry.device_ref(conn, device_id),
            msg=AlarmMessage(
                ts=world.clock.now(),
                device="lift-1a",
                rule="lift_fault",
                action="raise",
                severity="critical",
                ticket="repair",
                value=7,
                message="Lift fault 7",
            ),
            now=world.clock.now(),
            cfg=workflow.settings_from(world.settings),
        )
        conn.commit()
    assert outcome.ticket is not None
    return outcome.ticket.number


def test_an_alarm_ticket_is_routed_timed_and_assigned(world: World) -> None:
    number = raise_lift_alarm(world)
    t = world.as_("desk").ok("get", f"{T}/{number}")
    assert (t["channel"], t["type"], t["priority"]) == ("device", "repair", "urgent")
    assert t["department_name"] == "Engineering" and t["assignee_name"] in ("Zhang Wei", "Liu Yang")
    assert t["building"] == "1" and t["building_id"] == world.a.buildings["1"]
    # urgent runs around the clock: 30 minutes to respond
    assert t["response_due_at"] == "2026-11-24T01:30:00Z"


def test_a_complaint_about_the_stuck_lift_is_linked_and_resolved_with_the_alarm_ticket(world: World) -> None:
    alarm_ticket = raise_lift_alarm(world)
    resident, desk = world.as_("resident"), world.as_("desk")
    complaint = resident.ok(
        "post", T, {"category": "facility", "subcategory": "elevator", "title": "The lift in building 1 is stuck"}
    )
    candidates = desk.ok("get", f"{T}/{complaint['number']}/link-candidates")
    assert candidates[0]["number"] == alarm_ticket and candidates[0]["reason"] == "same building"
    linked = desk.ok("post", f"{T}/{complaint['number']}/link", {"parent": alarm_ticket})
    assert linked["linked_to"] == alarm_ticket
    assert desk.ok("get", f"{T}/{alarm_ticket}")["linked"] == [complaint["number"]]
    # linking to a linked ticket, or to itself, is refused with the reason
    assert "itself" in desk.post(f"{T}/{alarm_ticket}/link", json={"parent": alarm_ticket}).json()["error"]

    assignee = world.sql(
        "SELECT u.username FROM tickets t JOIN users u ON u.id = t.assignee_id WHERE t.number = %s", (alarm_ticket,)
    )
    tech = world.login(assignee[0]["username"])
    tech.ok("post", f"{T}/{alarm_ticket}/start")
    t = tech.ok(
        "post",
        f"{T}/{alarm_ticket}/resolve",
        {"work_done": "Door sensor replaced.", "cause_kind": "internal", "cause_code": "equipment.sensor"},
    )
    # the alarm ticket has no complainant: it closes at once; the linked complaint is resolved with it
    assert t["status"] == "closed"
    seen = resident.ok("get", f"{T}/{complaint['number']}")
    assert seen["status"] == "resolved" and seen["cause_code"] == "equipment.sensor"
    assert f"together with {alarm_ticket}" in seen["timeline"][-1]["body"]
    resident.ok("post", f"{T}/{complaint['number']}/rate", {"rating": 4})


def test_the_same_matter_again_within_the_window_is_a_re_complaint(world: World) -> None:
    resident, tech = world.as_("resident"), world.as_("tech1")
    first = resident.ok("post", T, {"category": "facility", "subcategory": "plumbing", "title": "Leak under the sink"})
    tech.ok("post", f"{T}/{first['number']}/start")
    tech.ok(
        "post",
        f"{T}/{first['number']}/resolve",
        {"work_done": "Sealed.", "result": "Fixed.", "cause_kind": "internal", "cause_code": "workmanship"},
    )
    resident.ok("post", f"{T}/{first['number']}/rate", {"rating": 3})
    world.clock.advance(timedelta(days=10).total_seconds())
    resident = world.as_("resident")
    again = resident.ok("post", T, {"category": "facility", "subcategory": "plumbing", "title": "Leaking again"})
    assert again["recomplaint_of"] == first["number"]
    assert any(e["kind"] == "recomplaint" for e in world.as_("desk").ok("get", f"{T}/{again['number']}")["timeline"])
    other = resident.ok("post", T, {"category": "facility", "subcategory": "electrical", "title": "Socket sparks"})
    assert other["recomplaint_of"] is None  # another matter
    world.clock.advance(timedelta(days=25).total_seconds())
    late = world.as_("resident").ok(
        "post", T, {"category": "facility", "subcategory": "plumbing", "title": "Leak, months later"}
    )
    assert late["recomplaint_of"] == again["number"] or late["recomplaint_of"] is None
    assert late["recomplaint_of"] != first["number"]  # outside the 30-day window of the first


def test_a_follow_up_that_finds_the_problem_back_opens_a_linked_ticket(world: World) -> None:
    resident, tech = world.as_("resident"), world.as_("tech1")
    t = resident.ok("post", T, {"category": "facility", "subcategory": "plumbing", "title": "Blocked drain"})
    tech.ok("post", f"{T}/{t['number']}/start")
    tech.ok(
        "post",
        f"{T}/{t['number']}/resolve",
        {"work_done": "Cleared.", "result": "Cleared.", "cause_kind": "external", "cause_code": "resident.misuse"},
    )
    resident.ok("post", f"{T}/{t['number']}/rate", {"rating": 5})
    world.clock.advance(timedelta(days=14).total_seconds())
    desk = world.as_("desk")
    due = desk.ok("get", "/api/v1/followups?due_before=2026-12-09T00:00:00Z")
    assert [f["ticket_number"] for f in due] == [t["number"]]
    visit = desk.ok(
        "post", f"/api/v1/followups/{due[0]['id']}", {"problem_recurred": True, "note": "Water pools again."}
    )
    new = desk.ok("get", f"{T}/{visit['new_ticket_number']}")
    assert new["recomplaint_of"] == t["number"] and new["channel"] == "walk_in" and new["complainant_name"] == "Sun Mei"
    again = desk.post(f"/api/v1/followups/{due[0]['id']}", json={"problem_recurred": False})
    assert again.status_code == 409
