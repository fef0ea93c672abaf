"""The live feed's hub on a real PostgreSQL: changes committed by another connection reach the subscribers
allowed to see them; a subscriber that falls behind gets `resync` with bounded memory; the hub
listens again by itself after its connection is killed, and says `resync` to everyone."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from cloud.domain import alarms
from cloud.domain.access import Principal, Role
from cloud.domain.changes import notify
from cloud.storage.db import connect
from cloud.web.live import LiveHub, Subscriber, stream, visible_to
from contract.common import Severity, TicketKind

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def person(role: Role, sites: set[str] | None, **kw: object) -> Principal:
    return Principal(
        user_id=kw.get("user_id", 7),  # type: ignore[arg-type]
        username=f"{role.value}-x",
        role=role,
        person_id=kw.get("person_id", 70),  # type: ignore[arg-type]
        name="X",
        site_ids=None if sites is None else frozenset(sites),
        department_id=kw.get("department_id"),  # type: ignore[arg-type]
        unit_ids=frozenset(kw.get("units", ())),  # type: ignore[arg-type]
    )


def events_of(sub: Subscriber) -> list[dict]:
    out = []
    while not sub.queue.empty():
        text = sub.queue.get_nowait()
        out.append(json.loads(text.split("data: ", 1)[1]))
    return out


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def seed_two_sites(database_url: str) -> None:
    with connect(database_url) as conn:
        for site in ("site-a", "site-b"):
            conn.execute("INSERT INTO sites (id, name) VALUES (%s, %s)", (site, site))
            conn.execute("INSERT INTO gateways (id, site_id) VALUES (%s, %s)", (f"gw-{site}", site))


def raise_offline(database_url: str, site: str) -> int:
    """A gateway alarm raised and committed by another connection, as the ingest's watchdog does."""
    with connect(database_url) as conn:
        outcome = alarms.raise_gateway_alarm(
            conn,
            gateway_id=f"gw-{site}",
            site_id=site,
            site_timezone="UTC",
            rule="gateway_offline",
            severity=Severity.MAJOR,
            message="silent",
            ticket_kind=TicketKind.NONE,
            raised_at=NOW,
            now=NOW,
        )
        return outcome.alarm_id


def test_a_committed_alarm_reaches_the_guards_of_its_site_only(database_url: str) -> None:
    seed_two_sites(database_url)

    async def scenario() -> None:
        hub = LiveHub(database_url)
        hub.start()
        try:
            await asyncio.wait_for(hub.listening.wait(), 10)
            guard_a = hub.subscribe(person(Role.GUARD, {"site-a"}))
            guard_b = hub.subscribe(person(Role.GUARD, {"site-b"}))
            admin = hub.subscribe(person(Role.ADMIN, None))
            resident_a = hub.subscribe(person(Role.RESIDENT, {"site-a"}))
            alarm_id = await asyncio.to_thread(raise_offline, database_url, "site-a")
            await until(lambda: admin.queue.qsize() == 1)
            (seen,) = events_of(guard_a)
            assert seen == {
                "kind": "alarm_raised",
                "site": "site-a",
                "alarm_id": alarm_id,
                "severity": "major",
                "duplicate": False,
                "ticket": None,
                "message_id": None,
            }
            assert events_of(admin) == [seen]
            assert events_of(guard_b) == [] and events_of(resident_a) == []
            # acknowledged in another transaction: announced too, with the site
            with connect(database_url) as conn:
                alarms.acknowledge(conn, alarm_id=alarm_id, actor="someone", note=None, now=NOW)
            await until(lambda: guard_a.queue.qsize() == 1)
            assert events_of(guard_a)[0]["kind"] == "alarm_acknowledged"
            # a rolled-back change is never announced
            with connect(database_url) as conn:
                notify(conn, "alarm_cleared", {"site": "site-a", "alarm_id": alarm_id})
                conn.rollback()
                notify(conn, "gateway", {"site": "site-a", "gateway": "gw-site-a", "state": "online"})
            await until(lambda: guard_a.queue.qsize() == 1)
            assert [e["kind"] for e in events_of(guard_a)] == ["gateway"]
        finally:
            await hub.stop()

    asyncio.run(scenario())


def test_a_subscriber_that_falls_behind_gets_resync_and_keeps_a_bounded_queue(database_url: str) -> None:
    async def scenario() -> None:
        hub = LiveHub(database_url, queue_size=10)
        slow = hub.subscribe(person(Role.GUARD, {"site-a"}))
        for n in range(35):
            hub.publish(json.dumps({"kind": "gateway", "site": "site-a", "n": n}))
        assert slow.queue.qsize() <= 10
        kinds = [e["kind"] for e in events_of(slow)]
        assert kinds[0] == "resync" and "gateway" in kinds
        assert slow.overflows > 0
        # once read, events flow again
        hub.publish(json.dumps({"kind": "gateway", "site": "site-a", "n": 99}))
        assert events_of(slow)[-1]["n"] == 99

    asyncio.run(scenario())


def test_the_hub_listens_again_after_its_connection_is_killed_and_tells_screens_to_reload(database_url: str) -> None:
    seed_two_sites(database_url)

    async def scenario() -> None:
        hub = LiveHub(database_url, reconnect_max_seconds=0.5)
        hub.start()
        try:
            await asyncio.wait_for(hub.listening.wait(), 10)
            guard = hub.subscribe(person(Role.GUARD, {"site-a"}))
            with connect(database_url, autocommit=True) as conn:
                killed = conn.execute("SELECT pg_terminate_backend(%s) AS done", (hub.backend_pid,)).fetchone()
            assert killed == {"done": True}
            await until(lambda: guard.queue.qsize() == 1)
            assert events_of(guard) == [{"kind": "resync", "reason": "reconnected"}]
            await asyncio.wait_for(hub.listening.wait(), 10)
            await asyncio.to_thread(raise_offline, database_url, "site-a")
            await until(lambda: guard.queue.qsize() == 1)
            assert events_of(guard)[0]["kind"] == "alarm_raised"
        finally:
            await hub.stop()

    asyncio.run(scenario())


def test_who_hears_of_a_ticket_follows_the_ticket_rules() -> None:
    ticket = {
        "kind": "ticket",
        "site": "site-a",
        "visibility": "shared",
        "type": "complaint",
        "category": "facility",
        "complainant_id": 70,
        "unit_id": 5,
        "assignee_id": 9,
        "department_id": 3,
    }
    assert visible_to(person(Role.RESIDENT, {"site-a"}, person_id=70), ticket)
    assert visible_to(person(Role.RESIDENT, {"site-a"}, person_id=71, units={5}), ticket)
    assert not visible_to(person(Role.RESIDENT, {"site-a"}, person_id=71), ticket)
    assert not visible_to(person(Role.RESIDENT, {"site-a"}, person_id=70), {**ticket, "visibility": "internal"})
    assert visible_to(person(Role.MANAGER, {"site-a"}), ticket)
    assert not visible_to(person(Role.MANAGER, {"site-b"}), ticket)
    assert visible_to(person(Role.TECHNICIAN, {"site-a"}, department_id=3), ticket)
    assert visible_to(person(Role.TECHNICIAN, {"site-a"}, user_id=9, department_id=4), ticket)
    assert not visible_to(person(Role.TECHNICIAN, {"site-a"}, department_id=4), ticket)
    assert not visible_to(person(Role.GUARD, {"site-a"}), ticket)
    assert visible_to(person(Role.GUARD, {"site-a"}), {**ticket, "category": "safety"})
    # door decisions: guards and the office, not (yet) residents; unknown kinds only for admins
    door = {"kind": "access_event", "site": "site-a"}
    assert visible_to(person(Role.GUARD, {"site-a"}), door)
    assert not visible_to(person(Role.TECHNICIAN, {"site-a"}), door)
    assert not visible_to(person(Role.RESIDENT, {"site-a"}), door)
    assert not visible_to(person(Role.MANAGER, {"site-a"}), {"kind": "something_new", "site": "site-a"})
    assert visible_to(person(Role.ADMIN, None), {"kind": "something_new", "site": "site-a"})


def test_a_quiet_stream_sends_heartbeats_and_ends_at_its_time_and_unsubscribes() -> None:
    async def scenario() -> list[str]:
        hub = LiveHub("postgresql://unused")
        sub = hub.subscribe(person(Role.GUARD, {"site-a"}))
        until = asyncio.get_running_loop().time() + 0.35
        texts = [text async for text in stream(hub, sub, heartbeat_seconds=0.1, until=until)]
        assert hub.subscribers == 0
        return texts

    texts = asyncio.run(scenario())
    assert texts[0].startswith("retry: 2000\n") and '"kind":"hello"' in texts[0]
    assert texts[1:] and set(texts[1:]) == {": heartbeat\n\n"}
