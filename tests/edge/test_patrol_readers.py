"""Patrol checkpoint readers on the gateway: tags read on the local broker, a serial line and a
keyboard-wedge FIFO become `patrol_scan` events through the outbox, across an outage and a
restart, and through the real cloud ingest into the patrol tables."""

import asyncio
import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import serial
import yaml

from community.broker import MosquittoProcess
from contract.gateway_config import LoadedGatewayConfig, apply_remote_config, load_gateway_config
from contract.messages import BirthMessage, EventMessage, decode
from contract.patrol import PATROL_SCAN_EVENT, PatrolScanData
from contract.profiles import ProfileError
from contract.topics import Kind, topic
from edge.access.readers import BadInput
from edge.agent import Agent
from edge.patrol import parse_scan
from edge.settings import EdgeSettings
from simulator.serial_line import VirtualSerialLine
from tests.cloud.stack import running_ingest, wait_for
from tests.edge.conftest import PROFILES, MqttRecorder
from tests.edge.test_access_agent import publish, type_into
from tests.edge.test_agent import until
from tests.workflow.conftest import World, world  # noqa: F401  (the cloud side of the end-to-end test)
from tests.workflow.test_patrol import TAGS, at, move_to, run_pass, set_up, the_round


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"04A1B2C3D4\r\n", PatrolScanData(tag="04A1B2C3D4")),
        (b'{"tag": "QR-GATE-3"}', PatrolScanData(tag="QR-GATE-3")),
        ('{"tag": "04A1B2C3D4", "card": "c0ffee01"}', PatrolScanData(tag="04A1B2C3D4", card="c0ffee01")),
        (b'{"tag": "04A1B2C3D4", "card": 12345678}', PatrolScanData(tag="04A1B2C3D4", card="12345678")),
        (b'"https://qr.example/cp/7"', PatrolScanData(tag="https://qr.example/cp/7")),
    ],
)
def test_accepted_scans(data: bytes | str, expected: PatrolScanData) -> None:
    assert parse_scan(data) == expected


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"  \n", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"tag": ["04A1"]}', "tag: Input should be a valid string"),
        (b"two words", "tag: a tag is 1 to 200 printable characters without spaces"),
        (b"T" * 201, "tag: a tag is 1 to 200"),
        (b'{"card": "C0FFEE01"}', "tag:"),
        (b'{"tag": "04A1", "card": "xyz"}', "card: a card number is 4 to 32"),
        (b'{"tag": "04A1", "door": "lobby"}', "door:"),
    ],
)
def test_refused_scans_say_why(data: bytes, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        parse_scan(data)


def patrol_site(
    tmp_path: Path,
    site: str,
    gateway: str,
    readers: list[dict[str, Any]],
    *,
    site_name: str = "Patrol site",
    **extra: Any,
) -> Path:
    """A gateway config file with these checkpoint readers (and `extra` top-level keys)."""
    document: dict[str, Any] = {
        "site": {"id": site, "name": site_name, "timezone": "Asia/Shanghai"},
        "gateway": {"id": gateway},
        "profiles_dir": str(PROFILES),
        "patrol": {"readers": readers},
        **extra,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_bad_checkpoint_reader_names_the_file_and_field(tmp_path: Path) -> None:
    path = patrol_site(tmp_path, "s", "gw", [{"name": "cp-1", "kind": "mqtt"}])
    with pytest.raises(ProfileError) as refused:
        load_gateway_config(path)
    assert str(path) in str(refused.value) and "patrol.readers[0]: " in str(refused.value)
    assert "an 'mqtt' reader needs 'topic'" in str(refused.value)

    twice = [{"name": "cp-1", "kind": "keyboard", "path": "/run/a"}, {"name": "cp-1", "kind": "mqtt", "topic": "t"}]
    with pytest.raises(ProfileError, match=r"patrol.*readers\[1\]\.name: 'cp-1' is used twice"):
        load_gateway_config(patrol_site(tmp_path, "s", "gw", twice))

    device = {"name": "cp-1", "profile": "water-leak-sensor", "mqtt": {"topic": "leak"}}
    clash = patrol_site(tmp_path, "s", "gw", [{"name": "cp-1", "kind": "mqtt", "topic": "t"}], devices=[device])
    with pytest.raises(ProfileError, match=r"patrol\.readers\[0\]\.name: 'cp-1' is also a device"):
        load_gateway_config(clash)


def test_a_pushed_configuration_may_bring_checkpoint_readers(tmp_path: Path) -> None:
    local = load_gateway_config(patrol_site(tmp_path, "s", "gw", []))
    pushed = apply_remote_config(
        local, {"patrol": {"readers": [{"name": "cp-1", "kind": "mqtt", "topic": "patrol/cp-1"}]}}, version=2
    )
    assert pushed.config.patrol is not None and [r.topic for r in pushed.config.patrol.readers] == ["patrol/cp-1"]
    unchanged = apply_remote_config(local, {"devices": []}, version=3)  # no `patrol`: the local file's stays
    assert unchanged.config.patrol == local.config.patrol
    with pytest.raises(ProfileError, match=r"remote config v4: patrol\.readers\[0\]: .*needs 'path'"):
        apply_remote_config(local, {"patrol": {"readers": [{"name": "cp-1", "kind": "serial"}]}}, version=4)


def scans_of(messages: list[Any]) -> list[tuple[EventMessage, PatrolScanData]]:
    """The patrol_scan events among recorded `event` messages, parsed with the contract's models."""
    events = [decode(Kind.EVENT, m.payload) for m in messages]
    return [
        (e, PatrolScanData.model_validate(e.data))
        for e in events
        if isinstance(e, EventMessage) and e.kind == PATROL_SCAN_EVENT
    ]


def test_tags_from_every_input_path_become_patrol_scan_events(
    tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    site, gateway = unique_id, f"{unique_id}-gw"
    fifo = tmp_path / "wedge.fifo"
    os.mkfifo(fifo)
    line = VirtualSerialLine().start()
    readers = [
        {"name": "cp-gate", "kind": "mqtt", "topic": f"patrol/{site}/gate"},
        {"name": "cp-roof", "kind": "serial", "path": line.a_path, "baudrate": 9600},
        {"name": "cp-desk", "kind": "keyboard", "path": str(fifo)},
    ]
    loaded = load_gateway_config(patrol_site(tmp_path, site, gateway, readers))
    mqtt_recorder.subscribe(topic(site, gateway, Kind.EVENT))
    mqtt_recorder.subscribe(topic(site, gateway, Kind.BIRTH))
    settings = EdgeSettings(mqtt_url=mqtt_url, state_dir=tmp_path / "state", reconnect_max_delay=1)
    caplog.set_level(logging.INFO)

    async def run() -> tuple[datetime, datetime]:
        agent = Agent(settings, gateway_config=loaded, backoff_cap=0.5)
        await agent.start()
        try:
            await until(agent.uplink.connected.is_set)
            patrol = agent.patrol
            assert patrol is not None and patrol.mqtt is not None
            await asyncio.wait_for(patrol.mqtt.subscribed.wait(), 10)
            await until(lambda: all(r.opened.is_set() for r in patrol.lines))
            before = datetime.now(UTC)
            publish(mqtt_url, f"patrol/{site}/gate", b'{"tag": "04A1B2C3D4", "card": "c0ffee01"}')
            await until(lambda: patrol.scans["cp-gate"] == 1)
            with serial.Serial(line.b_path, 9600, timeout=1) as other_end:
                other_end.write(b"04A1B2C3D5\r\n")
                other_end.flush()
                await until(lambda: patrol.scans["cp-roof"] == 1)
            type_into(fifo, "not a tag")  # malformed: logged with the reader's name, dropped
            type_into(fifo, "QR-GATE-3")
            await until(lambda: patrol.scans["cp-desk"] == 1)
            publish(mqtt_url, f"patrol/{site}/gate", b"{broken")
            await until(lambda: patrol.ignored == 2)
            after = datetime.now(UTC)
            await until(lambda: len(scans_of(mqtt_recorder.of_kind("event"))) == 3)
            return before, after
        finally:
            await agent.stop()

    try:
        before, after = asyncio.run(run())
    finally:
        line.stop()
    scans = scans_of(mqtt_recorder.of_kind("event"))
    assert [(e.device, s) for e, s in scans] == [
        ("cp-gate", PatrolScanData(tag="04A1B2C3D4", card="c0ffee01")),
        ("cp-roof", PatrolScanData(tag="04A1B2C3D5")),
        ("cp-desk", PatrolScanData(tag="QR-GATE-3")),
    ]
    assert all(before <= e.ts <= after for e, _ in scans)
    assert [e.ts for e, _ in scans] == sorted(e.ts for e, _ in scans)
    assert "reader cp-desk: input ignored: tag: a tag is 1 to 200 printable characters" in caplog.text
    assert "reader cp-gate: input ignored: not valid JSON" in caplog.text
    assert len(scans_of(mqtt_recorder.of_kind("event"))) == 3  # nothing for the dropped input
    birth = decode(Kind.BIRTH, mqtt_recorder.of_kind("birth")[0].payload)
    assert isinstance(birth, BirthMessage)
    assert [(d.name, d.protocol) for d in birth.devices] == [(r["name"], "reader") for r in readers]


def test_a_scan_read_during_an_outage_survives_a_restart(tmp_path: Path, mqtt_url: str, unique_id: str) -> None:
    """The uplink's broker is down when the tag is read and the agent restarts before it returns:
    the event arrives afterwards with the time it was read."""
    site, gateway = unique_id, f"{unique_id}-gw"
    readers = [{"name": "cp-gate", "kind": "mqtt", "topic": f"patrol/{site}/gate"}]
    loaded = load_gateway_config(patrol_site(tmp_path, site, gateway, readers, local_mqtt_url=mqtt_url))
    broker = MosquittoProcess(tmp_path / "uplink-broker").start()
    settings = EdgeSettings(mqtt_url=broker.url, state_dir=tmp_path / "state", reconnect_max_delay=1)
    recorder = MqttRecorder(broker.url, f"rec-{unique_id}", clean_session=False)
    recorder.subscribe(topic(site, gateway, Kind.EVENT))

    async def read_while_down() -> datetime:
        agent = Agent(settings, gateway_config=loaded, backoff_cap=0.5)
        await agent.start()
        try:
            await until(agent.uplink.connected.is_set)
            assert agent.patrol is not None and agent.patrol.mqtt is not None
            await asyncio.wait_for(agent.patrol.mqtt.subscribed.wait(), 10)
            broker.stop()
            await until(lambda: not agent.uplink.connected.is_set())
            read_at = datetime.now(UTC)
            publish(mqtt_url, f"patrol/{site}/gate", b"04A1B2C3D4")
            await until(lambda: agent.patrol is not None and agent.patrol.scans["cp-gate"] == 1)
            return read_at
        finally:
            await agent.stop()

    async def deliver_after_restart() -> None:
        agent = Agent(settings, gateway_config=loaded, backoff_cap=0.5)
        await agent.start()
        try:
            broker.start()  # same port and persistence: the recorder's session is waiting
            await until(lambda: scans_of(recorder.of_kind("event")), timeout=30)
        finally:
            await agent.stop()

    try:
        read_at = asyncio.run(read_while_down())
        restarted_at = datetime.now(UTC)
        asyncio.run(deliver_after_restart())
    finally:
        recorder.close()
        broker.stop()
    ((event, scan),) = scans_of(recorder.of_kind("event"))
    assert event.device == "cp-gate" and scan == PatrolScanData(tag="04A1B2C3D4")
    assert read_at <= event.ts <= restarted_at  # the time of the read, not of the delivery


def test_a_checkpoint_readers_tag_counts_on_the_round_through_the_real_ingest(
    world: World,  # noqa: F811
    tmp_path: Path,
    mqtt_url: str,
) -> None:
    """Estate A's round is in course; the gateway's reader at C1 reads its tag two minutes after the
    start: through the agent, the broker and the ingest, C1 is on time, scanned by the reader."""
    set_up(world)
    run_pass(world)
    move_to(world, at(2))
    readers = [{"name": "reader-c1", "kind": "mqtt", "topic": "patrol/c1"}]
    path = patrol_site(tmp_path, "estate-a", "gw-patrol", readers, site_name="Sunny Gardens")
    loaded: LoadedGatewayConfig = load_gateway_config(path)
    edge_settings = EdgeSettings(mqtt_url=mqtt_url, state_dir=tmp_path / "state", reconnect_max_delay=1)
    cloud_settings = world.settings.model_copy(
        update={"mqtt_url": mqtt_url, "mqtt_client_id": f"p-{uuid.uuid4().hex[:6]}"}
    )

    async def scan_c1() -> None:
        agent = Agent(edge_settings, gateway_config=loaded, clock=world.clock, backoff_cap=0.5)
        await agent.start()
        try:
            await until(agent.uplink.connected.is_set)
            assert agent.patrol is not None and agent.patrol.mqtt is not None
            await asyncio.wait_for(agent.patrol.mqtt.subscribed.wait(), 10)
            publish(mqtt_url, "patrol/c1", TAGS["C1"].encode())
            await until(lambda: world.sql("SELECT 1 FROM patrol_scans"))  # sent, received, recorded
        finally:
            await agent.stop()

    with running_ingest(cloud_settings, world.clock) as ingest:
        asyncio.run(scan_c1())
        wait_for(lambda: ingest.control.handled >= 1)
    c1 = the_round(world)["checkpoints"][0]
    assert c1["code"] == "C1" and c1["status"] == "on_time" and c1["scanned_via"] == "reader"
    assert when_scanned(c1) == at(2)
    (scan,) = world.sql("SELECT * FROM patrol_scans")
    assert (scan["gateway_id"], scan["device"], scan["outcome"]) == ("gw-patrol", "reader-c1", "on_time")
    (device,) = world.sql("SELECT * FROM devices WHERE gateway_id = 'gw-patrol'")
    assert (device["name"], device["protocol"], device["announced"]) == ("reader-c1", "reader", True)


def when_scanned(checkpoint: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(checkpoint["scanned_at"])
