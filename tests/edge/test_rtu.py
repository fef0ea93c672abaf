"""Modbus RTU over a serial line, for real: pyserial on pseudo-terminals, pymodbus's serial server.

The line is `simulator.serial_line.VirtualSerialLine` (two ptys cross-connected by a thread, a
null-modem cable in software); the simulator serves RTU on one end, the agent's pollers read the
other, several unit ids on the one line.
"""

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import serial

from contract.gateway_config import DeviceConfig, ModbusAddress, load_gateway_config
from contract.messages import CommandMessage, encode
from contract.profiles import ModbusProfile
from contract.topics import Kind, topic
from edge.agent import Agent
from edge.drivers.modbus.bus import BusPool
from edge.drivers.modbus.poller import ModbusPoller
from edge.settings import EdgeSettings
from simulator.modbus_server import ModbusSimulation
from simulator.run import Simulation
from simulator.scenario import load_scenario
from simulator.serial_line import VirtualSerialLine
from tests.edge.conftest import MqttRecorder, RecordingSink, write_gateway_config
from tests.edge.test_poller import until


def test_the_virtual_line_carries_bytes_both_ways(tmp_path: Path) -> None:
    with VirtualSerialLine(tmp_path / "agent-end", tmp_path / "device-end") as line:
        a = serial.Serial(line.a_path, 19200, timeout=5)
        b = serial.Serial(line.b_path, 19200, timeout=5)
        try:
            frame = bytes(range(256))  # raw: no byte is a control character to the line
            a.write(frame)
            assert b.read(len(frame)) == frame
            b.write(b"\x01\x03\x00\x00")
            assert a.read(4) == b"\x01\x03\x00\x00"
        finally:
            a.close()
            b.close()
    assert not (tmp_path / "agent-end").exists()  # the links go with the line


def rtu_config(tmp_path: Path, line: Path, units: dict[str, int]) -> Path:
    return write_gateway_config(
        tmp_path,
        [
            {
                "name": name,
                "profile": "water-pump",
                "modbus": {"serial": str(line), "unit": unit, "baudrate": 19200, "stopbits": 2},
                "poll_interval": 0.05,
            }
            for name, unit in units.items()
        ],
    )


def test_three_units_on_one_rtu_line_one_falls_silent_and_comes_back(tmp_path: Path) -> None:
    line = tmp_path / "rs485-1"
    loaded = load_gateway_config(rtu_config(tmp_path, line, {"pump-1": 1, "pump-2": 2, "pump-3": 3}))

    async def run() -> None:
        sim = ModbusSimulation(loaded)
        for unit, name in enumerate(("pump-1", "pump-2", "pump-3"), start=1):
            sim.set(name, "outlet_pressure", 4.0 + unit / 10)
            sim.set(name, "fault_code", unit)
        await sim.start()
        assert line.is_symlink()  # the config's path is the agent's end of a virtual line
        pool = BusPool(backoff_base=0.05, backoff_cap=0.3)
        sink = RecordingSink()
        pollers = {}
        for dev in loaded.config.devices:
            profile = loaded.profile_of(dev)
            assert isinstance(profile, ModbusProfile) and dev.modbus is not None
            # the simulated units answer from this process's own event loop: 1 s, not 0.3 s, so that a
            # busy moment of the loop does not pass for a healthy unit's silence (seen once in CI)
            profile = profile.model_copy(update={"timeout": 1.0})
            pollers[dev.name] = ModbusPoller(dev, profile, sink, bus=pool.bus_for(dev.modbus), backoff_cap=0.3)
        tasks = [asyncio.create_task(p.run()) for p in pollers.values()]
        try:
            await until(lambda: all(p.polls_ok >= 3 for p in pollers.values()))
            sim.stop_answering("pump-2")
            await until(lambda: pollers["pump-2"].online is False)
            # while pump-2 stays silent (each poll waits out its timeout on the shared line), the
            # others go on being read
            others = {n: pollers[n].polls_ok for n in ("pump-1", "pump-3")}
            failed = pollers["pump-2"].polls_failed
            await until(
                lambda: (
                    pollers["pump-2"].polls_failed >= failed + 3
                    and all(pollers[n].polls_ok > others[n] for n in others)
                )
            )
            assert pollers["pump-2"].online is False
            sim.set("pump-1", "fault_code", 0)
            sim.start_answering("pump-2")
            await until(lambda: pollers["pump-2"].online is True)
            await until(lambda: sink.values_of("pump-1")[-1]["fault_code"] == 0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.close()
            await sim.stop()
        assert list(pool.buses) == [f"serial:{line}"]
        for unit, name in enumerate(("pump-1", "pump-2", "pump-3"), start=1):
            assert sink.values_of(name)[-1]["outlet_pressure"] == pytest.approx(4.0 + unit / 10)
        assert sink.values_of("pump-3")[-1]["fault_code"] == 3
        assert [s[1] for s in sink.states if s[0] == "pump-2"] == [True, False, True]
        assert all(s[1] for s in sink.states if s[0] != "pump-2")
        assert "no answer within 1 s" in (pollers["pump-2"].last_error or "")
        assert not line.exists()

    asyncio.run(run())


def test_a_unit_nobody_answers_to_on_a_serial_line_is_silent_and_offline(tmp_path: Path) -> None:
    line = tmp_path / "rs485-2"
    loaded = load_gateway_config(rtu_config(tmp_path, line, {"pump-1": 1}))

    async def run() -> None:
        async with ModbusSimulation(loaded):
            pool = BusPool(backoff_cap=0.2)
            sink = RecordingSink()
            profile = loaded.profiles["water-pump"]
            assert isinstance(profile, ModbusProfile)
            ghost = ModbusAddress(serial=str(line), unit=9, baudrate=19200, stopbits=2)
            poller = ModbusPoller(
                DeviceConfig(name="ghost", profile="water-pump", modbus=ghost, poll_interval=0.05),
                profile.model_copy(update={"timeout": 0.2}), sink, bus=pool.bus_for(ghost), backoff_cap=0.2,
            )  # fmt: skip
            task = asyncio.create_task(poller.run())
            try:
                await until(lambda: poller.polls_failed >= 2)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                pool.close()
        assert sink.states == [("ghost", False, sink.states[0][2])]
        assert "no answer within 0.2 s" in sink.states[0][2]

    asyncio.run(run())


def test_a_serial_port_that_does_not_exist_is_offline_with_the_reason(tmp_path: Path) -> None:
    async def run() -> RecordingSink:
        sink = RecordingSink()
        address = ModbusAddress(serial=str(tmp_path / "no-such-tty"), unit=1)
        profile = load_gateway_config(rtu_config(tmp_path, tmp_path / "x", {"pump-1": 1})).profiles["water-pump"]
        assert isinstance(profile, ModbusProfile)
        dev = DeviceConfig(name="pump-1", profile="water-pump", modbus=address, poll_interval=0.05)
        poller = ModbusPoller(dev, profile, sink, backoff_cap=0.1)
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.polls_failed >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return sink

    sink = asyncio.run(run())
    assert len(sink.states) == 1 and sink.states[0][:2] == ("pump-1", False)
    assert f"cannot connect to {tmp_path / 'no-such-tty'}" in sink.states[0][2]


def test_the_agent_reads_and_commands_devices_on_a_simulated_serial_line(
    tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder
) -> None:
    """`community simulate` and `community edge` with one gateway config: RTU end to end, commands included."""
    line = tmp_path / "rs485-3"
    site_id, gateway = unique_id, f"{unique_id}-gw"
    serial_address = {"serial": str(line), "baudrate": 38400}
    config = write_gateway_config(
        tmp_path,
        [
            {"name": name, "profile": profile, "modbus": serial_address | {"unit": unit}, "poll_interval": 0.1}
            for name, profile, unit in (("pump-1", "water-pump", 1), ("door-1", "door-controller", 2))
        ],
        site=site_id,
        gateway=gateway,
        telemetry={"max_points": 50, "max_delay": 0.2},
    )  # fmt: skip
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(
        f"gateway_config: {config.name}\ndevices:\n  pump-1: {{metrics: {{outlet_pressure: 4.2}}}}\n"
    )
    scenario = load_scenario(scenario_path)
    settings = EdgeSettings(mqtt_url=mqtt_url, outbox_path=tmp_path / "outbox.sqlite3", state_dir=tmp_path)

    def values(device: str, metric: str) -> list[Any]:
        batches = [m.json() for m in mqtt_recorder.of_kind("telemetry")]
        return [r["values"].get(metric) for b in batches for r in b["readings"] if r["device"] == device]

    async def run() -> None:
        async with Simulation(scenario, mqtt_url) as sim:
            agent = Agent(settings, gateway_config=scenario.gateway, backoff_cap=0.5)
            await agent.start()
            try:
                mqtt_recorder.subscribe(f"community/v1/{site_id}/{gateway}/#")
                await until(lambda: 4.2 in values("pump-1", "outlet_pressure"))
                assert list(agent.buses.buses) == [f"serial:{line}"]
                command = CommandMessage(
                    ts=datetime.now(UTC), device="door-1", command="set_unlock_time", params={"seconds": 7.5}
                )
                mqtt_recorder.client.publish(topic(site_id, gateway, Kind.COMMAND), encode(command), qos=1)
                await until(lambda: [m for m in mqtt_recorder.of_kind("cmd/ack") if m.json()["status"] == "succeeded"])
                assert sim.get("door-1", "unlock_time") == 7.5
                await until(lambda: 7.5 in values("door-1", "unlock_time"))  # polled back over the line
            finally:
                await agent.stop()

    asyncio.run(run())
