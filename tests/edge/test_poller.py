"""Modbus pollers against real pymodbus servers: silence means offline, and it delays no one else."""

import asyncio
import logging
from collections.abc import Callable

import pytest

from community.broker import free_port
from contract.gateway_config import DeviceConfig, ModbusAddress
from contract.profiles import ModbusProfile, load_profiles, parse_profile
from edge.drivers.modbus.poller import ModbusPoller
from simulator.modbus_server import SimulatedModbusDevice, SimulatedModbusServer
from tests.edge.conftest import PROFILES, RecordingSink

PUMP = load_profiles(PROFILES)["water-pump"]
assert isinstance(PUMP, ModbusProfile)


def pump_profile(timeout: float = 0.3) -> ModbusProfile:
    return PUMP.model_copy(update={"timeout": timeout})


def config(name: str, port: int, unit: int, interval: float = 0.05) -> DeviceConfig:
    return DeviceConfig(
        name=name, profile="water-pump", modbus=ModbusAddress(host="127.0.0.1", port=port, unit=unit),
        poll_interval=interval,
    )  # fmt: skip


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition; a deadline for it to happen, not a measure of how fast."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.02)


def test_a_silent_device_goes_offline_comes_back_and_never_delays_another() -> None:
    async def run() -> None:
        port = free_port()
        profile = pump_profile(timeout=0.3)
        silent = SimulatedModbusDevice("pump-1", 1, profile)
        healthy = SimulatedModbusDevice("pump-2", 2, profile)
        silent.set("outlet_pressure", 4.2)
        healthy.set("outlet_pressure", 3.9)
        server = SimulatedModbusServer("127.0.0.1", port, [silent, healthy])  # same port, two unit ids
        await server.start()
        sink = RecordingSink()
        a = ModbusPoller(config("pump-1", port, 1), profile, sink, backoff_cap=0.5)
        b = ModbusPoller(config("pump-2", port, 2), profile, sink, backoff_cap=0.5)
        tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        try:
            await until(lambda: a.polls_ok >= 2 and b.polls_ok >= 2)
            assert {s[:2] for s in sink.states} == {("pump-1", True), ("pump-2", True)}

            silent.stop_answering()
            await until(lambda: ("pump-1", False) in [s[:2] for s in sink.states])
            failed_then, healthy_then = a.polls_failed, b.polls_ok
            # Two more attempts on the silent device, each waiting out its timeout...
            await until(lambda: a.polls_failed >= failed_then + 2)
            # ...while the healthy one, polled every 0.05 s, went on: many polls, not one per attempt.
            assert b.polls_ok - healthy_then >= 5
            assert b.online is True and a.online is False
            offline_reasons = [s[2] for s in sink.states if s[:2] == ("pump-1", False)]
            assert len(offline_reasons) == 1  # reported once, not on every failed retry
            assert "no answer" in offline_reasons[0]

            readings_before = len(sink.values_of("pump-1"))
            silent.start_answering()
            await until(lambda: a.online is True)
            await until(lambda: len(sink.values_of("pump-1")) > readings_before)
            assert [s[:2] for s in sink.states if s[0] == "pump-1"] == [
                ("pump-1", True), ("pump-1", False), ("pump-1", True),
            ]  # fmt: skip
            assert sink.values_of("pump-1")[-1]["outlet_pressure"] == 4.2
            assert all(s[1] for s in sink.states if s[0] == "pump-2")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.stop()

    asyncio.run(run())


def test_nothing_listening_is_offline_with_the_reason() -> None:
    async def run() -> None:
        sink = RecordingSink()
        poller = ModbusPoller(config("pump-9", free_port(), 1), pump_profile(), sink, backoff_cap=0.2)
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.polls_failed >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sink.states == [("pump-9", False, sink.states[0][2])]
        assert "cannot connect" in sink.states[0][2]
        assert sink.readings == []

    asyncio.run(run())


def test_a_unit_id_nobody_answers_to_is_offline() -> None:
    async def run() -> None:
        port = free_port()
        server = SimulatedModbusServer("127.0.0.1", port, [SimulatedModbusDevice("pump-1", 1, pump_profile())])
        await server.start()
        sink = RecordingSink()
        poller = ModbusPoller(config("ghost", port, 9), pump_profile(), sink, backoff_cap=0.2)
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.polls_failed >= 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop()
        assert sink.states[0][:2] == ("ghost", False)
        assert "exception 0x04" in sink.states[0][2]

    asyncio.run(run())


def test_a_range_the_device_refuses_is_skipped_and_the_device_stays_online(caplog: pytest.LogCaptureFixture) -> None:
    served = parse_profile(
        {"name": "Small", "protocol": "modbus", "metrics": [
            {"name": "level", "table": "holding_register", "address": 0, "type": "uint16"},
        ]},
        profile_id="small", source="small.yaml",
    )  # fmt: skip
    asked = parse_profile(
        {"name": "Bigger", "protocol": "modbus", "timeout": 0.5, "metrics": [
            {"name": "level", "table": "holding_register", "address": 0, "type": "uint16"},
            {"name": "missing", "table": "input_register", "address": 300, "type": "uint16"},
        ]},
        profile_id="bigger", source="bigger.yaml",
    )  # fmt: skip
    assert isinstance(served, ModbusProfile) and isinstance(asked, ModbusProfile)

    async def run() -> RecordingSink:
        port = free_port()
        device = SimulatedModbusDevice("tank-1", 1, served)
        device.set("level", 77)
        server = SimulatedModbusServer("127.0.0.1", port, [device])
        await server.start()
        sink = RecordingSink()
        cfg = DeviceConfig(name="tank-1", profile="bigger", modbus=ModbusAddress(host="127.0.0.1", port=port, unit=1))
        poller = ModbusPoller(cfg.model_copy(update={"poll_interval": 0.05}), asked, sink)
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.polls_ok >= 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop()
        return sink

    with caplog.at_level(logging.WARNING, logger="edge.drivers.modbus.poller"):
        sink = asyncio.run(run())
    assert sink.states == [("tank-1", True, "first answer")]
    assert all(values == {"level": 77} for values in sink.values_of("tank-1"))
    refusals = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
    assert len(refusals) == 1  # said once, not on every poll
    assert "tank-1" in refusals[0] and "input_register 300" in refusals[0] and "missing" in refusals[0]
