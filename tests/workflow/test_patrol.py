"""The security patrol with a clock the test moves: rounds made ahead in the site's time zone,
scans on time, late, early, repeated, off-round and of unknown tags (by phone and through the real
ingest), missed checkpoints that open safety tickets, and passes that change nothing when run twice."""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.domain import patrol, workflow
from cloud.storage.db import connect
from contract.messages import EventMessage
from tests.cloud.stack import Gateway, running_ingest, wait_for
from tests.workflow.conftest import World

# the world's clock starts on Tuesday 24 November 2026, 09:00 in Shanghai (01:00 UTC); the test
# round starts at 10:00 local (02:00 UTC): checkpoints due at +0, +10 and +20 minutes, ± 5,
# counted late up to 10 minutes after their window, the round over at 02:35 UTC
ROUND_START = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
TAGS = {"C1": "04A1B2C3D4", "C2": "04A1B2C3D5", "C3": "QR-GATE-3"}


def at(minutes: float) -> datetime:
    return ROUND_START + timedelta(minutes=minutes)


def run_pass(world: World) -> patrol.PassCounts:
    """The patrol pass at the clock's time, as the background thread runs it."""
    with connect(world.database_url) as conn:
        return patrol.run_pass(
            conn, world.clock.now(), patrol.settings_from(world.settings), workflow.settings_from(world.settings)
        )


def set_up(world: World, **route: Any) -> dict[str, Any]:
    """Three checkpoints, a route through them, a schedule at 10:00 local every day, estate A's guard on it."""
    manager = world.as_("manager")
    checkpoints = {}
    for code, tag in TAGS.items():
        checkpoints[code] = manager.ok(
            "post",
            "/api/v1/patrol/checkpoints",
            {
                "site_id": "estate-a",
                "code": code,
                "name": f"Checkpoint {code}",
                "place": f"Building 1, post {code}",
                "tag": tag,
                "tag_kind": "qr" if tag.startswith("QR") else "nfc",
            },
        )
    stops = [
        {"checkpoint_id": checkpoints[code]["id"], "offset_minutes": offset, "tolerance_minutes": 5}
        for code, offset in (("C1", 0), ("C2", 10), ("C3", 20))
    ]
    made = manager.ok(
        "post",
        "/api/v1/patrol/routes",
        {"site_id": "estate-a", "name": "Morning round", "late_minutes": 10, "checkpoints": stops, **route},
    )
    schedule = manager.ok("post", "/api/v1/patrol/schedules", {"route_id": made["id"], "times": ["10:00"]})
    manager.ok("post", "/api/v1/patrol/assignments", {"schedule_id": schedule["id"], "user_id": world.a.users["guard"]})
    return {"checkpoints": checkpoints, "route": made, "schedule": schedule}


def the_round(world: World) -> dict[str, Any]:
    rounds = world.as_("manager").ok("get", "/api/v1/patrol/rounds?since=2026-11-24T02:00:00Z")
    today = [r for r in rounds if when(r["planned_start"]) == ROUND_START]
    assert len(today) == 1, rounds
    return world.as_("manager").ok("get", f"/api/v1/patrol/rounds/{today[0]['id']}")


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def statuses(round_: dict[str, Any]) -> dict[str, str]:
    return {c["code"]: c["status"] for c in round_["checkpoints"]}


def scan(world: World, code: str, minutes: float) -> dict[str, Any]:
    """Estate A's guard scans a checkpoint with the phone at that minute of the round."""
    move_to(world, at(minutes))
    return world.as_("guard").ok("post", "/api/v1/patrol/scans", {"tag": TAGS[code]})


def patrol_alarms(world: World) -> list[dict]:
    return world.sql(
        """SELECT a.*, t.number, t.type AS ticket_type_opened, t.category AS ticket_category
           FROM alarms a LEFT JOIN tickets t ON t.id = a.ticket_id WHERE a.rule LIKE 'patrol_%%' ORDER BY a.id"""
    )


def move_to(world: World, when: datetime) -> None:
    world.clock.advance((when - world.clock.now()).total_seconds())


def test_an_on_time_round_is_completed_without_alarms(world: World) -> None:
    set_up(world)
    counts = run_pass(world)
    assert counts.planned == 1  # today's 10:00 (tomorrow's is beyond the 24 hours ahead)
    planned = the_round(world)
    assert planned["state"] == "planned" and planned["guard_username"] == "a.guard"
    assert statuses(planned) == {"C1": "pending", "C2": "pending", "C3": "pending"}
    c1 = planned["checkpoints"][0]
    assert [when(c1[k]) for k in ("window_start", "due_at", "window_end", "late_until")] == [
        at(-5),
        at(0),
        at(5),
        at(15),
    ]

    move_to(world, at(1))
    run_pass(world)
    current = world.as_("guard").ok("get", "/api/v1/patrol/rounds/current?mine=true")
    assert [r["id"] for r in current] == [planned["id"]] and current[0]["state"] == "in_progress"
    for code, minutes in (("C1", 1), ("C2", 12)):
        move_to(world, at(minutes))
        answer = world.as_("guard").ok("post", "/api/v1/patrol/scans", {"tag": TAGS[code]})
        assert answer["outcome"] == "on_time" and answer["counted"] and answer["round_id"] == planned["id"], answer
        assert answer["checkpoint"]["code"] == code
    # C3 read at 10:24 by a phone that was offline and reached the cloud at 10:32: on time all the same
    move_to(world, at(32))
    stale = world.as_("guard").post("/api/v1/patrol/scans", json={"tag": TAGS["C3"], "at": at(21).isoformat()})
    assert stale.status_code == 422 and "10 minutes" in stale.json()["error"]  # too old to be believed
    offline = world.as_("guard").ok("post", "/api/v1/patrol/scans", {"tag": TAGS["C3"], "at": at(24).isoformat()})
    assert offline["outcome"] == "on_time" and when(offline["at"]) == at(24)
    done = the_round(world)
    assert done["state"] == "completed" and done["counts"] == {"pending": 0, "on_time": 3, "late": 0, "missed": 0}
    assert all(c["scanned_by"] == "a.guard" and c["scanned_via"] == "phone" for c in done["checkpoints"])
    move_to(world, at(40))
    run_pass(world)
    assert the_round(world)["state"] == "completed" and patrol_alarms(world) == []
    assert world.as_("guard").ok("get", "/api/v1/patrol/rounds/current") == []
    # every scan is also an event of the site
    assert len(world.sql("SELECT 1 FROM events WHERE kind = 'patrol_scan' AND site_id = 'estate-a'")) == 3


def test_a_late_checkpoint_raises_one_alarm_with_the_routes_severity(world: World) -> None:
    set_up(world, late_severity="warning")
    run_pass(world)
    move_to(world, at(1))
    assert scan(world, "C1", 1)["outcome"] == "on_time"
    move_to(world, at(19))
    late = scan(world, "C2", 19)  # window 02:05-02:15; late until 02:25
    assert late["outcome"] == "late" and late["counted"]
    assert statuses(the_round(world))["C2"] == "late"
    first, second = run_pass(world), run_pass(world)
    assert (first.alarms, second.alarms) == (1, 0)
    [alarm] = patrol_alarms(world)
    assert alarm["rule"] == "patrol_late" and alarm["severity"] == "warning" and alarm["source_type"] == "cloud"
    assert alarm["ticket_type_opened"] == "safety" and alarm["site_id"] == "estate-a"
    assert "C2" in alarm["message"] and "10:19" in alarm["message"]  # the scan, in the site's local time
    row = next(c for c in the_round(world)["checkpoints"] if c["code"] == "C2")
    assert row["alarm_id"] == alarm["id"] and row["ticket_number"] == alarm["number"]


def test_a_missed_checkpoint_opens_a_safety_ticket_and_the_round_is_incomplete(world: World) -> None:
    set_up(world)
    run_pass(world)
    move_to(world, at(2))
    scan(world, "C1", 2)
    move_to(world, at(11))
    scan(world, "C2", 11)
    move_to(world, at(34))  # C3's window ended at 02:25 and its late time at 02:35: not yet missed
    run_pass(world)
    round_ = the_round(world)
    assert statuses(round_)["C3"] == "pending" and round_["state"] == "in_progress"
    assert next(c for c in round_["checkpoints"] if c["code"] == "C3")["overdue"] is True
    move_to(world, at(35))
    counts = run_pass(world)
    assert (counts.missed, counts.alarms, counts.finished) == (1, 1, 1)
    assert run_pass(world).alarms == 0  # the pass again: nothing more
    round_ = the_round(world)
    assert round_["state"] == "incomplete" and statuses(round_) == {"C1": "on_time", "C2": "on_time", "C3": "missed"}
    [alarm] = patrol_alarms(world)
    assert alarm["rule"] == "patrol_missed" and alarm["severity"] == "major" and alarm["state"] == "active"
    ticket = world.as_("guard").ok("get", f"/api/v1/tickets/{alarm['number']}")
    assert ticket["type"] == "safety" and ticket["category"] == "safety" and ticket["source_type"] == "cloud"
    assert ticket["department_name"] == "Security" and "C3" in ticket["title"]
    # a scan after the round's end does not change the record
    move_to(world, at(36))
    after = scan(world, "C3", 36)
    assert after["outcome"] == "no_round" and not after["counted"] and "C3" in after["reason"]
    assert statuses(the_round(world))["C3"] == "missed"


def test_a_missed_checkpoint_scanned_before_the_round_ends_becomes_late_and_its_alarm_clears(world: World) -> None:
    set_up(world)
    run_pass(world)
    move_to(world, at(1))
    scan(world, "C1", 1)
    move_to(world, at(25))  # C2's late time (02:25) passed
    run_pass(world)
    [alarm] = patrol_alarms(world)
    assert alarm["rule"] == "patrol_missed" and statuses(the_round(world))["C2"] == "missed"
    move_to(world, at(27))
    assert scan(world, "C2", 27)["outcome"] == "late"  # before the round's end (02:35): late after all
    run_pass(world)
    [alarm] = patrol_alarms(world)  # still the one alarm for this checkpoint-round, now cleared
    assert alarm["state"] == "cleared" and alarm["ticket_id"] is not None
    assert statuses(the_round(world))["C2"] == "late"
    events = world.sql("SELECT kind FROM ticket_events WHERE ticket_id = %s ORDER BY id", (alarm["ticket_id"],))
    assert "alarm_cleared" in [e["kind"] for e in events]


def test_scans_that_do_not_count_are_kept_with_the_reason(world: World) -> None:
    set_up(world)
    run_pass(world)
    guard = world.as_("guard")
    move_to(world, at(-30))  # 09:30 local: no round under way
    off = guard.ok("post", "/api/v1/patrol/scans", {"tag": TAGS["C1"]})
    assert off["outcome"] == "no_round" and not off["counted"] and off["round_id"] is None
    move_to(world, at(1))
    early = guard.ok("post", "/api/v1/patrol/scans", {"tag": TAGS["C3"]})  # its window opens at 10:15 local
    assert early["outcome"] == "early" and "10:15" in early["reason"]
    assert guard.ok("post", "/api/v1/patrol/scans", {"tag": TAGS["C1"]})["outcome"] == "on_time"
    again = guard.ok("post", "/api/v1/patrol/scans", {"tag": TAGS["C1"]})
    assert again["outcome"] == "repeat" and not again["counted"]
    unknown = guard.post("/api/v1/patrol/scans", json={"tag": "04FFFFFFFF"})
    assert unknown.status_code == 422 and "04FFFFFFFF" in unknown.json()["error"]
    kept = world.as_("manager").ok("get", "/api/v1/patrol/scans")
    assert [s["outcome"] for s in kept] == ["unknown_tag", "repeat", "on_time", "early", "no_round"]
    assert world.sql("SELECT data FROM events WHERE kind = 'patrol_scan' AND data->>'tag' = '04FFFFFFFF'")
    assert world.as_("manager").ok("get", "/api/v1/patrol/scans?outcome=unknown_tag")[0]["username"] == "a.guard"
    # another estate's staff see none of it
    assert world.as_("manager", estate="b").ok("get", "/api/v1/patrol/scans") == []
    assert world.as_("guard", estate="b").ok("get", "/api/v1/patrol/rounds") == []
    other = world.as_("guard", estate="b").post("/api/v1/patrol/scans", json={"tag": TAGS["C1"]})
    assert other.status_code == 422  # estate A's tag is no checkpoint of estate B


def test_rounds_follow_the_sites_time_zone_and_are_made_once(world: World) -> None:
    made = set_up(world)
    manager = world.as_("manager")
    route_id = made["route"]["id"]
    nightly = manager.ok(
        "post", "/api/v1/patrol/schedules", {"route_id": route_id, "times": ["22:00"], "weekdays": [2]}
    )
    hourly = manager.ok(
        "post",
        "/api/v1/patrol/schedules",
        {"route_id": route_id, "every_minutes": 60, "from_time": "20:00", "until_time": "22:00", "weekdays": [3]},
    )
    assert run_pass(world).planned == 2  # 10:00 and 22:00 today; the Wednesday ones are beyond 24 hours
    assert run_pass(world).planned == 0
    starts = {r["schedule_id"]: when(r["planned_start"]) for r in manager.ok("get", "/api/v1/patrol/rounds")}
    assert starts[nightly["id"]] == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai (UTC+8)
    assert hourly["id"] not in starts
    world.clock.advance(24 * 3600)  # Wednesday 09:00 local
    run_pass(world)
    manager = world.as_("manager")  # logged in again: the old token ran out
    wednesday = sorted(
        when(r["planned_start"]) for r in manager.ok("get", "/api/v1/patrol/rounds") if r["schedule_id"] == hourly["id"]
    )
    assert wednesday == [datetime(2026, 11, 25, h, 0, tzinfo=UTC) for h in (12, 13, 14)]  # 20:00-22:00 local
    # the guard was assigned to the 10:00 schedule only
    by_schedule = {r["schedule_id"]: r["guard_username"] for r in manager.ok("get", "/api/v1/patrol/rounds")}
    assert by_schedule[made["schedule"]["id"]] == "a.guard" and by_schedule[nightly["id"]] is None


def test_set_up_refusals_say_why(world: World) -> None:
    made = set_up(world)
    manager = world.as_("manager")
    dup = manager.post(
        "/api/v1/patrol/checkpoints",
        json={"site_id": "estate-a", "code": "C9", "name": "x", "tag": TAGS["C1"], "tag_kind": "nfc"},
    )
    assert dup.status_code == 409 and "tag" in dup.json()["error"]
    used = manager.delete(f"/api/v1/patrol/checkpoints/{made['checkpoints']['C1']['id']}")
    assert used.status_code == 409 and "Morning round" in used.json()["error"]
    not_a_guard = manager.post(
        "/api/v1/patrol/assignments", json={"schedule_id": made["schedule"]["id"], "user_id": world.a.users["tech1"]}
    )
    assert not_a_guard.status_code == 422 and "guard" in not_a_guard.json()["error"]
    both = manager.post(
        "/api/v1/patrol/schedules", json={"route_id": made["route"]["id"], "times": ["08:00"], "every_minutes": 30}
    )
    assert both.status_code == 422
    other_site = world.as_("manager", estate="b").get(f"/api/v1/patrol/routes/{made['route']['id']}")
    assert other_site.status_code == 404


def test_a_readers_scan_arrives_over_mqtt_through_the_real_ingest(
    world: World, mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    set_up(world)
    run_pass(world)
    guard_person = world.a.people["guard"]
    world.sql(
        """INSERT INTO cards (person_id, number, created_at, created_by) VALUES (%s, 'C0FFEE01', %s, 'test')
           RETURNING id""",
        (guard_person, world.clock.now()),
    )
    move_to(world, at(2))
    settings = world.settings.model_copy(update={"mqtt_url": mqtt_url, "mqtt_client_id": f"p-{uuid.uuid4().hex[:6]}"})
    caplog.set_level(logging.INFO, logger="cloud.ingest.control")
    with running_ingest(settings, world.clock) as ingest:
        gw = Gateway(mqtt_url, "estate-a", "gw-patrol", timezone="Asia/Shanghai")
        try:
            gw.send(
                EventMessage(
                    ts=at(2), device="reader-c1", kind="patrol_scan", data={"tag": TAGS["C1"], "card": "c0ffee01"}
                )
            )
            gw.send(EventMessage(ts=at(2), device="reader-c1", kind="patrol_scan", data={"tag": "04DEADBEEF"}))
            wait_for(lambda: ingest.control.handled >= 2)
        finally:
            gw.close()
    c1 = the_round(world)["checkpoints"][0]
    assert c1["status"] == "on_time" and c1["scanned_via"] == "reader" and c1["scanned_by"] == "a.guard"
    scans = {s["tag"]: s for s in world.sql("SELECT * FROM patrol_scans")}
    assert scans[TAGS["C1"]]["gateway_id"] == "gw-patrol" and scans[TAGS["C1"]]["device"] == "reader-c1"
    assert scans["04DEADBEEF"]["outcome"] == "unknown_tag" and scans["04DEADBEEF"]["site_id"] == "estate-a"
    events = {e["data"]["tag"]: e for e in world.sql("SELECT * FROM events WHERE kind = 'patrol_scan'")}
    assert events[TAGS["C1"]]["data"]["outcome"] == "on_time"
    assert (
        events["04DEADBEEF"]["data"]["outcome"] == "unknown_tag" and events["04DEADBEEF"]["gateway_id"] == "gw-patrol"
    )
    assert any("04DEADBEEF" in r.getMessage() and "gw-patrol" in r.getMessage() for r in caplog.records)


def test_changing_the_plan_remakes_the_rounds_not_begun(world: World) -> None:
    made = set_up(world)
    manager = world.as_("manager")
    run_pass(world)
    before = the_round(world)
    stops = [
        {"checkpoint_id": made["checkpoints"][code]["id"], "offset_minutes": offset, "tolerance_minutes": 3}
        for code, offset in (("C2", 0), ("C1", 15))
    ]
    changed = manager.ok(
        "put", f"/api/v1/patrol/routes/{made['route']['id']}", {"name": "Morning round", "checkpoints": stops}
    )
    assert [c["code"] for c in changed["checkpoints"]] == ["C2", "C1"]
    run_pass(world)
    after = the_round(world)
    assert after["id"] != before["id"] and [c["code"] for c in after["checkpoints"]] == ["C2", "C1"]
    assert when(after["ends_at"]) == at(15 + 3 + 15)  # the last window's end and the default 15 late minutes
    assert after["guard_username"] == "a.guard"
    [assignment] = manager.ok("get", "/api/v1/patrol/assignments")
    assert manager.delete(f"/api/v1/patrol/assignments/{assignment['id']}").status_code == 204
    assert the_round(world)["guard_username"] is None
    # a round under way keeps its windows when the route changes again
    move_to(world, at(1))
    run_pass(world)
    manager = world.as_("manager")
    manager.ok(
        "put", f"/api/v1/patrol/routes/{made['route']['id']}", {"name": "Morning round", "checkpoints": stops[:1]}
    )
    run_pass(world)
    assert the_round(world)["id"] == after["id"] and len(the_round(world)["checkpoints"]) == 2
    assert manager.delete(f"/api/v1/patrol/routes/{made['route']['id']}").status_code == 204
    assert manager.ok("get", "/api/v1/patrol/routes") == [] and manager.ok("get", "/api/v1/patrol/schedules") == []
