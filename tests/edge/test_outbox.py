"""The durable outbox: on disk before it counts, bounded with the drops counted, a bounded window of
messages in paho during an outage, the backlog paced while live data and alarms go at once."""

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from community.broker import MosquittoProcess, free_port
from contract.clock import ManualClock, SystemClock
from contract.common import SiteInfo
from contract.messages import AlarmMessage, BirthMessage, GatewayInfo, Reading, TelemetryBatch, encode
from contract.topics import Kind
from edge.outbox import DurableOutbox, counters_of
from edge.settings import parse_mqtt_url
from edge.uplink import Uplink
from tests.edge.conftest import MqttRecorder

SITE, GATEWAY = "outbox-site", "outbox-gw"


def batch(device: str, first: int, points: int = 10) -> TelemetryBatch:
    values = {f"m{i}": float(first + i) for i in range(points)}
    return TelemetryBatch(ts=datetime.now(UTC), readings=[Reading(device=device, ts=datetime.now(UTC), values=values)])


def alarm(n: int) -> AlarmMessage:
    return AlarmMessage(ts=datetime.now(UTC), device="pump-1", rule=f"rule_{n}", action="raise", severity="major")


def uplink_for(url: str, gateway: str = GATEWAY, **kw: Any) -> Uplink:
    def birth() -> BirthMessage:
        return BirthMessage(
            ts=datetime.now(UTC),
            site=SiteInfo(id=SITE, name="s"),
            gateway=GatewayInfo(id=gateway, name="g"),
            devices=[],
        )

    return Uplink(
        parse_mqtt_url(url), SITE, gateway, birth=birth, on_command=lambda _p: None, clock=SystemClock(), **kw
    )


def wired(outbox: DurableOutbox, uplink: Uplink) -> DurableOutbox:
    uplink.on_ack = outbox.acked
    uplink.on_connected = outbox.connected
    uplink.on_disconnected = outbox.disconnected
    return outbox


def until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """A deadline for something to happen, not a measure of how fast."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:g} s")
        time.sleep(0.02)
    return result


def rows(path: Path, query: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


# -- on disk, bounded ----------------------------------------------------------------------------


def test_a_message_is_on_disk_once_taken_and_keeps_its_id_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock())  # never started: no broker
    message = batch("pump-1", 0)
    outbox.put(Kind.TELEMETRY, message)
    outbox.put(Kind.ALARM, alarm(1))
    # another connection sees it committed, byte for byte as made
    stored = rows(path, "SELECT kind, payload, points FROM messages ORDER BY seq")
    assert [(k, p) for k, _, p in stored] == [("telemetry", 10), ("alarm", 0)]
    assert stored[0][1] == encode(message)
    outbox.close()
    again = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock())
    assert again.pending() == 2 and again.health().bytes == sum(len(p) for _, p, _ in stored)
    again.close()


def test_readings_are_staged_on_disk_and_left_ones_become_a_batch_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock(), max_points=25, max_delay=3600)
    for i in range(7):  # 7 readings of 10 points: two full batches of 25, 20 points left staged
        outbox.add_reading(Reading(device="meter", ts=datetime.now(UTC), values={f"m{j}": float(i) for j in range(10)}))
    assert [p for (p,) in rows(path, "SELECT points FROM messages ORDER BY seq")] == [25, 25]
    assert sum(p for (p,) in rows(path, "SELECT points FROM readings")) == 20
    # the process dies here: an outbox whose thread never ran packs nothing on close, as after a kill
    outbox.close()
    again = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock(), max_points=25, max_delay=3600)
    again.add_reading(Reading(device="meter", ts=datetime.now(UTC), values={"x": 1.0}))  # any step packs what is due
    points = [p for (p,) in rows(path, "SELECT points FROM messages ORDER BY seq")]
    assert points == [25, 25, 21] and rows(path, "SELECT count(*) FROM readings") == [(0,)]
    batches = [json.loads(p) for (p,) in rows(path, "SELECT payload FROM messages ORDER BY seq")]
    got = [(r["device"], name) for b in batches for r in b["readings"] for name in r["values"]]
    assert len(got) == 71 and got.count(("meter", "m0")) == 7  # every point once; the split reading kept its device
    again.close()


def test_the_size_bound_drops_the_oldest_telemetry_first_and_counts_it_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    size = len(encode(batch("pump-1", 0)))
    outbox = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock(), max_bytes=size * 10 + size // 2)
    outbox.put(Kind.ALARM, alarm(0))  # the oldest message of all, but not telemetry
    for i in range(30):
        outbox.put(Kind.TELEMETRY, batch("pump-1", i * 10))
    health = outbox.health()
    assert health.bytes <= outbox.max_bytes
    kept = [json.loads(p) for (p,) in rows(path, "SELECT payload FROM messages WHERE kind = 'telemetry' ORDER BY seq")]
    firsts = [b["readings"][0]["values"]["m0"] for b in kept]
    assert firsts == [float(i * 10) for i in range(30 - len(kept), 30)]  # the newest, in order
    dropped = 30 - len(kept)
    assert rows(path, "SELECT count(*) FROM messages WHERE kind = 'alarm'") == [(1,)]
    assert (health.dropped_messages, health.dropped_points) == (dropped, dropped * 10)
    assert health.depth == len(kept) + 1
    outbox.close()
    assert counters_of(path) == {"dropped_messages": dropped, "dropped_points": dropped * 10}
    again = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock())
    assert again.health().dropped_messages == dropped  # reported after a restart too
    again.close()


def test_the_age_bound_drops_what_waited_too_long(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "outbox.sqlite3"
    outbox = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), clock, max_age=3600, age_check=0)
    for i in range(3):
        outbox.put(Kind.TELEMETRY, batch("pump-1", i))
    assert outbox.health().oldest_age_s == 0
    clock.advance(1800)
    outbox.put(Kind.TELEMETRY, batch("pump-1", 99))
    assert outbox.health().oldest_age_s == 1800
    clock.advance(1801)  # the first three are now older than an hour, the last one is not
    outbox.put(Kind.ALARM, alarm(1))
    health = outbox.health()
    assert (health.depth, health.dropped_messages, health.dropped_points) == (2, 3, 30)
    assert health.oldest_age_s == 1801
    outbox.close()


def test_one_agent_per_outbox_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock())
    with pytest.raises(RuntimeError, match=r"outbox .*outbox\.sqlite3: in use by another agent"):
        DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock())
    first.close()
    DurableOutbox(path, uplink_for("mqtt://127.0.0.1:1"), SystemClock()).close()  # free again


def test_a_broken_outbox_path_is_refused_with_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RuntimeError, match=r"outbox .*file/outbox\.sqlite3: cannot open"):
        DurableOutbox(blocker / "outbox.sqlite3", uplink_for("mqtt://127.0.0.1:1"), SystemClock())


# -- with a real broker --------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    proc = MosquittoProcess(tmp_path / "mosquitto", free_port())
    yield proc
    proc.stop()


def persistent_recorder(url: str, name: str) -> MqttRecorder:
    recorder = MqttRecorder(url, name, clean_session=False)
    recorder.subscribe(f"community/v1/{SITE}/+/#")
    return recorder


def test_during_an_outage_paho_holds_at_most_the_window_and_everything_arrives_once(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    broker.start()
    persistent_recorder(broker.url, "rec-window").close()  # the broker keeps what comes for it
    broker.stop()
    uplink = uplink_for(broker.url, max_inflight=40)
    outbox = wired(DurableOutbox(tmp_path / "o.sqlite3", uplink, SystemClock(), window=10, drain_rate=0), uplink)
    outbox.start()
    uplink.start()
    try:
        for i in range(300):
            outbox.put(Kind.TELEMETRY, batch("pump-1", i * 10))
            if i % 10 == 0:
                outbox.put(Kind.ALARM, alarm(i))
        until(lambda: outbox.pending() == 330)
        assert uplink.unacked() == 0  # not connected yet: nothing handed over, all on disk
        broker.start()
        seen_window: list[int] = []
        deadline = time.monotonic() + 30
        while outbox.pending():  # sample what paho holds while the outbox drains
            seen_window.append(uplink.unacked())
            assert time.monotonic() < deadline, "the outbox did not drain"
            time.sleep(0.002)
        # the birth and the status of the connect besides two lanes of 10
        assert max(seen_window) <= 2 * 10 + 2
    finally:
        outbox.close()
        uplink.stop()
    recorder = persistent_recorder(broker.url, "rec-window")
    try:
        recorder.wait_for(lambda r: len(r.of_kind("telemetry")) >= 300 and len(r.of_kind("alarm")) >= 30)
        time.sleep(0.3)  # nothing more comes
        telemetry = [m.json() for m in recorder.of_kind("telemetry")]
    finally:
        recorder.close()
    firsts = [b["readings"][0]["values"]["m0"] for b in telemetry]
    assert firsts == [float(i * 10) for i in range(300)]  # exactly once, oldest first
    assert outbox.health().depth == 0


def test_after_a_reconnect_live_data_and_alarms_overtake_a_paced_backlog(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    broker.start()
    recorder = persistent_recorder(broker.url, "rec-lanes")
    uplink = uplink_for(broker.url, max_inflight=50)
    outbox = wired(DurableOutbox(tmp_path / "o.sqlite3", uplink, SystemClock(), window=20, drain_rate=50), uplink)
    # a backlog made while nothing was connected: 150 messages at 50/s take about 3 s to drain
    for i in range(150):
        outbox.put(Kind.TELEMETRY, batch("pump-1", i * 10))
    outbox.start()
    uplink.start()
    try:
        until(uplink.connected.is_set)
        until(lambda: len(recorder.of_kind("telemetry")) >= 10)  # the backlog has begun
        outbox.put(Kind.TELEMETRY, batch("pump-2", 0))  # live data
        outbox.put(Kind.ALARM, alarm(7))
        until(lambda: outbox.pending() == 0)
    finally:
        outbox.close()
        uplink.stop()
        recorder.wait_for(lambda r: len(r.of_kind("telemetry")) >= 151)
        recorder.close()
    order = [
        (m.kind, m.json()["readings"][0]["device"] if m.kind == "telemetry" else m.json()["rule"])
        for m in recorder.messages
        if m.kind in ("telemetry", "alarm")
    ]
    backlog_positions = [i for i, item in enumerate(order) if item == ("telemetry", "pump-1")]
    assert len(backlog_positions) == 150
    assert order.index(("telemetry", "pump-2")) < backlog_positions[-1]  # live did not wait for the backlog
    assert order.index(("alarm", "rule_7")) < backlog_positions[-1]
    pump1 = [m.json()["readings"][0]["values"]["m0"] for m in recorder.of_kind("telemetry")
             if m.json()["readings"][0]["device"] == "pump-1"]  # fmt: skip
    assert pump1 == [float(i * 10) for i in range(150)]  # the backlog oldest first, in order
