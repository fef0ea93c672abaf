"""Door access through the whole agent: the real Mosquitto, a pymodbus door controller, readers.

The whitelist arrives over MQTT; swipes come from a reader on the local broker and from a
keyboard-wedge FIFO; grants pulse the door controller's relay coil on the simulated device;
the door contact read from it raises forced and held-open alarms; every decision is an access
event through the outbox, decided offline while the broker is down and delivered after.
"""

import asyncio
import base64
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from community.broker import MosquittoProcess, free_port
from contract.access import AccessRight, Card, WhitelistMessage
from contract.gateway_config import LoadedGatewayConfig, load_gateway_config
from contract.messages import encode
from contract.topics import Kind, topic
from edge.access.whitelist import WhitelistStore
from edge.agent import Agent
from edge.settings import EdgeSettings
from simulator.modbus_server import ModbusSimulation, SimulatedModbusDevice
from tests.edge.conftest import PROFILES, MqttRecorder
from tests.edge.test_access_decide import MONDAY_4PM_SHANGHAI, PASS_ID, full_whitelist, person
from tests.edge.test_agent import until

PULSE = 0.3


def short_pulse_profiles(directory: Path) -> Path:
    """The repository's profiles, the door controller's open_door pulse shortened for the tests."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in PROFILES.glob("*.yaml"):
        text = source.read_text()
        if source.name == "door-controller.yaml":
            text = text.replace("    pulse: 5\n", f"    pulse: {PULSE}\n")
            assert f"pulse: {PULSE}" in text
        (directory / source.name).write_text(text)
    return directory


def door_site(tmp_path: Path, site: str, gateway: str, *, local_mqtt_url: str | None = None) -> LoadedGatewayConfig:
    """One door controller (lock relay and contact) for the lobby entrance, a lobby exit, readers."""
    port = free_port()
    fifo = tmp_path / "keypad.fifo"
    os.mkfifo(fifo)
    document: dict[str, Any] = {
        "site": {"id": site, "name": "Door site", "timezone": "Asia/Shanghai"},
        "gateway": {"id": gateway},
        "profiles_dir": str(short_pulse_profiles(tmp_path / "profiles")),
        "devices": [
            {
                "name": "door-ctl",
                "profile": "door-controller",
                "modbus": {"host": "127.0.0.1", "port": port, "unit": 1},
                "poll_interval": 0.1,
            }
        ],
        "access": {
            "antipassback": True,
            "doors": [
                {
                    "name": "lobby-in", "relay": "door-ctl", "contact": "door-ctl", "group": "lobby",
                    "direction": "in", "held_open_after": 1.0, "grant_window": 2.0,
                },
                {"name": "lobby-out", "group": "lobby", "direction": "out"},
            ],
            "readers": [
                {"name": "lobby-reader", "door": "lobby-in", "kind": "mqtt", "topic": f"readers/{site}/lobby"},
                {"name": "exit-reader", "door": "lobby-out", "kind": "mqtt", "topic": f"readers/{site}/exit"},
                {"name": "lobby-keypad", "door": "lobby-in", "kind": "keyboard", "path": str(fifo)},
            ],
        },
    }  # fmt: skip
    if local_mqtt_url:
        document["local_mqtt_url"] = local_mqtt_url
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_gateway_config(path)


def record_coil(device: SimulatedModbusDevice, address: int = 0) -> list[bool]:
    """Every value a client writes to the coil (call before the server starts)."""
    writes: list[bool] = []
    action = device._action

    async def recording(function_code: int, start: int, addr: int, count: int, regs: Any, values: Any) -> Any:
        if function_code in (5, 15) and values is not None and addr == address:
            writes.append(bool(values[0]))
        return await action(function_code, start, addr, count, regs, values)

    device._action = recording  # type: ignore[method-assign]
    return writes


def publish(url: str, topic_name: str, payload: bytes, *, retain: bool = False) -> None:
    from contract.urls import parse_mqtt_url

    endpoint = parse_mqtt_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        client.publish(topic_name, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def type_into(fifo: Path, line: str) -> None:
    """A keyboard-wedge reader typing a line and Enter."""
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def access_events(recorder: MqttRecorder) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.of_kind("access/event")]


def alarms_of(recorder: MqttRecorder, rule: str, action: str) -> list[dict[str, Any]]:
    return [a for a in (m.json() for m in recorder.of_kind("alarm")) if a["rule"] == rule and a["action"] == action]


def whitelist_v1() -> WhitelistMessage:
    """The decision tests' whitelist, with person 1 allowed through the lobby both ways."""
    return full_whitelist(at=datetime.now(UTC))


def test_doors_end_to_end(tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder) -> None:
    site, gateway = unique_id, f"{unique_id}-gw"
    loaded = door_site(tmp_path, site, gateway)
    fifo = tmp_path / "keypad.fifo"
    mqtt_recorder.subscribe(f"community/v1/{site}/{gateway}/#")
    settings = EdgeSettings(mqtt_url=mqtt_url, reconnect_max_delay=1)

    async def run() -> None:
        sim = ModbusSimulation(loaded)
        coil = record_coil(sim.device("door-ctl"))
        async with sim:
            agent = Agent(settings, gateway_config=loaded, backoff_cap=0.5)
            await agent.start()
            try:
                await until(agent.uplink.connected.is_set)
                await until(lambda: all(r.opened.is_set() for r in agent.line_readers))  # the keypad's FIFO
                # No whitelist on disk: the agent asks for one.
                (request,) = await until(lambda: mqtt_recorder.of_kind("access/request"))
                assert request.json()["reason"] == "no whitelist on disk" and "have_version" not in request.json()
                publish(mqtt_url, topic(site, gateway, Kind.ACCESS_WHITELIST), encode(whitelist_v1()), retain=True)
                await until(lambda: agent.whitelist.version == 1)
                assert agent.access is not None and agent.mqtt_readers is not None
                await asyncio.wait_for(agent.mqtt_readers.subscribed.wait(), 10)
                watch = agent.access.watches["lobby-in"]

                # Forced: the contact opens with no grant; held open a second later; closing clears both.
                await until(lambda: watch.open is False)
                sim.set("door-ctl", "door_open", True)
                (forced,) = await until(lambda: alarms_of(mqtt_recorder, "door_forced", "raise"))
                assert forced["device"] == "door-ctl" and forced["ticket"] == "safety"
                assert forced["severity"] == "major" and forced["category"] == "safety"
                assert "lobby-in" in forced["message"]
                (held,) = await until(lambda: alarms_of(mqtt_recorder, "door_held_open", "raise"))
                assert held["ticket"] == "safety" and held["device"] == "door-ctl"
                sim.set("door-ctl", "door_open", False)
                await until(lambda: alarms_of(mqtt_recorder, "door_held_open", "clear"))
                await until(
                    lambda: [a for a in alarms_of(mqtt_recorder, "door_forced", "clear") if "closed" in a["message"]]
                )
                assert coil == []  # nothing opened the lock

                # A card on the MQTT reader: granted, the relay coil pulsed on the pymodbus device.
                reader_topic = f"readers/{site}/lobby"
                publish(mqtt_url, reader_topic, b'{"card": "04a3b2c1"}')
                (granted,) = await until(lambda: access_events(mqtt_recorder))
                assert granted["door"] == "lobby-in" and granted["granted"] is True and granted["method"] == "card"
                assert granted["person_id"] == 1 and granted["card"] == "****B2C1"
                assert granted["whitelist_version"] == 1 and granted["offline"] is False
                assert granted["source"] == "lobby-reader"
                await until(lambda: coil == [True, False])  # on, then off after the pulse
                # Opened within the grant window: not forced; held open still counts.
                sim.set("door-ctl", "door_open", True)
                await until(lambda: len(alarms_of(mqtt_recorder, "door_held_open", "raise")) == 2)
                assert len(alarms_of(mqtt_recorder, "door_forced", "raise")) == 1
                sim.set("door-ctl", "door_open", False)

                # Anti-passback: in again is refused until an out.
                publish(mqtt_url, reader_topic, b"04A3B2C1")  # a bare number
                await until(lambda: len(access_events(mqtt_recorder)) == 2)
                assert access_events(mqtt_recorder)[1]["reason"] == "passback"
                publish(mqtt_url, f"readers/{site}/exit", b'{"card": "04A3B2C1"}')
                await until(lambda: len(access_events(mqtt_recorder)) == 3)
                assert (
                    access_events(mqtt_recorder)[2]["granted"]
                    and access_events(mqtt_recorder)[2]["door"] == "lobby-out"
                )

                # Unknown and blocked cards; garbage is ignored (logged with the reader's name).
                publish(mqtt_url, reader_topic, b"not a card")
                publish(mqtt_url, reader_topic, b'{"card": "DEADBEEF"}')
                publish(mqtt_url, reader_topic, b'{"card": "11112222"}')
                await until(lambda: len(access_events(mqtt_recorder)) == 5)
                assert [e["reason"] for e in access_events(mqtt_recorder)[3:]] == ["unknown_card", "blocked"]

                # A visitor's PIN on the keyboard-wedge keypad: twice granted (2 uses), then used up.
                for _ in range(3):
                    type_into(fifo, "pin:4711")
                    count = len(access_events(mqtt_recorder))
                    await until(lambda c=count: len(access_events(mqtt_recorder)) == c + 1)
                pins = access_events(mqtt_recorder)[5:]
                assert [(e["method"], e["granted"], e.get("reason")) for e in pins] == [
                    ("pin", True, None), ("pin", True, None), ("pin", False, "pass_used_up"),
                ]  # fmt: skip
                assert pins[0]["pass_id"] == str(PASS_ID)

                # A delta that does not fit the version held: the agent asks for a full whitelist.
                stray = WhitelistMessage(ts=MONDAY_4PM_SHANGHAI, version=6, base_version=5, timezone="Asia/Shanghai")
                publish(mqtt_url, topic(site, gateway, Kind.ACCESS_WHITELIST), encode(stray))
                requests = await until(
                    lambda: (
                        len(mqtt_recorder.of_kind("access/request")) == 2 and mqtt_recorder.of_kind("access/request")
                    )
                )
                assert requests[1].json()["have_version"] == 1
                # One that fits is applied: the person's card blocked at once.
                blocked = WhitelistMessage(
                    ts=MONDAY_4PM_SHANGHAI, version=2, base_version=1, timezone="Asia/Shanghai",
                    people=[person(1, Card(number="04A3B2C1", blocked=True), rights=[AccessRight(doors=["lobby-in"])])],
                )  # fmt: skip
                publish(mqtt_url, topic(site, gateway, Kind.ACCESS_WHITELIST), encode(blocked))
                await until(lambda: agent.whitelist.version == 2)
                publish(mqtt_url, f"readers/{site}/lobby", b"04A3B2C1")
                await until(lambda: len(access_events(mqtt_recorder)) == 9)
                last = access_events(mqtt_recorder)[8]
                assert (last["reason"], last["whitelist_version"]) == ("blocked", 2)
            finally:
                await agent.stop()

    asyncio.run(run())
    assert WhitelistStore(EdgeSettings().state_dir / f"whitelist-{gateway}.json").version == 2  # kept on disk


def test_decisions_while_the_broker_is_down_arrive_after_it_returns(
    tmp_path: Path, mqtt_url: str, unique_id: str
) -> None:
    """The uplink's broker is stopped; the door still decides from the whitelist on disk and opens;
    the events, marked offline, reach a subscriber once the broker is back."""
    site, gateway = unique_id, f"{unique_id}-gw"
    loaded = door_site(tmp_path, site, gateway, local_mqtt_url=mqtt_url)  # readers' broker stays up
    fifo = tmp_path / "keypad.fifo"
    state = tmp_path / "state"
    WhitelistStore(state / f"whitelist-{gateway}.json").apply(whitelist_v1())
    broker = MosquittoProcess(tmp_path / "uplink-broker").start()
    settings = EdgeSettings(mqtt_url=broker.url, state_dir=state, reconnect_max_delay=1)
    recorder = MqttRecorder(broker.url, f"rec-{unique_id}", clean_session=False)
    recorder.subscribe(topic(site, gateway, Kind.ACCESS_EVENT))
    recorder.subscribe(topic(site, gateway, Kind.ACCESS_REQUEST))

    async def run() -> None:
        sim = ModbusSimulation(loaded)
        coil = record_coil(sim.device("door-ctl"))
        async with sim:
            agent = Agent(settings, gateway_config=loaded, backoff_cap=0.5)
            await agent.start()
            try:
                await until(agent.uplink.connected.is_set)
                await until(lambda: all(r.opened.is_set() for r in agent.line_readers))  # the keypad's FIFO
                type_into(fifo, "04A3B2C1")
                await until(lambda: len(access_events(recorder)) == 1)
                assert access_events(recorder)[0]["offline"] is False
                await until(lambda: coil == [True, False])

                broker.stop()
                await until(lambda: not agent.uplink.connected.is_set())
                assert agent.access is not None
                publish(mqtt_url, f"readers/{site}/exit", b"04A3B2C1")  # out ...
                await until(lambda: len(agent.access.decisions) == 2)
                type_into(fifo, "04A3B2C1")  # ... and in again
                type_into(fifo, "pin:4711")
                await until(lambda: len(agent.access.decisions) == 4)
                assert [d.granted for d in agent.access.decisions] == [True, True, True, True]
                # the lock opened twice more, offline (two pulses may overlap: on, on, off, off)
                await until(lambda: coil.count(True) == 3 and coil.count(False) == 3)
                assert (
                    agent.whitelist.current is not None
                    and agent.whitelist.current.uses_left(agent.whitelist.current.passes[PASS_ID]) == 1
                )

                broker.start()  # same port, same persistence: the recorder's session is waiting
                await until(lambda: len(access_events(recorder)) == 4, timeout=30)
            finally:
                await agent.stop()

    try:
        asyncio.run(run())
    finally:
        recorder.close()
        broker.stop()
    events = access_events(recorder)
    assert [(e["door"], e["method"], e["offline"]) for e in events] == [
        ("lobby-in", "card", False), ("lobby-out", "card", True), ("lobby-in", "card", True), ("lobby-in", "pin", True),
    ]  # fmt: skip
    assert all(e["granted"] and e["whitelist_version"] == 1 for e in events)
    assert recorder.of_kind("access/request") == []  # a whitelist was on disk: nothing to ask


def test_a_camera_at_the_door_attaches_its_frame_to_alarms_there(
    tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder, faces_dir: Path
) -> None:
    """A real CameraWorker on the shared clip: the agent announces it, and its latest frame goes with
    the door's forced alarm (the door's camera) and with the door controller's own alarm rule (the
    camera's area: the same building)."""
    site, gateway = unique_id, f"{unique_id}-gw"
    loaded = door_site(tmp_path, site, gateway)
    document = yaml.safe_load(loaded.path.read_text())
    document["devices"][0]["location"] = {"building": "1", "floor": "1", "room": "Lobby"}
    clip = faces_dir / "probes" / "short_hamilton_clip.mp4"
    document["access"]["cameras"] = [
        {"name": "cam-lobby", "source": str(clip), "door": "lobby-in", "location": {"building": "1"}, "detect_fps": 1}
    ]
    loaded.path.write_text(yaml.safe_dump(document, sort_keys=False))
    loaded = load_gateway_config(loaded.path)
    mqtt_recorder.subscribe(f"community/v1/{site}/{gateway}/#")

    def snapshots() -> list[dict[str, Any]]:
        events = (m.json() for m in mqtt_recorder.of_kind("event"))
        return [e for e in events if e["kind"] == "alarm_snapshot"]

    async def run() -> None:
        async with ModbusSimulation(loaded) as sim:
            agent = Agent(EdgeSettings(mqtt_url=mqtt_url), gateway_config=loaded, backoff_cap=0.5)
            await agent.start()
            try:
                birth = (await until(lambda: mqtt_recorder.of_kind("birth")))[0].json()
                assert [(d["name"], d["protocol"]) for d in birth["devices"]] == [
                    ("door-ctl", "modbus"), ("cam-lobby", "camera"),
                ]  # fmt: skip
                assert agent.access is not None
                await until(lambda: agent.cameras[0].latest_jpeg() is not None)  # type: ignore[attr-defined]
                await until(lambda: agent.access.watches["lobby-in"].open is False)
                sim.set("door-ctl", "door_open", True)  # forced: the controller's alarm, the door's camera
                door = (await until(snapshots))[0]
                assert door["device"] == "cam-lobby" and door["data"]["alarm_device"] == "door-ctl"
                assert door["data"]["rule"] == "door_forced"
                assert base64.b64decode(door["data"]["jpeg"])[:2] == b"\xff\xd8"
                # held open a second later: the door's camera again
                await until(lambda: "door_held_open" in [s["data"]["rule"] for s in snapshots()])
                sim.set("door-ctl", "forced_open", True)  # the profile's own rule: the camera's area
                await until(lambda: [s["data"]["rule"] for s in snapshots()].count("door_forced") == 2)
            finally:
                await agent.stop()

    asyncio.run(run())


def test_doors_pushed_by_the_cloud_start_at_once_and_ask_for_a_whitelist(
    tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder
) -> None:
    """A gateway running without doors gets a configuration with them: readers start, the agent asks
    for the whitelist, and a swipe after it arrives opens the lock."""
    from contract.messages import ConfigMessage

    site, gateway = unique_id, f"{unique_id}-gw"
    with_doors = door_site(tmp_path, site, gateway)
    document = yaml.safe_load(with_doors.path.read_text())
    pushed = {"devices": document["devices"], "access": document["access"]}
    document.pop("access")
    with_doors.path.write_text(yaml.safe_dump(document, sort_keys=False))
    without = load_gateway_config(with_doors.path)
    mqtt_recorder.subscribe(f"community/v1/{site}/{gateway}/#")

    async def run() -> None:
        sim = ModbusSimulation(with_doors)
        coil = record_coil(sim.device("door-ctl"))
        async with sim:
            agent = Agent(EdgeSettings(mqtt_url=mqtt_url), gateway_config=without, backoff_cap=0.5)
            await agent.start()
            try:
                await until(agent.uplink.connected.is_set)
                assert agent.access is None
                config = ConfigMessage(ts=datetime.now(UTC), version=1, config=pushed)
                publish(mqtt_url, topic(site, gateway, Kind.CONFIG), encode(config), retain=True)
                (request,) = await until(lambda: mqtt_recorder.of_kind("access/request"))
                assert request.json()["reason"] == "doors configured, no whitelist on disk"
                publish(mqtt_url, topic(site, gateway, Kind.ACCESS_WHITELIST), encode(whitelist_v1()))
                await until(lambda: agent.whitelist.version == 1)
                assert agent.mqtt_readers is not None
                await asyncio.wait_for(agent.mqtt_readers.subscribed.wait(), 10)
                publish(mqtt_url, f"readers/{site}/lobby", b"04A3B2C1")
                (event,) = await until(lambda: access_events(mqtt_recorder))
                assert event["granted"] and event["source"] == "lobby-reader"
                await until(lambda: coil == [True, False])
            finally:
                await agent.stop()

    asyncio.run(run())
