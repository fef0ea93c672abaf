"""Shared Modbus buses against real pymodbus servers: one connection per line, planned reads, health."""

import asyncio

import pytest

from community.broker import free_port
from contract.gateway_config import DeviceConfig, ModbusAddress
from contract.profiles import ModbusProfile, load_profiles
from edge.drivers.modbus.bus import BusPool
from edge.drivers.modbus.planner import plan_reads
from edge.drivers.modbus.poller import ModbusPoller
from simulator.modbus_server import SimulatedModbusDevice, SimulatedModbusServer
from tests.edge.conftest import PROFILES, RecordingSink
from tests.edge.test_poller import until

PUMP = load_profiles(PROFILES)["water-pump"]
assert isinstance(PUMP, ModbusProfile)


def pump(timeout: float = 0.3) -> ModbusProfile:
    return PUMP.model_copy(update={"timeout": timeout})


def device(name: str, address: ModbusAddress, interval: float = 0.05) -> DeviceConfig:
    return DeviceConfig(name=name, profile="water-pump", modbus=address, poll_interval=interval)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_units_behind_one_gateway_share_one_connection_and_read_in_planned_requests() -> None:
    async def run() -> None:
        port = free_port()
        profile = pump()
        sims = [SimulatedModbusDevice(f"pump-{u}", u, profile) for u in (1, 2, 3)]
        for unit, sim in enumerate(sims, start=1):
            sim.set("outlet_pressure", 4.0 + unit / 10)
        server = SimulatedModbusServer("127.0.0.1", port, sims)
        await server.start()
        pool = BusPool(backoff_cap=0.2)
        sink = RecordingSink()
        pollers = [
            ModbusPoller(
                device(f"pump-{u}", ModbusAddress(host="127.0.0.1", port=port, unit=u)),
                profile,
                sink,
                bus=pool.bus_for(ModbusAddress(host="127.0.0.1", port=port, unit=u)),
            )
            for u in (1, 2, 3)
        ]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        try:
            await until(lambda: all(p.polls_ok >= 5 for p in pollers))
        finally:
            await stop(tasks)
            pool.close()
            await server.stop()
        assert len(pool.buses) == 1
        assert server.connections == 1  # one TCP connection for the three units
        for unit in (1, 2, 3):
            assert sink.values_of(f"pump-{unit}")[-1]["outlet_pressure"] == pytest.approx(4.0 + unit / 10)
        # Each poll is the planner's few requests, not one per metric.
        planned = len(plan_reads(profile))
        assert planned < len(profile.metrics)
        polls = sum(p.polls_ok + p.polls_failed for p in pollers)
        in_flight = len(pollers)  # a poll cut short by the cancellation may have sent part of its requests
        assert planned * (polls - in_flight) <= pool.requests <= planned * (polls + in_flight)
        assert sum(s.requests for s in sims) == pool.requests

    asyncio.run(run())


def test_a_silent_unit_on_a_shared_connection_goes_offline_and_the_others_go_on() -> None:
    async def run() -> None:
        port = free_port()
        profile = pump(timeout=0.3)
        silent, healthy = SimulatedModbusDevice("pump-1", 1, profile), SimulatedModbusDevice("pump-2", 2, profile)
        healthy.set("outlet_pressure", 3.9)
        server = SimulatedModbusServer("127.0.0.1", port, [silent, healthy])
        await server.start()
        pool = BusPool(backoff_cap=0.5)
        sink = RecordingSink()
        addresses = [ModbusAddress(host="127.0.0.1", port=port, unit=u) for u in (1, 2)]
        a, b = (
            ModbusPoller(device(f"pump-{u}", addr), profile, sink, bus=pool.bus_for(addr), backoff_cap=0.5)
            for u, addr in zip((1, 2), addresses, strict=True)
        )
        tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        try:
            await until(lambda: a.online is True and b.online is True)
            silent.stop_answering()
            await until(lambda: a.online is False)
            failed_then, healthy_then = a.polls_failed, b.polls_ok
            await until(lambda: a.polls_failed >= failed_then + 3)
            # Each silent attempt held the line for its timeout and then let go: the healthy unit,
            # waiting for the line meanwhile, was polled after each of them and never went offline.
            assert b.polls_ok - healthy_then >= 2
            assert all(online for name, online, _ in sink.states if name == "pump-2")
            assert "no answer within 0.3 s" in (a.last_error or "")
            silent.start_answering()
            await until(lambda: a.online is True)
        finally:
            await stop(tasks)
            pool.close()
            await server.stop()
        assert [s[:2] for s in sink.states if s[0] == "pump-1"] == [
            ("pump-1", True), ("pump-1", False), ("pump-1", True),
        ]  # fmt: skip
        assert server.connections == 1  # one unit's silence is no reason to drop the others' connection
        health = a.health()
        assert health.polls_failed >= 2 and health.polls_ok >= 2
        assert health.success_rate == pytest.approx(health.polls_ok / (health.polls_ok + health.polls_failed))
        assert health.last_error is not None and "no answer" in health.last_error

    asyncio.run(run())


def test_a_gateway_that_is_not_there_takes_its_units_offline_and_they_come_back_when_it_is() -> None:
    async def run() -> None:
        port = free_port()
        profile = pump(timeout=0.3)
        pool = BusPool(backoff_base=0.05, backoff_cap=0.2)
        sink = RecordingSink()
        addresses = [ModbusAddress(host="127.0.0.1", port=port, unit=u) for u in (1, 2)]
        pollers = [
            ModbusPoller(device(f"pump-{u}", addr), profile, sink, bus=pool.bus_for(addr), backoff_cap=0.2)
            for u, addr in zip((1, 2), addresses, strict=True)
        ]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        server = SimulatedModbusServer(
            "127.0.0.1", port, [SimulatedModbusDevice(f"pump-{u}", u, profile) for u in (1, 2)]
        )
        try:
            await until(lambda: all(p.polls_failed >= 3 for p in pollers))
            assert all(p.online is False for p in pollers)
            assert all("cannot connect to 127.0.0.1" in (p.last_error or "") for p in pollers)
            await server.start()  # the gateway is plugged in: no restart of anything on our side
            await until(lambda: all(p.online is True and p.polls_ok >= 2 for p in pollers))
        finally:
            await stop(tasks)
            pool.close()
            await server.stop()
        for name in ("pump-1", "pump-2"):
            assert [s[1] for s in sink.states if s[0] == name] == [False, True]
        assert server.connections == 1

    asyncio.run(run())


def test_health_before_any_poll_and_after_good_ones() -> None:
    async def run() -> None:
        port = free_port()
        profile = pump()
        server = SimulatedModbusServer("127.0.0.1", port, [SimulatedModbusDevice("pump-1", 1, profile)])
        await server.start()
        poller = ModbusPoller(
            device("pump-1", ModbusAddress(host="127.0.0.1", port=port, unit=1)), profile, RecordingSink()
        )
        empty = poller.health()
        assert (empty.online, empty.polls_ok, empty.success_rate, empty.latency_ms_mean) == (None, 0, None, None)
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.polls_ok >= 3)
        finally:
            await stop([task])
            await server.stop()
        health = poller.health()
        assert health.device == "pump-1" and health.online is True and health.polls_failed == 0
        assert health.success_rate == 1.0
        assert health.latency_ms_mean is not None and health.latency_ms_max is not None
        assert 0 < health.latency_ms_mean <= health.latency_ms_max
        assert health.last_error is None

    asyncio.run(run())


def test_one_serial_line_with_two_framings_is_refused() -> None:
    pool = BusPool()
    pool.bus_for(ModbusAddress(serial="/dev/ttyUSB0", unit=1, baudrate=9600))
    pool.bus_for(ModbusAddress(serial="/dev/ttyUSB0", unit=2, baudrate=9600))
    with pytest.raises(ValueError, match=r"/dev/ttyUSB0: framing 19200 8E1 differs from 9600 8N1"):
        pool.bus_for(ModbusAddress(serial="/dev/ttyUSB0", unit=3, baudrate=19200, parity="E"))
    assert list(pool.buses) == ["serial:/dev/ttyUSB0"]
