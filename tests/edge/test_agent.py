"""The agent end to end: simulated devices on loopback, the real mosquitto, the contract's messages."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from community.broker import MosquittoProcess, free_port
from contract.messages import CommandMessage, encode
from contract.topics import Kind, topic
from edge.agent import Agent
from edge.commands import NO_COMMANDS
from edge.settings import EdgeSettings
from simulator.run import Simulation
from simulator.scenario import load_scenario
from tests.edge.conftest import REPO, MqttRecorder, Received, modbus_device, write_gateway_config

MAX_POINTS = 20


async def until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Wait for a condition; a deadline for it to happen, not a measure of how fast."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := predicate()):
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.05)
    return result


def site_files(tmp_path: Path, unique_id: str) -> tuple[Path, str, str]:
    """A gateway config (two pumps on one port, a leak sensor on MQTT) and a scenario for it."""
    port = free_port()
    site, gateway = unique_id, f"{unique_id}-gw"
    leak_topic = f"sensors/{unique_id}/leak-1"
    config = write_gateway_config(
        tmp_path,
        [
            modbus_device("pump-1", "water-pump", port, unit=1),
            modbus_device("pump-2", "water-pump", port, unit=2),
            {"name": "leak-1", "profile": "water-leak-sensor", "mqtt": {"topic": leak_topic}},
        ],
        site=site,
        gateway=gateway,
        telemetry={"max_points": MAX_POINTS, "max_delay": 0.2},
    )
    pump = {"outlet_pressure": 4.2, "running": True, "motor_current": 12.5, "run_hours": 1000}
    scenario = {
        "gateway_config": config.name,
        "tick": 0.1,
        "devices": {
            "pump-1": {"metrics": pump},
            "pump-2": {"metrics": pump | {"outlet_pressure": 4.0}},
            "leak-1": {"metrics": {"leak": False, "battery": 80}, "publish_interval": 0.5},
        },
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path, site, gateway


def alarms(recorder: MqttRecorder, rule: str, action: str) -> list[dict[str, Any]]:
    found = [m.json() for m in recorder.of_kind("alarm")]
    return [a for a in found if a["rule"] == rule and a["action"] == action]


def clears_after_raise(recorder: MqttRecorder, rule: str) -> list[dict[str, Any]]:
    """Clears of `rule` sent after its first raise. A clear before it is the rules settling on a
    device's first reading, which may come after the recorder subscribed on a busy machine."""
    found = [m.json() for m in recorder.of_kind("alarm")]
    found = [a for a in found if a["rule"] == rule]
    first = next((i for i, a in enumerate(found) if a["action"] == "raise"), len(found))
    return [a for a in found[first:] if a["action"] == "clear"]


def events(recorder: MqttRecorder, device: str) -> list[str]:
    return [e["kind"] for e in (m.json() for m in recorder.of_kind("event")) if e.get("device") == device]


def test_agent_end_to_end(tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder) -> None:
    scenario_path, site, gateway = site_files(tmp_path, unique_id)
    scenario = load_scenario(scenario_path)
    settings = EdgeSettings(mqtt_url=mqtt_url)

    async def run() -> None:
        async with Simulation(scenario, mqtt_url) as sim:
            agent = Agent(settings, gateway_config=scenario.gateway, backoff_cap=0.5)
            await agent.start()
            try:
                await until(agent.uplink.connected.is_set)
                await until(lambda: agent.outbox.pending() == 0)  # the broker holds birth and status
                # Subscribing after that, birth and status arrive as retained messages.
                mqtt_recorder.subscribe(f"community/v1/{site}/{gateway}/#")
                births = await until(lambda: [m for m in mqtt_recorder.of_kind("birth") if m.retain])
                birth = births[0].json()
                assert birth["site"] == {"id": site, "name": "Test site", "timezone": "Asia/Shanghai"}
                assert birth["gateway"]["id"] == gateway
                assert [d["name"] for d in birth["devices"]] == ["pump-1", "pump-2", "leak-1"]
                assert birth["devices"][0]["location"] == {"building": "B1", "floor": "1"}
                statuses = await until(lambda: [m for m in mqtt_recorder.of_kind("status") if m.retain])
                assert [s.json()["state"] for s in statuses] == ["online"]

                # Telemetry flows, in batches within the limit, with the simulated values.
                def pump_values() -> list[dict[str, Any]]:
                    batches = [m.json() for m in mqtt_recorder.of_kind("telemetry")]
                    return [r["values"] for b in batches for r in b["readings"] if r["device"] == "pump-1"]

                await until(lambda: any(v.get("outlet_pressure") == 4.2 for v in pump_values()))
                await until(lambda: any(v.get("leak") is False for v in leak_values(mqtt_recorder)))

                # A fault register raises exactly one alarm...
                sim.set("pump-1", "fault_code", 3)
                await until(lambda: alarms(mqtt_recorder, "pump_fault", "raise"))
                # ...a silent device is reported offline, and its alarm is not cleared by the silence...
                sim.stop_answering("pump-1")
                await until(lambda: "device_offline" in events(mqtt_recorder, "pump-1"))
                sim.start_answering("pump-1")
                await until(lambda: events(mqtt_recorder, "pump-1")[-1:] == ["device_online"])
                assert clears_after_raise(mqtt_recorder, "pump_fault") == []
                # ...and clearing the register clears it.
                sim.set("pump-1", "fault_code", 0)
                await until(lambda: clears_after_raise(mqtt_recorder, "pump_fault"))

                sim.set("leak-1", "leak", True)
                await until(lambda: alarms(mqtt_recorder, "water_leak", "raise"))

                # Commands are answered through the contract: rejected, with the reason.
                await check_commands(mqtt_url, site, gateway, mqtt_recorder)
            finally:
                await agent.stop()

    asyncio.run(run())

    (raised,) = alarms(mqtt_recorder, "pump_fault", "raise")
    (cleared,) = clears_after_raise(mqtt_recorder, "pump_fault")
    assert raised["device"] == "pump-1" and raised["value"] == 3
    assert raised["severity"] == "critical" and raised["ticket"] == "repair" and raised["category"] == "facility"
    assert raised["message"] == "Pump pump-1 reports fault code 3"
    assert cleared["value"] == 0
    # The first device_online may have gone out before the recorder subscribed; events are not retained.
    pump_events = events(mqtt_recorder, "pump-1")
    assert pump_events[-2:] == ["device_offline", "device_online"] and pump_events.count("device_offline") == 1
    assert "device_offline" not in events(mqtt_recorder, "pump-2")
    assert all(points(m) <= MAX_POINTS for m in mqtt_recorder.of_kind("telemetry"))
    ids = [m.json()["id"] for m in mqtt_recorder.messages if m.kind != "cmd"]  # cmd holds the test's garbage
    assert len(ids) == len(set(ids))
    last_status = mqtt_recorder.of_kind("status")[-1].json()
    assert last_status["state"] == "offline" and last_status["reason"] == "shutdown"


def leak_values(recorder: MqttRecorder) -> list[dict[str, Any]]:
    batches = [m.json() for m in recorder.of_kind("telemetry")]
    return [r["values"] for b in batches for r in b["readings"] if r["device"] == "leak-1"]


def points(message: Received) -> int:
    return sum(len(r["values"]) for r in message.json()["readings"])


async def check_commands(mqtt_url: str, site: str, gateway: str, recorder: MqttRecorder) -> None:
    now = datetime.now(UTC)
    commands = {
        "unknown device": CommandMessage(ts=now, device="pump-99", command="start"),
        "expired": CommandMessage(ts=now, device="pump-1", command="start", expires_at=now - timedelta(seconds=1)),
        NO_COMMANDS: CommandMessage(ts=now, device="pump-1", command="start", expires_at=now + timedelta(minutes=5)),
    }
    sender = MqttRecorder(mqtt_url, f"sender-{site}")
    try:
        for command in commands.values():
            sender.client.publish(topic(site, gateway, Kind.COMMAND), encode(command), qos=1).wait_for_publish(5)
        sender.client.publish(topic(site, gateway, Kind.COMMAND), b"not json", qos=1).wait_for_publish(5)
    finally:
        sender.close()
    acks = await until(lambda: len(recorder.of_kind("cmd/ack")) >= 3 and recorder.of_kind("cmd/ack"))
    by_command = {a.json()["command_id"]: a.json() for a in acks}
    for reason, command in commands.items():
        ack = by_command[str(command.id)]
        assert ack["status"] == "rejected" and ack["reason"] == reason


def test_last_will_says_offline_when_the_connection_dies(
    tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder
) -> None:
    site, gateway = unique_id, f"{unique_id}-gw"
    config = write_gateway_config(tmp_path, [], site=site, gateway=gateway)
    mqtt_recorder.subscribe(topic(site, gateway, Kind.STATUS))
    mqtt_recorder.subscribe(topic(site, gateway, Kind.BIRTH))

    async def run() -> None:
        agent = Agent(EdgeSettings(mqtt_url=mqtt_url, config=config))
        await agent.start()
        try:
            await until(lambda: [m.json()["state"] for m in mqtt_recorder.of_kind("status")] == ["online"])
            # Cut the TCP connection under paho, as a crash or a network failure would: no DISCONNECT.
            agent.uplink.client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
            await until(lambda: len(mqtt_recorder.of_kind("status")) >= 3)
        finally:
            await agent.stop()

    asyncio.run(run())
    statuses = [m.json() for m in mqtt_recorder.of_kind("status")]
    assert [(s["state"], s.get("reason")) for s in statuses[:3]] == [
        ("online", None),
        ("offline", "connection lost"),  # the broker published the will
        ("online", None),  # the agent reconnected by itself
    ]
    assert len(mqtt_recorder.of_kind("birth")) >= 2  # announced again on the reconnect


def test_run_agent_stops_cleanly_on_sigterm(tmp_path: Path, mqtt_url: str, unique_id: str) -> None:
    site, gateway = unique_id, f"{unique_id}-gw"
    config = write_gateway_config(tmp_path, [], site=site, gateway=gateway)
    recorder = MqttRecorder(mqtt_url, f"recorder-{unique_id}")
    recorder.subscribe(topic(site, gateway, Kind.STATUS))
    env = os.environ | {"COMMUNITY_MQTT_URL": mqtt_url, "COMMUNITY_EDGE_CONFIG": str(config)}
    code = "from edge.agent import run_agent; from edge.settings import EdgeSettings; run_agent(EdgeSettings())"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO)
    try:
        recorder.wait_for(lambda r: [m.json()["state"] for m in r.of_kind("status")] == ["online"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        recorder.wait_for(lambda r: len(r.of_kind("status")) >= 2)
    finally:
        if proc.poll() is None:
            proc.kill()
        recorder.close()
    last = recorder.of_kind("status")[-1].json()
    assert (last["state"], last["reason"]) == ("offline", "shutdown")


def test_alarms_raised_while_the_broker_is_away_arrive_when_it_is_back(tmp_path: Path, unique_id: str) -> None:
    """The rules run at the edge; what they raise waits in the outbox until the broker answers."""
    scenario_path, site, gateway = site_files(tmp_path, unique_id)
    scenario = load_scenario(scenario_path)
    broker = MosquittoProcess(tmp_path / "mosquitto", free_port())
    recorder_id = f"recorder-{unique_id}"
    # A persistent session for the recorder, so the broker keeps what arrives while it is away.
    broker.start()
    recorder = MqttRecorder(broker.url, recorder_id, clean_session=False)
    recorder.subscribe(f"community/v1/{site}/{gateway}/alarm")
    recorder.close()
    broker.stop()

    async def run() -> None:
        async with Simulation(scenario, broker.url) as sim:
            agent = Agent(EdgeSettings(mqtt_url=broker.url), gateway_config=scenario.gateway, backoff_cap=0.5)
            await agent.start()
            try:
                sim.set("pump-1", "fault_code", 5)
                await until(lambda: "pump_fault" in agent.rules["pump-1"].active())
                assert not agent.uplink.connected.is_set()
                assert agent.outbox.pending() >= 1
                await asyncio.to_thread(broker.start)
                await until(agent.uplink.connected.is_set)
                await until(lambda: agent.outbox.pending() == 0)
            finally:
                await agent.stop()

    try:
        asyncio.run(run())
        recorder = MqttRecorder(broker.url, recorder_id, clean_session=False)
        try:
            alarm = recorder.wait_for(lambda r: r.of_kind("alarm"))[0].json()
        finally:
            recorder.close()
    finally:
        broker.stop()
    assert (alarm["device"], alarm["rule"], alarm["action"], alarm["value"]) == ("pump-1", "pump_fault", "raise", 5)
