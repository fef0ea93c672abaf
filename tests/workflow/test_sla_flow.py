"""SLA through the API and the scheduler: deadlines on office hours and holidays, the clock paused on
hold, warnings and breaches, escalation that happens once even with two schedulers at work."""

import threading
from datetime import UTC, datetime

from cloud.domain import scheduler, workflow
from cloud.storage.db import connect
from tests.workflow.conftest import World

T = "/api/v1/tickets"


def test_deadlines_skip_closed_hours_and_holidays_and_a_breach_escalates_once(world: World) -> None:
    # Thursday 24 December 2026, 17:00 in Shanghai; Friday the 25th is a holiday in the seeded calendar
    world.clock.set(datetime(2026, 12, 24, 9, 0, tzinfo=UTC))
    resident = world.as_("resident")
    t = resident.ok("post", T, {"category": "facility", "subcategory": "electrical", "title": "Corridor lights out"})
    # 2 working hours: 30 min on Thursday, then Saturday 08:30 + 1:30 = 10:00 local
    assert t["response_due_at"] == "2026-12-26T02:00:00Z"
    # 27 working hours: 0:30 Thu + 9:00 Sat + 9:00 Mon + 8:30 Tue -> Tuesday 17:00 local
    assert t["resolution_due_at"] == "2026-12-29T09:00:00Z"
    assert t["priority"] == "normal"

    world.clock.set(datetime(2026, 12, 26, 1, 59, tzinfo=UTC))
    counts = world.tick()
    assert counts.breached == 0 and counts.warned == 1  # 80 % of the response time is gone: the assignee is told
    username = world.sql("SELECT username FROM users WHERE id = %s", (t["assignee_id"],))[0]["username"]
    assignee = world.login(username)
    assert any(n["kind"] == "due_soon" for n in assignee.ok("get", "/api/v1/notifications"))

    world.clock.set(datetime(2026, 12, 26, 2, 0, 1, tzinfo=UTC))
    # two schedulers at the same moment: the breach is recorded and escalated once
    barrier = threading.Barrier(2)
    results: list[scheduler.PassCounts] = []

    def run() -> None:
        with connect(world.database_url) as conn:
            barrier.wait()
            results.append(scheduler.run_pass(conn, world.clock.now(), workflow.settings_from(world.settings)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.breached for r in results) == [0, 1]
    t = world.as_("desk").ok("get", f"{T}/{t['number']}")
    assert t["response_breached_at"] == "2026-12-26T02:00:01Z"
    assert (t["priority"], t["escalation_level"]) == ("high", 1)
    assert [e["kind"] for e in t["timeline"]].count("response_breached") == 1
    manager = world.as_("manager").ok("get", "/api/v1/notifications")
    assert [n["kind"] for n in manager].count("sla_breached") == 1
    assert world.tick().breached == 0
    assert world.as_("desk").ok("get", f"{T}?breached=true")[0]["number"] == t["number"]


def test_time_on_hold_does_not_count(world: World) -> None:
    tech = world.as_("tech1")
    t = world.as_("resident").ok("post", T, {"category": "facility", "subcategory": "plumbing", "title": "Tap drips"})
    assert t["resolution_due_at"] == "2026-11-27T01:00:00Z"  # Friday 09:00 local
    number = t["number"]
    world.clock.advance(600)
    tech.ok("post", f"{T}/{number}/start")
    world.clock.set(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))  # Tuesday 10:00 local
    tech.ok("post", f"{T}/{number}/hold", {"reason": "the part is on order"})
    world.clock.set(datetime(2026, 11, 27, 2, 0, tzinfo=UTC))  # Friday: past the old deadline, but on hold
    assert world.tick().breached == 0
    world.clock.set(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))  # resumed Wednesday 10:00 local
    t = world.as_("tech1").ok("post", f"{T}/{number}/resume")  # a new login: a day has passed
    # 9 working hours on hold (Tue 10:00-17:30, Wed 08:30-10:00) push Friday 09:00 to Saturday 09:00
    assert t["resolution_due_at"] == "2026-11-28T01:00:00Z"
    hold_entry = next(e for e in t["timeline"] if e["kind"] == "resumed")
    assert hold_entry["data"]["paused_working_seconds"] == 9 * 3600


def test_safety_runs_around_the_clock(world: World) -> None:
    world.clock.set(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai
    t = world.as_("resident").ok("post", T, {"category": "safety", "title": "Smell of gas in the stairwell"})
    assert (t["priority"], t["response_due_at"]) == ("high", "2026-11-24T15:15:00Z")
    assert t["department_name"] == "Security" and t["assignee_name"] == "Zhao Lei"  # the guard, assigned at once
    assert t["type"] == "complaint"
