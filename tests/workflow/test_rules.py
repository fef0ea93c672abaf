"""What managers configure: routing with round robin or least load, their own SLA policy and calendar,
and the device's telemetry kept as evidence on an investigation."""

from datetime import timedelta

from cloud.storage import telemetry
from cloud.storage.db import connect
from tests.workflow.conftest import World
from tests.workflow.test_links import raise_lift_alarm

T = "/api/v1/tickets"


def add_technician(world: World, name: str, skills: list[str]) -> int:
    manager = world.as_("manager")
    dept = next(d["id"] for d in manager.ok("get", "/api/v1/departments") if d["name"] == "Engineering")
    staff = manager.ok(
        "post",
        "/api/v1/staff",
        {
            "full_name": name,
            "department_id": dept,
            "skills": skills,
            "sites": ["estate-a"],
            "login": {"username": name.lower().replace(" ", "."), "password": "long-enough-1", "role": "technician"},
        },
    )
    return staff["user_id"]


def test_round_robin_and_least_load(world: World) -> None:
    manager, resident = world.as_("manager"), world.as_("resident")
    dept = next(d["id"] for d in manager.ok("get", "/api/v1/departments") if d["name"] == "Engineering")
    first, second = add_technician(world, "Gao Tian", ["roofing"]), add_technician(world, "He Ping", ["roofing"])
    rule = manager.ok(
        "post",
        "/api/v1/routing-rules",
        {
            "site_id": "estate-a",
            "category": "facility",
            "subcategory": "roof",
            "department_id": dept,
            "skill": "roofing",
            "auto_assign": True,
            "strategy": "round_robin",
            "position": 1,
        },
    )
    picked = []
    for i in range(4):
        world.clock.advance(60)
        t = resident.ok("post", T, {"category": "facility", "subcategory": "roof", "title": f"Roof leak {i}"})
        picked.append(t["assignee_id"])
    assert picked == [first, second, first, second]  # in turn, whoever was assigned longest ago

    # least load: the one with fewer open tickets, whatever the turn
    manager.ok(
        "put",
        f"/api/v1/routing-rules/{rule['id']}",
        {
            "site_id": "estate-a",
            "category": "facility",
            "subcategory": "roof",
            "department_id": dept,
            "skill": "roofing",
            "auto_assign": True,
            "strategy": "least_load",
            "position": 1,
        },
    )
    for number in [t["number"] for t in world.as_("desk").ok("get", f"{T}?assignee={first}")]:
        world.as_("desk").ok("post", f"{T}/{number}/cancel", {"reason": "duplicate"})
    t = resident.ok("post", T, {"category": "facility", "subcategory": "roof", "title": "Roof again"})
    assert t["assignee_id"] == first
    # nobody with the skill on duty: the ticket waits, and says why
    for user in (first, second):
        person = world.sql("SELECT person_id FROM users WHERE id = %s", (user,))[0]["person_id"]
        manager.ok("patch", f"/api/v1/staff/{person}", {"on_duty": False})
    t = resident.ok("post", T, {"category": "facility", "subcategory": "roof", "title": "Roof, night shift"})
    assert t["assignee_id"] is None and t["status"] == "new"
    assert "nobody on duty" in t["timeline"][-1]["body"] or any(
        "nobody on duty" in e["body"] for e in world.as_("desk").ok("get", f"{T}/{t['number']}")["timeline"]
    )


def test_a_managers_own_policy_and_calendar_set_the_deadlines(world: World) -> None:
    manager, resident = world.as_("manager"), world.as_("resident")
    calendar = manager.ok(
        "post",
        "/api/v1/calendars",
        {
            "name": "Estate A desk",
            "schedule": {"mon": [["09:00", "12:00"]], "tue": [["09:00", "12:00"]], "wed": [["09:00", "12:00"]]},
            "holidays": [{"day": "2026-11-25", "name": "Estate A anniversary"}],
        },
    )
    manager.ok(
        "post",
        "/api/v1/sla-policies",
        {
            "site_id": "estate-a",
            "category": "environment",
            "response_minutes": 120,
            "resolution_minutes": 240,
            "calendar_id": calendar["id"],
        },
    )
    t = resident.ok("post", T, {"category": "environment", "title": "Bins overflowing"})  # Tuesday 09:00 local
    assert t["response_due_at"] == "2026-11-24T03:00:00Z"  # Tuesday 11:00
    # 4 working hours: 3 on Tuesday, Wednesday is a holiday, Monday 09:00 + 1 -> 10:00 local on the 30th
    assert t["resolution_due_at"] == "2026-11-30T02:00:00Z"
    bad = manager.post("/api/v1/calendars", json={"name": "x", "schedule": {"mon": [["12:00", "09:00"]]}})
    assert bad.status_code == 422 and "mon" in bad.json()["error"]
    clash = manager.post(
        "/api/v1/sla-policies",
        json={"site_id": "estate-a", "category": "environment", "response_minutes": 1, "resolution_minutes": 2},
    )
    assert clash.status_code == 409
    other_site = manager.post(
        "/api/v1/sla-policies", json={"site_id": "estate-b", "response_minutes": 1, "resolution_minutes": 2}
    )
    assert other_site.status_code == 404


def test_an_investigation_keeps_the_devices_telemetry_around_the_alarm(world: World) -> None:
    number = raise_lift_alarm(world)
    alarm_at = world.clock.now()
    telemetry.Partitions().ensure(world.database_url, [alarm_at - timedelta(minutes=10), alarm_at])
    with connect(world.database_url) as conn:
        device = conn.execute("SELECT id FROM devices WHERE name = 'lift-1a'").fetchone()["id"]
        for minute in range(-10, 10):
            conn.execute(
                "INSERT INTO telemetry (time, device_id, metric, value) VALUES (%s, %s, 'floor', %s)",
                (alarm_at + timedelta(minutes=minute), device, float(minute % 5)),
            )
        conn.commit()
    tech = world.as_("desk")
    t = tech.ok(
        "post",
        f"{T}/{number}/records",
        {"kind": "investigation", "body": "Stopped between floors 3 and 4.", "telemetry_minutes": 5},
    )
    record = next(e for e in t["timeline"] if e["kind"] == "investigation")
    series = record["data"]["telemetry"]["series"]["floor"]
    assert len(series) == 10 and series[0]["bucket"] == (alarm_at - timedelta(minutes=5)).isoformat()
    resident_ticket = world.as_("resident").ok("post", T, {"category": "other", "title": "No device here"})
    bad = tech.post(
        f"{T}/{resident_ticket['number']}/records", json={"kind": "investigation", "body": "x", "telemetry_minutes": 5}
    )
    assert bad.status_code == 422 and "no device" in bad.json()["error"]
