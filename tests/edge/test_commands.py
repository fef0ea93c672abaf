"""Commands at the edge against real pymodbus servers: what each action writes, what is refused, what fails."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from community.broker import free_port
from contract.clock import SystemClock
from contract.gateway_config import ModbusAddress
from contract.messages import CommandAck, CommandMessage, encode
from contract.profiles import ModbusProfile, load_profiles
from contract.topics import Kind, topic
from edge.agent import Agent
from edge.commands import EXPIRED, NO_COMMANDS, UNKNOWN_DEVICE, CommandHandler, ModbusTarget
from edge.drivers.modbus.bus import BusPool
from edge.settings import EdgeSettings
from simulator.modbus_server import SimulatedModbusDevice, SimulatedModbusServer
from simulator.run import Simulation
from simulator.scenario import load_scenario
from tests.edge.conftest import PROFILES, MqttRecorder, modbus_device, write_gateway_config
from tests.edge.test_poller import until

_PROFILES = load_profiles(PROFILES)
PUMP, DOOR = _PROFILES["water-pump"], _PROFILES["door-controller"]
assert isinstance(PUMP, ModbusProfile) and isinstance(DOOR, ModbusProfile)


def with_command(profile: ModbusProfile, name: str, **changes: Any) -> ModbusProfile:
    """The profile with one command changed (a short pulse, another address), and a short timeout."""
    commands = [c.model_copy(update=changes) if c.name == name else c for c in profile.commands]
    return profile.model_copy(update={"commands": commands, "timeout": 0.3})


@dataclass
class Site:
    handler: CommandHandler
    pump: SimulatedModbusDevice
    door: SimulatedModbusDevice
    server: SimulatedModbusServer

    async def run(self, device: str, command: str, params: dict[str, Any] | None = None, **extra: Any) -> CommandAck:
        message = CommandMessage(ts=datetime.now(UTC), device=device, command=command, params=params or {}, **extra)
        ack = await asyncio.wait_for(self.handler.execute(encode(message)), 20)  # never hangs
        assert ack is not None and ack.command_id == message.id
        return ack


@asynccontextmanager
async def site(
    pump: ModbusProfile = PUMP, door: ModbusProfile = DOOR, *, unreachable: bool = False
) -> AsyncIterator[Site]:
    """A water pump (unit 1) and a door controller (unit 2) behind one Modbus TCP gateway."""
    port = free_port()
    pump, door = pump.model_copy(update={"timeout": 0.3}), door.model_copy(update={"timeout": 0.3})
    sims = SimulatedModbusDevice("pump-1", 1, pump), SimulatedModbusDevice("door-1", 2, door)
    server = SimulatedModbusServer("127.0.0.1", port, sims)
    if not unreachable:
        await server.start()
    pool = BusPool(backoff_base=0.05, backoff_cap=0.2)
    targets = {}
    for sim, profile in zip(sims, (pump, door), strict=True):
        address = ModbusAddress(host="127.0.0.1", port=port, unit=sim.unit)
        targets[sim.name] = ModbusTarget(profile, address, pool.bus_for(address))
    handler = CommandHandler({n: t.profile for n, t in targets.items()}, SystemClock(), targets)
    try:
        yield Site(handler, *sims, server)
    finally:
        pool.close()
        await server.stop()


# -- what each action writes -------------------------------------------------------------------


def test_write_register_with_a_fixed_value_and_with_a_scaled_parameter() -> None:
    async def run() -> None:
        async with site() as s:
            s.pump.set_registers("holding_register", 100, [420, 0])
            reset = await s.run("pump-1", "reset_fault")
            assert (reset.status, reset.reason) == ("succeeded", None)
            assert reset.result == {"value": 1.0, "raw": 1}
            assert s.pump.registers("holding_register", 101, 1) == [1]

            setpoint = await s.run("pump-1", "set_pressure", {"pressure": 4.75})
            assert setpoint.status == "succeeded" and setpoint.result == {"value": 4.75, "raw": 475}
            assert s.pump.registers("holding_register", 100, 2) == [475, 1]  # 4.75 bar in hundredths
            assert s.pump.get("pressure_setpoint") == 4.75  # what the poller reads back

    asyncio.run(run())


def test_a_wide_register_is_written_in_one_request_in_the_profiles_word_order() -> None:
    door = with_command(DOOR, "set_unlock_time", type="uint32", word_order="little")
    metrics = [
        m.model_copy(update={"type": "uint32", "word_order": "little"}) if m.name == "unlock_time" else m
        for m in door.metrics
    ]
    door = door.model_copy(update={"metrics": metrics})

    async def run() -> None:
        async with site(door=door) as s:
            before = s.door.requests
            ack = await s.run("door-1", "set_unlock_time", {"seconds": 7.5})
            assert ack.status == "succeeded" and ack.result == {"value": 7.5, "raw": "004B 0000"}
            assert s.door.requests == before + 1  # one write of both registers
            assert s.door.registers("holding_register", 10, 2) == [75, 0]  # low word first
            assert s.door.get("unlock_time") == 7.5

    asyncio.run(run())


def test_write_coil_sets_the_coil() -> None:
    async def run() -> None:
        async with site() as s:
            s.door.set("held_open_alarm", True)
            ack = await s.run("door-1", "silence_buzzer")
            assert ack.status == "succeeded" and ack.result == {"value": False}
            assert s.door.get("held_open_alarm") is False

    asyncio.run(run())


def test_pulse_coil_switches_on_then_off() -> None:
    door = with_command(DOOR, "open_door", pulse=0.5)

    async def run() -> None:
        async with site(door=door) as s:
            seen: list[bool] = []
            task = asyncio.create_task(s.run("door-1", "open_door"))
            while not task.done():
                seen.append(s.door.get("lock_released") is True)
                await asyncio.sleep(0.02)
            ack = task.result()
            assert ack.status == "succeeded" and ack.result == {"pulse_s": 0.5}
            assert any(seen)  # the relay was on during the pulse...
            assert s.door.get("lock_released") is False  # ...and is off again

    asyncio.run(run())


def test_a_cancelled_pulse_still_switches_the_coil_off() -> None:
    door = with_command(DOOR, "open_door", pulse=30)

    async def run() -> None:
        async with site(door=door) as s:
            message = CommandMessage(ts=datetime.now(UTC), device="door-1", command="open_door")
            task = asyncio.create_task(s.handler.execute(encode(message)))
            await until(lambda: s.door.get("lock_released") is True)
            task.cancel()  # the agent stopping in the middle of the pulse
            ack = await task
            assert ack is not None
            assert ack.status == "failed" and "agent stopped" in (ack.reason or "")
            assert s.door.get("lock_released") is False

    asyncio.run(run())


# -- what is refused before anything is written --------------------------------------------------

AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


@pytest.mark.parametrize(
    ("device", "command", "params", "extra", "reason"),
    [
        ("pump-9", "reset_fault", {}, {}, UNKNOWN_DEVICE),
        ("pump-1", "open_door", {}, {}, NO_COMMANDS),
        ("pump-1", "set_pressure", {"pressure": 4.0}, {"expires_at": AN_HOUR_AGO}, EXPIRED),
        ("pump-1", "set_pressure", {}, {}, "missing parameter 'pressure'"),
        ("pump-1", "set_pressure", {"pressure": "high"}, {}, "parameter 'pressure' must be a number, got 'high'"),
        ("pump-1", "set_pressure", {"pressure": True}, {}, "parameter 'pressure' must be a number, got True"),
        ("pump-1", "set_pressure", {"pressure": 6.5}, {}, "parameter 'pressure' 6.5 bar is above the maximum 6 bar"),
        ("pump-1", "set_pressure", {"pressure": 1}, {}, "parameter 'pressure' 1 bar is below the minimum 2 bar"),
        ("pump-1", "set_pressure", {"pressure": 4, "force": True}, {},
         "unknown parameter 'force': set_pressure takes only 'pressure'"),
        ("pump-1", "reset_fault", {"code": 1}, {}, "unknown parameter 'code': reset_fault takes no parameters"),
    ],
)  # fmt: skip
def test_refused_commands_write_nothing(
    device: str, command: str, params: dict[str, Any], extra: dict[str, Any], reason: str
) -> None:
    async def run() -> None:
        async with site() as s:
            before = s.pump.requests + s.door.requests
            ack = await s.run(device, command, params, **extra)
            assert (ack.status, ack.reason) == ("rejected", reason)
            assert s.pump.requests + s.door.requests == before
            assert s.pump.registers("holding_register", 100, 2) == [0, 0]

    asyncio.run(run())


def test_a_value_the_register_cannot_hold_is_refused() -> None:
    pump = with_command(PUMP, "set_pressure", type="int16", scale=0.0001)  # 6 bar would be 60000 > 32767

    async def run() -> None:
        async with site(pump=pump) as s:
            ack = await s.run("pump-1", "set_pressure", {"pressure": 6})
            assert ack.status == "rejected"
            assert ack.reason == "parameter 'pressure': set_pressure: 6 does not fit a int16"

    asyncio.run(run())


def test_a_repeated_command_is_not_run_twice() -> None:
    door = with_command(DOOR, "open_door", pulse=0.3)

    async def run() -> None:
        async with site(door=door) as s:
            payload = encode(CommandMessage(ts=datetime.now(UTC), device="door-1", command="open_door"))
            first = asyncio.create_task(s.handler.execute(payload))
            await until(lambda: s.door.get("lock_released") is True)
            assert await s.handler.execute(payload) is None  # redelivered while running: nothing to say yet
            ack = await first
            requests = s.door.requests
            again = await s.handler.execute(payload)  # redelivered after: the same answer, nothing written
            assert again is ack and ack is not None and ack.status == "succeeded"
            assert s.door.requests == requests

    asyncio.run(run())


def test_not_a_command_is_not_acknowledged() -> None:
    handler = CommandHandler({}, SystemClock())
    assert asyncio.run(handler.execute(b"not json")) is None


# -- what fails, with the reason, without hanging ------------------------------------------------


def test_a_device_that_cannot_be_reached_fails_with_the_reason() -> None:
    async def run() -> None:
        async with site(unreachable=True) as s:
            ack = await s.run("pump-1", "set_pressure", {"pressure": 4.0})
            assert ack.status == "failed"
            assert (ack.reason or "").startswith("device unreachable: cannot connect to 127.0.0.1:")
            ack = await s.run("door-1", "open_door")  # the off-write fails too: still one clear answer
            assert ack.status == "failed" and (ack.reason or "").startswith("device unreachable:")

    asyncio.run(run())


def test_a_silent_device_fails_after_its_timeout_and_the_line_serves_others() -> None:
    async def run() -> None:
        async with site() as s:
            s.pump.stop_answering()
            ack = await s.run("pump-1", "reset_fault")
            assert (ack.status, ack.reason) == ("failed", "device unreachable: no answer within 0.3 s")
            ack = await s.run("door-1", "silence_buzzer")  # same connection, another unit
            assert ack.status == "succeeded"

    asyncio.run(run())


def test_a_write_the_device_refuses_fails_with_the_exception_code() -> None:
    pump = with_command(PUMP, "reset_fault", address=900)  # not in the controller's map

    async def run() -> None:
        async with site(pump=pump) as s:
            ack = await s.run("pump-1", "reset_fault")
            assert ack.status == "failed"
            assert ack.reason == "the device refused the write with Modbus exception 0x02"

    asyncio.run(run())


# -- through the agent ---------------------------------------------------------------------------


def test_a_command_through_the_agent_is_written_and_acknowledged(
    tmp_path: Path, mqtt_url: str, unique_id: str, mqtt_recorder: MqttRecorder
) -> None:
    port = free_port()
    site_id, gateway = unique_id, f"{unique_id}-gw"
    config = write_gateway_config(
        tmp_path,
        [modbus_device("pump-1", "water-pump", port, unit=1), modbus_device("door-1", "door-controller", port, unit=2)],
        site=site_id,
        gateway=gateway,
    )
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(f"gateway_config: {config.name}\ndevices: {{}}\n")
    scenario = load_scenario(scenario_path)
    settings = EdgeSettings(mqtt_url=mqtt_url, outbox_path=tmp_path / "outbox.sqlite3", state_dir=tmp_path)

    async def run() -> None:
        async with Simulation(scenario, mqtt_url) as sim:
            agent = Agent(settings, gateway_config=scenario.gateway, backoff_cap=0.5)
            await agent.start()
            try:
                await until(agent.uplink.connected.is_set)
                mqtt_recorder.subscribe(f"community/v1/{site_id}/{gateway}/#")
                assert list(agent.buses.buses) == [f"tcp:127.0.0.1:{port}"]  # the two units share one bus
                command = CommandMessage(
                    ts=datetime.now(UTC), device="pump-1", command="set_pressure", params={"pressure": 3.5}
                )
                mqtt_recorder.client.publish(topic(site_id, gateway, Kind.COMMAND), encode(command), qos=1)
                acks: Callable[[], list[dict[str, Any]]] = lambda: [  # noqa: E731
                    m.json() for m in mqtt_recorder.of_kind("cmd/ack") if m.json()["command_id"] == str(command.id)
                ]
                await until(acks, timeout=20)
                assert acks()[0]["status"] == "succeeded"
                assert sim.get("pump-1", "pressure_setpoint") == 3.5

                # The poller reads the new setpoint back, and it goes up as telemetry.
                def setpoints() -> list[Any]:
                    batches = [m.json() for m in mqtt_recorder.of_kind("telemetry")]
                    return [r["values"].get("pressure_setpoint") for b in batches for r in b["readings"]]

                await until(lambda: 3.5 in setpoints(), timeout=20)
            finally:
                await agent.stop()

    asyncio.run(run())
