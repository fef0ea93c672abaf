"""Every role against every endpoint, and members of one estate against another estate's rows.

The expected table is written here, independently of the code's own `allow(...)` lists; a route
the table does not cover fails the test, so a new endpoint cannot arrive without its rule.
"""

import pytest

from tests.workflow.conftest import World

ALL = {"admin", "manager", "desk", "tech1", "guard", "resident"}
STAFF = ALL - {"resident"}
OFFICE = {"admin", "manager", "desk"}
MANAGEMENT = {"admin", "manager"}
ADMIN = {"admin"}
#: what answers without a login
PUBLIC = {"/healthz", "/api/v1/auth/token"}

# (method, route path, allowed roles, body or None); `{t}` is a ticket filed by estate A's resident
MATRIX: list[tuple[str, str, set[str], object]] = [
    ("GET", "/healthz", ALL, None),
    ("POST", "/api/v1/auth/token", ALL, None),
    ("GET", "/api/v1/me", ALL, None),
    ("POST", "/api/v1/me/password", ALL, {"current_password": "wrong-one", "new_password": "long-enough-1"}),
    ("GET", "/api/v1/devices", STAFF, None),
    ("GET", "/api/v1/devices/{device_id}", STAFF, None),
    ("GET", "/api/v1/devices/{device_id}/telemetry", STAFF, None),
    ("GET", "/api/v1/alarms", STAFF, None),
    ("GET", "/api/v1/alarms/{alarm_id}", STAFF, None),
    ("POST", "/api/v1/alarms/{alarm_id}/ack", STAFF, {}),
    ("GET", "/api/v1/alarms/{alarm_id}/snapshot", STAFF, None),
    ("GET", "/api/v1/live", ALL, None),
    ("GET", "/api/v1/cameras", OFFICE | {"guard"}, None),
    ("GET", "/api/v1/cameras/{gateway_id}/{camera}/frame", OFFICE | {"guard"}, None),
    ("GET", "/api/v1/sites", STAFF, None),
    ("POST", "/api/v1/sites", ADMIN, {"id": "new-site", "name": "New", "timezone": "UTC"}),
    ("PATCH", "/api/v1/sites/{site_id}", MANAGEMENT, {"name": "Sunny Gardens"}),
    ("GET", "/api/v1/gateways", STAFF, None),
    ("GET", "/api/v1/gateways/{gateway_id}", STAFF, None),
    ("POST", "/api/v1/gateways", ADMIN, {"id": "gw-matrix", "site": "estate-a"}),
    ("POST", "/api/v1/gateways/{gateway_id}/credentials", ADMIN, None),
    ("PUT", "/api/v1/gateways/{gateway_id}/config", ADMIN, {"devices": []}),
    ("GET", "/api/v1/gateways/{gateway_id}/config", ADMIN, None),
    ("POST", "/api/v1/devices/{device_id}/commands", STAFF, {"command": "open_door"}),
    ("GET", "/api/v1/devices/{device_id}/commands", STAFF, None),
    ("GET", "/api/v1/commands/{command_id}", STAFF, None),
    ("GET", "/api/v1/dead-letters", ADMIN, None),
    ("GET", "/api/v1/buildings", ALL, None),
    ("POST", "/api/v1/buildings", MANAGEMENT, {"site_id": "estate-a", "code": "9", "name": "Nine"}),
    ("PATCH", "/api/v1/buildings/{building_id}", MANAGEMENT, {"name": "Building One"}),
    ("DELETE", "/api/v1/buildings/{building_id}", MANAGEMENT, None),
    ("GET", "/api/v1/units", ALL, None),
    ("GET", "/api/v1/units/{unit_id}", ALL, None),
    ("POST", "/api/v1/units", MANAGEMENT, {"building_id": 0, "number": "999"}),
    ("PATCH", "/api/v1/units/{unit_id}", MANAGEMENT, {"floor": "1"}),
    ("DELETE", "/api/v1/units/{unit_id}", MANAGEMENT, None),
    ("GET", "/api/v1/people", OFFICE, None),
    ("GET", "/api/v1/people/{person_id}", ALL, None),
    ("POST", "/api/v1/people", OFFICE, {"full_name": "New Resident", "units": [{"unit_id": 0, "relation": "tenant"}]}),
    ("PATCH", "/api/v1/people/{person_id}", OFFICE, {"full_name": "Sun Mei"}),
    ("PUT", "/api/v1/people/{person_id}/units/{unit_id}", OFFICE, None),
    ("DELETE", "/api/v1/people/{person_id}/units/{unit_id}", OFFICE, None),
    ("DELETE", "/api/v1/people/{person_id}", MANAGEMENT, None),
    ("GET", "/api/v1/departments", STAFF, None),
    ("POST", "/api/v1/departments", MANAGEMENT, {"name": "Gardening"}),
    ("PATCH", "/api/v1/departments/{department_id}", MANAGEMENT, {"description": "x"}),
    ("GET", "/api/v1/staff", OFFICE, None),
    ("POST", "/api/v1/staff", MANAGEMENT, {"full_name": "New Tech", "sites": ["estate-a"]}),
    ("PATCH", "/api/v1/staff/{person_id}", MANAGEMENT, {"on_duty": True}),
    ("GET", "/api/v1/users", MANAGEMENT, None),
    (
        "POST",
        "/api/v1/users",
        OFFICE,
        {"person_id": 0, "username": "someone", "password": "long-enough-1", "role": "resident"},
    ),
    ("PATCH", "/api/v1/users/{user_id}", MANAGEMENT, {"active": True}),
    ("GET", "/api/v1/routing-rules", OFFICE, None),
    ("POST", "/api/v1/routing-rules", MANAGEMENT, {"site_id": "estate-a", "category": "other", "department_id": 0}),
    ("PUT", "/api/v1/routing-rules/{rule_id}", MANAGEMENT, {"site_id": "estate-a", "department_id": 0}),
    ("DELETE", "/api/v1/routing-rules/{rule_id}", MANAGEMENT, None),
    ("GET", "/api/v1/sla-policies", OFFICE, None),
    (
        "POST",
        "/api/v1/sla-policies",
        MANAGEMENT,
        {"site_id": "estate-a", "response_minutes": 1, "resolution_minutes": 1},
    ),
    (
        "PUT",
        "/api/v1/sla-policies/{policy_id}",
        MANAGEMENT,
        {"site_id": "estate-a", "response_minutes": 1, "resolution_minutes": 1},
    ),
    ("GET", "/api/v1/calendars", OFFICE, None),
    ("POST", "/api/v1/calendars", MANAGEMENT, {"name": "x", "schedule": {}}),
    ("PUT", "/api/v1/calendars/{calendar_id}", MANAGEMENT, {"name": "x", "schedule": {}}),
    ("GET", "/api/v1/notifications", ALL, None),
    ("GET", "/api/v1/notifications/unread", ALL, None),
    ("POST", "/api/v1/notifications/{notification_id}/read", ALL, None),
    ("POST", "/api/v1/notifications/read-all", ALL, None),
    ("GET", "/api/v1/followups", OFFICE | {"tech1"}, None),
    ("POST", "/api/v1/followups/{followup_id}", OFFICE | {"tech1"}, {"problem_recurred": False}),
    ("GET", "/api/v1/audit", ADMIN, None),
    ("GET", "/api/v1/tickets", ALL, None),
    ("POST", "/api/v1/tickets", OFFICE | {"resident"}, {"category": "other", "title": "x", "site_id": "estate-a"}),
    ("GET", "/api/v1/tickets/{number}", ALL, None),
    ("POST", "/api/v1/tickets/{number}/triage", OFFICE, {}),
    ("POST", "/api/v1/tickets/{number}/redirect", OFFICE, {"reason": "x", "where": "y"}),
    ("POST", "/api/v1/tickets/{number}/assign", OFFICE, {}),
    ("POST", "/api/v1/tickets/{number}/start", STAFF, None),
    ("POST", "/api/v1/tickets/{number}/hold", STAFF, {"reason": "x"}),
    ("POST", "/api/v1/tickets/{number}/resume", STAFF, None),
    ("POST", "/api/v1/tickets/{number}/records", STAFF, {"kind": "work", "body": "x"}),
    ("POST", "/api/v1/tickets/{number}/comments", ALL, {"body": "x"}),
    (
        "POST",
        "/api/v1/tickets/{number}/resolve",
        STAFF,
        {"work_done": "x", "cause_kind": "internal", "cause_code": "x"},
    ),
    ("POST", "/api/v1/tickets/{number}/close", OFFICE, {}),
    ("POST", "/api/v1/tickets/{number}/rate", OFFICE | {"resident"}, {"rating": 3}),
    ("POST", "/api/v1/tickets/{number}/reject", OFFICE | {"resident"}, {"reason": "x"}),
    ("POST", "/api/v1/tickets/{number}/cancel", OFFICE | {"resident"}, {"reason": "x"}),
    ("POST", "/api/v1/tickets/{number}/link", OFFICE, {"parent": "T-20261124-0001"}),
    ("GET", "/api/v1/tickets/{number}/link-candidates", OFFICE, None),
    ("POST", "/api/v1/tickets/{number}/attachments", ALL, None),
    ("GET", "/api/v1/attachments/{attachment_id}", ALL, None),
    # face and card entry (issue 5); `{person_id}` is estate A's resident, who reaches their own records
    ("POST", "/api/v1/people/{person_id}/face-consent", OFFICE, {"method": "app"}),
    ("GET", "/api/v1/people/{person_id}/face-consent", OFFICE | {"resident"}, None),
    ("DELETE", "/api/v1/people/{person_id}/face-consent", OFFICE | {"resident"}, None),
    ("POST", "/api/v1/people/{person_id}/faces", OFFICE, None),
    ("GET", "/api/v1/people/{person_id}/faces", OFFICE | {"resident"}, None),
    ("DELETE", "/api/v1/people/{person_id}/faces/{face_id}", OFFICE | {"resident"}, None),
    ("POST", "/api/v1/people/{person_id}/cards", OFFICE, {"number": "DEADBEEF"}),
    ("GET", "/api/v1/people/{person_id}/cards", OFFICE | {"resident"}, None),
    ("POST", "/api/v1/cards/{card_id}/lost", OFFICE | {"guard", "resident"}, None),
    ("DELETE", "/api/v1/cards/{card_id}", OFFICE, None),
    ("GET", "/api/v1/doors", STAFF, None),
    ("GET", "/api/v1/time-profiles", OFFICE, None),
    (
        "POST",
        "/api/v1/time-profiles",
        MANAGEMENT,
        {"site_id": "estate-a", "name": "Day", "weekdays": [1], "segments": [{"start": "08:00", "end": "18:00"}]},
    ),
    ("DELETE", "/api/v1/time-profiles/{profile_id}", MANAGEMENT, None),
    ("GET", "/api/v1/holidays", OFFICE, None),
    ("POST", "/api/v1/holidays", MANAGEMENT, {"site_id": "estate-a", "day": "2026-12-25"}),
    ("DELETE", "/api/v1/holidays/{site_id}/{day}", MANAGEMENT, None),
    ("GET", "/api/v1/access-rights", OFFICE, None),
    (
        "POST",
        "/api/v1/access-rights",
        OFFICE,
        {"site_id": "estate-a", "person_id": 0, "doors": [{"gateway_id": "gw-nowhere", "door": "main"}]},
    ),
    ("DELETE", "/api/v1/access-rights/{right_id}", OFFICE, None),
    (
        "POST",
        "/api/v1/passes",
        OFFICE | {"resident"},
        {"guest_name": "Guest", "valid_from": "2026-11-24T02:00:00Z", "valid_until": "2026-11-24T05:00:00Z"},
    ),
    ("GET", "/api/v1/passes", OFFICE | {"resident"}, None),
    ("DELETE", "/api/v1/passes/{pass_id}", OFFICE | {"resident"}, None),
    ("GET", "/api/v1/access-events", OFFICE | {"guard", "resident"}, None),
    ("GET", "/api/v1/access-events/{event_id}/snapshot", OFFICE | {"guard", "resident"}, None),
    ("GET", "/api/v1/gateways/{gateway_id}/whitelist", MANAGEMENT, None),
    # security patrol (issue 7): set-up by management, read by the office and guards; rounds by staff
    ("GET", "/api/v1/patrol/checkpoints", OFFICE | {"guard"}, None),
    (
        "POST",
        "/api/v1/patrol/checkpoints",
        MANAGEMENT,
        {"site_id": "estate-a", "code": "M1", "name": "Gate", "tag": "MATRIX-1", "tag_kind": "qr"},
    ),
    ("PATCH", "/api/v1/patrol/checkpoints/{checkpoint_id}", MANAGEMENT, {"name": "Gate"}),
    ("DELETE", "/api/v1/patrol/checkpoints/{checkpoint_id}", MANAGEMENT, None),
    ("GET", "/api/v1/patrol/routes", OFFICE | {"guard"}, None),
    (
        "POST",
        "/api/v1/patrol/routes",
        MANAGEMENT,
        {
            "site_id": "estate-a",
            "name": "Night",
            "checkpoints": [{"checkpoint_id": 0, "offset_minutes": 0, "tolerance_minutes": 5}],
        },
    ),
    ("GET", "/api/v1/patrol/routes/{route_id}", OFFICE | {"guard"}, None),
    (
        "PUT",
        "/api/v1/patrol/routes/{route_id}",
        MANAGEMENT,
        {"name": "Night", "checkpoints": [{"checkpoint_id": 0, "offset_minutes": 0, "tolerance_minutes": 5}]},
    ),
    ("DELETE", "/api/v1/patrol/routes/{route_id}", MANAGEMENT, None),
    ("GET", "/api/v1/patrol/schedules", OFFICE | {"guard"}, None),
    ("POST", "/api/v1/patrol/schedules", MANAGEMENT, {"route_id": 0, "times": ["22:00"]}),
    ("DELETE", "/api/v1/patrol/schedules/{schedule_id}", MANAGEMENT, None),
    ("GET", "/api/v1/patrol/assignments", OFFICE | {"guard"}, None),
    ("POST", "/api/v1/patrol/assignments", MANAGEMENT, {"schedule_id": 0, "user_id": 0}),
    ("DELETE", "/api/v1/patrol/assignments/{assignment_id}", MANAGEMENT, None),
    ("GET", "/api/v1/patrol/rounds", STAFF, None),
    ("GET", "/api/v1/patrol/rounds/current", STAFF, None),
    ("GET", "/api/v1/patrol/rounds/{round_id}", STAFF, None),
    ("POST", "/api/v1/patrol/scans", {"guard"}, {"tag": "NOT-A-TAG"}),
    ("GET", "/api/v1/patrol/scans", OFFICE | {"guard"}, None),
    # complaint analytics (issue 6)
    ("GET", "/api/v1/analytics/kpis", OFFICE, None),
    ("GET", "/api/v1/analytics/causes", OFFICE, None),
    ("GET", "/api/v1/analytics/top", OFFICE, None),
    ("GET", "/api/v1/analytics/alarm-fix", OFFICE, None),
    ("GET", "/api/v1/analytics/forecast", OFFICE, None),
    # the complaint classifier (issue 6)
    ("GET", "/api/v1/classifier", OFFICE, None),
    ("POST", "/api/v1/classifier/suggest", OFFICE | {"resident"}, {"text": "The lift is stuck"}),
    ("POST", "/api/v1/classifier/retrain", ADMIN, {}),
]


def _fill(path: str, world: World, number: str) -> str:
    values = {
        "number": number,
        "device_id": "1",
        "alarm_id": "1",
        "site_id": "estate-a",
        "building_id": str(world.a.buildings["2"]),
        "unit_id": str(world.a.units["2-201"]),
        "person_id": str(world.a.people["resident"]),
        "department_id": "1",
        "user_id": str(world.a.users["tech1"]),
        "rule_id": "1",
        "policy_id": "1",
        "calendar_id": "1",
        "notification_id": "1",
        "followup_id": "1",
        "attachment_id": "00000000-0000-4000-8000-000000000000",
        "gateway_id": "gw-nowhere",
        "command_id": "00000000-0000-4000-8000-000000000000",
        "face_id": "1",
        "card_id": "1",
        "profile_id": "1",
        "right_id": "1",
        "day": "2026-12-25",
        "pass_id": "00000000-0000-4000-8000-000000000000",
        "event_id": "00000000-0000-4000-8000-000000000000",
        "camera": "cam-1",
        "checkpoint_id": "1",
        "route_id": "1",
        "schedule_id": "1",
        "assignment_id": "1",
        "round_id": "1",
    }
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    return path + QUERIES.get(path, "")


#: query strings some routes need here: the live feed ends at once instead of streaming on
QUERIES = {"/api/v1/live": "?seconds=0"}


def test_the_table_covers_every_route(world: World) -> None:
    routes = {(method.upper(), path) for path, ops in world.app.openapi()["paths"].items() for method in ops}
    table = {(m, p) for m, p, _, _ in MATRIX}
    assert routes - table == set(), "routes without an expected rule"
    assert table - routes == set(), "rules for routes that do not exist"


@pytest.mark.parametrize("role", [*sorted(ALL), "anonymous"])
def test_role_against_every_endpoint(world: World, role: str) -> None:
    number = world.as_("resident").ok("post", "/api/v1/tickets", {"category": "facility", "title": "Door lock"})[
        "number"
    ]
    session = None if role == "anonymous" else world.as_(role)
    wrong = []
    for method, path, allowed, body in MATRIX:
        url = _fill(path, world, number)
        if session is None:
            resp = world.client.request(method, url, json=body)
            expected_ok = path in PUBLIC
            if (resp.status_code == 401) == expected_ok:
                wrong.append(f"{method} {path}: {resp.status_code} {resp.text[:120]}")
            continue
        resp = session.client.request(method, url, json=body, headers=session.headers)
        refused = resp.status_code in (401, 403)
        if role in allowed and refused:
            wrong.append(f"{method} {path}: refused ({resp.status_code} {resp.text[:120]}) but {role} is allowed")
        if role not in allowed and resp.status_code != 403:
            wrong.append(f"{method} {path}: {resp.status_code} for {role}, expected 403")
        if resp.status_code == 403:
            assert set(resp.json()) == {"error"}, resp.text  # the reason, nothing about the row
        assert resp.status_code < 500, f"{method} {path} as {role}: {resp.status_code} {resp.text}"
    assert wrong == [], "\n".join(wrong)


def test_one_estate_sees_nothing_of_another(world: World) -> None:
    ticket = world.as_("resident").ok("post", "/api/v1/tickets", {"category": "safety", "title": "Broken gate"})
    number = ticket["number"]
    for role in ("manager", "desk", "tech1", "guard", "resident"):
        other = world.as_(role, estate="b")
        resp = other.get(f"/api/v1/tickets/{number}")
        assert resp.status_code == 404 and resp.json() == {"error": f"ticket {number} does not exist"}, role
        assert all(t["site_id"] == "estate-b" for t in other.ok("get", "/api/v1/tickets")), role
        if role != "resident":
            assert other.ok("get", "/api/v1/alarms") == []
    b_manager = world.as_("manager", estate="b")
    assert {s["id"] for s in b_manager.ok("get", "/api/v1/sites")} == {"estate-b"}
    assert b_manager.get(f"/api/v1/people/{world.a.people['resident']}").status_code == 404
    assert all(p["id"] != world.a.people["resident"] for p in b_manager.ok("get", "/api/v1/people"))
    assert b_manager.post(f"/api/v1/tickets/{number}/triage", json={}).status_code == 404
    assert b_manager.patch(f"/api/v1/buildings/{world.a.buildings['1']}", json={"name": "x"}).status_code == 404
    # within one estate: a resident does not see a neighbour's ticket; a technician not another department's
    assert world.as_("resident2").get(f"/api/v1/tickets/{number}").status_code == 404
    assert world.as_("env1").get(f"/api/v1/tickets/{number}").status_code == 404
    assert world.as_("guard").ok("get", f"/api/v1/tickets/{number}")["category"] == "safety"
    facility = world.as_("resident").ok("post", "/api/v1/tickets", {"category": "facility", "title": "Dripping tap"})
    assert world.as_("guard").get(f"/api/v1/tickets/{facility['number']}").status_code == 404


def test_unknown_expired_or_forged_tokens_are_401(world: World) -> None:
    client = world.client
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    session = world.as_("desk")
    token = session.headers["Authorization"].split()[1]
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    world.clock.advance(world.settings.token_minutes * 60 + 1)
    resp = client.get("/api/v1/me", headers=session.headers)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/v1/auth/token", data={"username": "a.desk", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "wrong username or password"}
    unknown = client.post("/api/v1/auth/token", data={"username": "nobody", "password": "nope"})
    assert unknown.json() == wrong.json()  # the same answer: no hint whether the user exists


def test_a_deactivated_user_or_a_changed_password_ends_old_tokens(world: World) -> None:
    tech = world.as_("tech1")
    assert tech.get("/api/v1/me").status_code == 200
    world.as_("manager").ok("patch", f"/api/v1/users/{world.a.users['tech1']}", {"active": False})
    assert tech.get("/api/v1/me").status_code == 401
    bad = world.client.post("/api/v1/auth/token", data={"username": "a.tech1", "password": "community-demo"})
    assert bad.status_code == 401
    desk = world.as_("desk")
    desk.ok("post", "/api/v1/me/password", {"current_password": "community-demo", "new_password": "a-new-pass-42"})
    assert desk.get("/api/v1/me").status_code == 401
    assert world.login("a.desk", "a-new-pass-42") is not None
