"""A complaint's whole life through the API, and the steps the state or the role does not allow."""

from datetime import timedelta

from tests.workflow.conftest import World

T = "/api/v1/tickets"


def file(world: World, who: str = "resident", **fields) -> dict:
    body = {"category": "facility", "subcategory": "plumbing", "title": "Leaking pipe", "description": "Kitchen"}
    return world.as_(who).ok("post", T, {**body, **fields})


def kinds(ticket: dict) -> list[str]:
    return [e["kind"] for e in ticket["timeline"]]


def test_a_repair_request_from_filing_to_follow_up(world: World) -> None:
    resident, tech, desk = world.as_("resident"), world.as_("tech1"), world.as_("desk")
    t = file(world)
    number = t["number"]
    # registered, routed by the rules to Engineering and assigned by skill (plumbing) and load
    assert (t["channel"], t["department_name"], t["assignee_name"], t["status"]) == (
        "app",
        "Engineering",
        "Zhang Wei",
        "assigned",
    )
    assert t["unit_number"] == "101" and t["complainant_name"] == "Sun Mei"
    assert t["first_response_at"] is None  # an automatic assignment is not a person answering

    world.clock.advance(600)
    t = tech.ok("post", f"{T}/{number}/start")
    assert t["status"] == "in_progress" and t["first_response_at"] == "2026-11-24T01:10:00Z"
    tech.ok("post", f"{T}/{number}/records", {"kind": "investigation", "body": "Corroded joint under the sink."})
    tech.ok("post", f"{T}/{number}/records", {"kind": "plan", "body": "Replace the joint; parts from stock."})
    t = tech.ok("post", f"{T}/{number}/hold", {"reason": "waiting for the part"})
    assert t["status"] == "on_hold" and t["on_hold_since"]
    world.clock.advance(3600)
    t = tech.ok("post", f"{T}/{number}/resume")
    assert t["status"] == "in_progress"
    tech.ok("post", f"{T}/{number}/records", {"kind": "work", "body": "Joint replaced, tested for 10 minutes."})
    t = tech.ok(
        "post",
        f"{T}/{number}/resolve",
        {
            "work_done": "Joint replaced.",
            "result": "The leak is fixed.",
            "cause_kind": "internal",
            "cause_code": "equipment.wear",
        },
    )
    assert t["status"] == "resolved" and t["cause_code"] == "equipment.wear" and t["resolved_at"]

    # the resident sees the shared steps only, and is asked to rate
    seen = resident.ok("get", f"{T}/{number}")
    assert "investigation" not in kinds(seen) and "plan" not in kinds(seen) and "resolved" in kinds(seen)
    assert all(e["visibility"] == "shared" for e in seen["timeline"])
    inbox = resident.ok("get", "/api/v1/notifications")
    assert any("rate the work" in n["body"] for n in inbox)

    t = resident.ok("post", f"{T}/{number}/rate", {"rating": 5, "comment": "Quick and tidy."})
    assert (t["status"], t["rating"], t["closed_at"] is not None) == ("closed", 5, True)
    staff_view = desk.ok("get", f"{T}/{number}")
    assert kinds(staff_view) == [
        "created",
        "assigned",
        "started",
        "investigation",
        "plan",
        "on_hold",
        "resumed",
        "work",
        "resolved",
        "rated",
        "closed",
    ]
    assert all(e["actor"] for e in staff_view["timeline"])

    # a follow-up visit is due 14 days after closing
    due = desk.ok("get", "/api/v1/followups")
    assert [f["ticket_number"] for f in due] == [number]
    visit = desk.ok("post", f"/api/v1/followups/{due[0]['id']}", {"problem_recurred": False, "note": "Dry."})
    assert visit["done_at"] and visit["new_ticket_number"] is None


def test_the_resident_rejects_the_fix_and_the_reopen_is_counted(world: World) -> None:
    tech, resident = world.as_("tech1"), world.as_("resident")
    number = file(world)["number"]
    tech.ok("post", f"{T}/{number}/start")
    resolve = {"work_done": "Tightened.", "result": "Fixed.", "cause_kind": "internal", "cause_code": "workmanship"}
    tech.ok("post", f"{T}/{number}/resolve", resolve)
    t = resident.ok("post", f"{T}/{number}/reject", {"reason": "It still drips at night."})
    assert (t["status"], t["reopen_count"], t["resolved_at"]) == ("reopened", 1, None)
    tech.ok("post", f"{T}/{number}/start")
    tech.ok("post", f"{T}/{number}/resolve", resolve)
    t = resident.ok("post", f"{T}/{number}/reject", {"reason": "Still."})
    assert t["reopen_count"] == 2


def test_redirect_tells_the_resident_why_and_where(world: World) -> None:
    desk, resident = world.as_("desk"), world.as_("resident")
    number = file(world, category="other", subcategory=None, title="Noise from the building site next door")["number"]
    t = desk.ok(
        "post",
        f"{T}/{number}/redirect",
        {"reason": "construction outside the estate", "where": "City urban management, 12345"},
    )
    assert t["status"] == "redirected" and t["first_response_at"]
    seen = resident.ok("get", f"{T}/{number}")
    assert seen["redirect_to"] == "City urban management, 12345"
    assert "City urban management" in seen["timeline"][-1]["body"]


def test_service_desk_registers_a_phone_call_and_triages(world: World) -> None:
    desk = world.as_("desk")
    complainant = world.a.people["resident2"]
    t = desk.ok(
        "post",
        T,
        {
            "category": "service",
            "title": "Rude reply at the gate",
            "channel": "phone",
            "complainant_id": complainant,
            "unit_id": world.a.units["1-102"],
        },
    )
    assert t["status"] == "new" and t["department_name"] == "Customer service" and t["assignee_id"] is None
    t = desk.ok("post", f"{T}/{t['number']}/triage", {"priority": "high", "note": "Will talk to the gate team."})
    assert (t["status"], t["priority"]) == ("triaged", "high") and t["first_response_at"]
    t = desk.ok("post", f"{T}/{t['number']}/assign", {"assignee_id": world.a.users["manager"]})
    assert t["assignee_name"] == "Wang Fang"
    # the resident filed nothing: a phone complaint needs a complainant
    bad = desk.post(T, json={"category": "service", "title": "x", "channel": "phone"})
    assert bad.status_code == 422 and "complainant_id" in bad.json()["error"]


def test_invalid_transitions_say_why(world: World) -> None:
    tech, desk, resident, env = world.as_("tech1"), world.as_("desk"), world.as_("resident"), world.as_("env1")
    number = file(world)["number"]
    cases = [
        (
            tech,
            "resolve",
            {"work_done": "x", "result": "y", "cause_kind": "internal", "cause_code": "x"},
            409,
            "cannot resolve a ticket that is assigned",
        ),
        (desk, "triage", {}, 409, "cannot triage a ticket that is assigned"),
        (resident, "rate", {"rating": 4}, 409, "cannot rate a ticket that is assigned"),
        (resident, "start", None, 403, "not allowed for the role resident"),
        (env, "start", None, 404, "does not exist"),  # another department's ticket: out of reach
        (tech, "triage", {}, 403, "not allowed for the role technician"),
        (resident, "cancel", {"reason": "never mind"}, 409, "cannot cancel a ticket that is assigned"),
    ]
    for who, step, body, status, reason in cases:
        resp = who.post(f"{T}/{number}/{step}", json=body)
        assert resp.status_code == status, (step, resp.text)
        assert reason in resp.json()["error"], (step, resp.json())
    tech.ok("post", f"{T}/{number}/start")
    resp = world.as_("tech2").post(f"{T}/{number}/hold", json={"reason": "x"})
    assert resp.status_code == 403 and "only the assignee" in resp.json()["error"]
    # the resident may cancel while it is new or triaged
    fresh = desk.ok(
        "post",
        T,
        {
            "category": "other",
            "title": "Question about parking",
            "channel": "phone",
            "complainant_id": world.a.people["resident"],
            "unit_id": world.a.units["1-101"],
        },
    )
    t = resident.ok("post", f"{T}/{fresh['number']}/cancel", {"reason": "sorted it out myself"})
    assert t["status"] == "cancelled"


def test_comments_internal_and_shared(world: World) -> None:
    tech, resident = world.as_("tech1"), world.as_("resident")
    number = file(world)["number"]
    tech.ok("post", f"{T}/{number}/comments", {"body": "Check the riser valve too.", "visibility": "internal"})
    t = tech.ok("post", f"{T}/{number}/comments", {"body": "I will come at 3 pm.", "visibility": "shared"})
    assert t["first_response_at"]  # a shared answer is a response
    resident.ok("post", f"{T}/{number}/comments", {"body": "OK, I will be home.", "visibility": "internal"})
    seen = [e["body"] for e in resident.ok("get", f"{T}/{number}")["timeline"]]
    assert "I will come at 3 pm." in seen and "OK, I will be home." in seen
    assert "Check the riser valve too." not in seen


def test_a_ticket_without_feedback_closes_by_itself(world: World) -> None:
    tech = world.as_("tech1")
    number = file(world)["number"]
    tech.ok("post", f"{T}/{number}/start")
    tech.ok(
        "post",
        f"{T}/{number}/resolve",
        {"work_done": "Fixed.", "result": "Fixed.", "cause_kind": "external", "cause_code": "resident.misuse"},
    )
    world.clock.advance(timedelta(days=6).total_seconds())
    assert world.tick().closed == 0
    world.clock.advance(timedelta(days=1, seconds=1).total_seconds())
    assert world.tick().closed == 1
    t = world.as_("tech1").ok("get", f"{T}/{number}")  # a week on: a new login
    assert t["status"] == "closed" and "no answer from the resident" in t["timeline"][-1]["body"]
    assert world.tick().closed == 0
