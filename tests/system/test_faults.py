"""Fault tests of the whole chain, with the data counted end to end in PostgreSQL.

Every part runs as it does in production, each in its own process through the CLI: Mosquitto,
`community cloud --role ingest`, `community edge`; the devices are pymodbus servers in this
process whose `count` register goes up by one on every request they answer. Each poll therefore
reads a new number, and per device the stored values must be 1, 2, 3, ... N: a missing number
is a lost reading, a repeated one a doubled reading. At the end each test stops the devices from
answering (the count freezes at N) and waits for the database to hold exactly 1..N.

Outages last a couple of seconds; reconnection delays are capped at 1 s by settings
(`COMMUNITY_RECONNECT_MAX_DELAY`), so each test takes seconds.
"""

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from cloud.storage.migrate import upgrade
from community.broker import MosquittoProcess, free_port
from community.embedded_db import EmbeddedPostgres
from contract.profiles import ModbusProfile, load_profiles
from contract.topics import UPLINK_KINDS, Kind, cloud_subscription
from simulator.modbus_server import SimulatedModbusDevice, SimulatedModbusServer
from tests.edge.conftest import MqttRecorder

COUNTER_PROFILE = """\
name: Counting test device
protocol: modbus
poll_interval: 0.05
timeout: 0.5
metrics:
  - {name: count, table: holding_register, address: 0, type: uint32}
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """A deadline for something to happen, not a measure of how fast."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout:g} s")
        time.sleep(0.1)
    return result


class CountingDevice(SimulatedModbusDevice):
    """A device whose `count` goes up by one on every request it answers."""

    async def _action(self, function_code: int, *args: Any) -> Any:
        if self.answering:
            self.set("count", int(self.get("count")) + 1)
        return await super()._action(function_code, *args)

    @property
    def count(self) -> int:
        return int(self.get("count"))


class Devices:
    """Counting devices behind pymodbus servers (one per port) on an event loop of their own."""

    def __init__(self, profile: ModbusProfile, ports: dict[str, int]) -> None:
        self.devices = {name: CountingDevice(name, 1, profile) for name in ports}
        self.servers = {
            name: SimulatedModbusServer("127.0.0.1", port, [self.devices[name]]) for name, port in ports.items()
        }
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devices", daemon=True)
        self._thread.start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.servers):
            self._run(self.servers[key].start())

    def stop(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.servers):
            self._run(self.servers[key].stop())

    def freeze(self) -> dict[str, int]:
        """Stop answering (so the counts stop), and say where each count stopped."""

        async def silence() -> None:
            for device in self.devices.values():
                device.stop_answering()

        self._run(silence())
        time.sleep(0.1)  # an answer already on its way is read by the agent as usual
        return {name: device.count for name, device in self.devices.items()}

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Process:
    """One CLI process of the platform, with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Process":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "community", *self.args],
            env={**os.environ, **self.env},
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Stack:
    """Broker, ingest, agent and devices of one fault test; the database is given."""

    def __init__(self, tmp: Path, database_url: str, unique_id: str, device_names: tuple[str, ...]) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.site, self.gateway = f"s{unique_id}", f"g{unique_id}"
        profiles = tmp / "profiles"
        profiles.mkdir()
        (profiles / "counter.yaml").write_text(COUNTER_PROFILE)
        profile = load_profiles(profiles)["counter"]
        assert isinstance(profile, ModbusProfile)
        ports = {name: free_port() for name in device_names}
        config = {
            "site": {"id": self.site, "name": "Fault site", "timezone": "UTC"},
            "gateway": {"id": self.gateway, "name": "fault gateway"},
            "profiles_dir": str(profiles),
            "telemetry": {"max_points": 50, "max_delay": 0.2},
            "devices": [
                {"name": name, "profile": "counter", "modbus": {"host": "127.0.0.1", "port": port, "unit": 1}}
                for name, port in ports.items()
            ],
        }
        (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
        self.outbox = tmp / "outbox.sqlite3"
        self.ingest_id = f"ingest-{unique_id}"
        self.broker = MosquittoProcess(tmp / "mosquitto", free_port())
        self.devices = Devices(profile, ports)
        mqtt = {"MQTT_URL": self.broker.url, "COMMUNITY_MQTT_URL": self.broker.url}
        self.ingest = Process(
            "ingest",
            ["cloud", "--role", "ingest"],
            {
                **mqtt,
                "DATABASE_URL": database_url,
                "COMMUNITY_MQTT_CLIENT_ID": self.ingest_id,
                "COMMUNITY_DATA_DIR": str(tmp / "cloud"),
                "COMMUNITY_LAST_VALUES_FLUSH_SECONDS": "0.2",
                "COMMUNITY_WATCHDOG_INTERVAL_SECONDS": "0.2",
            },
            tmp,
        )
        self.agent = Process(
            "edge",
            ["edge", "--config", str(tmp / "gateway.yaml")],
            {
                **mqtt,
                "COMMUNITY_OUTBOX_PATH": str(self.outbox),
                "COMMUNITY_RECONNECT_MAX_DELAY": "1",
                "COMMUNITY_HEALTH_INTERVAL": "1",
                "COMMUNITY_OUTBOX_DRAIN_RATE": "100",
            },
            tmp,
        )

    def start(self) -> "Stack":
        self.broker.start()
        # The ingest's persistent sessions exist before anything is published, so the broker keeps
        # for them what the agent sends while the ingest process is still starting.
        for client_id, kinds in (
            (self.ingest_id, [Kind.TELEMETRY]),
            (f"{self.ingest_id}-control", [k for k in UPLINK_KINDS if k != Kind.TELEMETRY]),
        ):
            session = MqttRecorder(self.broker.url, client_id, clean_session=False)
            for kind in kinds:
                session.subscribe(cloud_subscription(kind))
            session.close()
        self.devices.start()
        self.ingest.start()
        self.agent.start()
        return self

    def close(self) -> None:
        self.agent.stop()
        self.ingest.stop()
        self.devices.close()
        self.broker.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.log.read_text()[-6000:]}" for p in (self.agent, self.ingest))

    # -- what the database holds ---------------------------------------------------------------

    def values(self, device: str) -> list[int]:
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                rows = conn.execute(
                    """SELECT t.value FROM telemetry t JOIN devices d ON d.id = t.device_id
                       WHERE d.gateway_id = %s AND d.name = %s AND t.metric = 'count'""",
                    (self.gateway, device),
                ).fetchall()
        except psycopg.OperationalError:  # the database is away in one of the tests
            return []
        return [int(v) for (v,) in rows]

    def device_online(self, device: str) -> bool | None:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT online FROM devices WHERE gateway_id = %s AND name = %s", (self.gateway, device)
            ).fetchone()
        return row[0] if row else None

    def stored_at_least(self, count: int) -> Callable[[], bool]:
        return lambda: all(len(set(self.values(name))) >= count for name in self.devices.devices)

    def outbox_depth(self) -> int:
        with sqlite3.connect(self.outbox) as db:
            return db.execute("SELECT count(*) FROM messages").fetchone()[0]

    def assert_exactly_once(self, may_miss: int = 0) -> dict[str, int]:
        """Freeze the devices; then per device the database must hold 1..N once each.

        `may_miss`: readings the test allows to be lost (one per SIGKILL of the agent; see the test).
        """
        frozen = self.devices.freeze()
        for name, n in frozen.items():

            def complete(name: str = name, n: int = n) -> bool:
                return len(set(range(1, n + 1)) - set(self.values(name))) <= may_miss

            try:
                wait_for(complete, timeout=60, what=f"{name}: 1..{n} stored")
            except BaseException:
                print(self.logs())
                raise
            values = self.values(name)
            doubled = sorted({v for v in values if values.count(v) > 1})
            assert not doubled, f"{name}: stored twice: {doubled[:20]}"
            assert set(values) <= set(range(1, n + 1)), f"{name}: values outside 1..{n}"
            missing = sorted(set(range(1, n + 1)) - set(values))
            assert len(missing) <= may_miss, f"{name}: lost {missing[:20]}"
        return frozen


@pytest.fixture
def stack(tmp_path: Path, database_url: str, unique_id: str) -> Iterator[Stack]:
    s = Stack(tmp_path, database_url, unique_id, ("counter-1", "counter-2")).start()
    try:
        yield s
    finally:
        s.close()


def test_broker_outage_every_point_stored_exactly_once(stack: Stack) -> None:
    wait_for(stack.stored_at_least(20), what="telemetry flowing")
    # the agent's health reports, which go through the outbox like the rest (kept for us by the broker)
    health = MqttRecorder(stack.broker.url, f"health-{stack.gateway}", clean_session=False)
    health.subscribe(f"community/v1/{stack.site}/{stack.gateway}/health")
    health.close()
    stack.broker.stop()
    # the agent keeps polling; what it reads waits in its outbox on disk
    wait_for(lambda: stack.outbox_depth() >= 5, what="the outbox filling during the outage")
    counts = {name: d.count for name, d in stack.devices.devices.items()}
    wait_for(lambda: all(d.count >= counts[n] + 40 for n, d in stack.devices.devices.items()), what="polling on")
    restarted_at = datetime.now(UTC)
    stack.broker.start()
    frozen = stack.assert_exactly_once()
    assert min(frozen.values()) >= max(counts.values()) + 40
    assert stack.agent.alive() and stack.ingest.alive()
    health = MqttRecorder(stack.broker.url, f"health-{stack.gateway}", clean_session=False)
    try:
        reports = [m.json() for m in health.wait_for(lambda r: len(r.of_kind("health")) >= 3 and r.of_kind("health"))]
    finally:
        health.close()
    # made during the outage (before the devices were frozen at the end): the outbox held messages,
    # nothing was dropped, both devices polled
    during = [r for r in reports if datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) < restarted_at]
    assert during, "no health report made during the outage"
    assert max(r["outbox"]["depth"] for r in during) > 0
    assert all(r["outbox"].get("dropped_messages", 0) == 0 for r in reports)
    last = during[-1]
    assert last["uptime_s"] > 0
    assert {d["device"]: d["online"] for d in last["devices"]} == {"counter-1": True, "counter-2": True}
    assert all(d["polls_ok"] > 0 for d in last["devices"])


def test_agent_sigkill_loses_nothing_read_and_doubles_nothing(stack: Stack) -> None:
    kills = 3
    for i in range(kills):
        wait_for(stack.stored_at_least(20 * (i + 1)), what="telemetry flowing")
        time.sleep(random.uniform(0, 0.3))  # anywhere in the poll / commit / publish cycle
        stack.agent.kill()
        stack.agent.start()
    wait_for(stack.stored_at_least(20 * (kills + 1)), what="telemetry flowing after the restarts")
    # Once more while the broker is frozen (SIGSTOP): what the agent handed to paho is on the wire
    # and unacknowledged at the kill, so only the outbox file still has it.
    kills += 1
    assert stack.broker.proc is not None
    stack.broker.proc.send_signal(signal.SIGSTOP)
    try:
        depth = stack.outbox_depth()
        wait_for(lambda: stack.outbox_depth() >= depth + 5, what="messages waiting for PUBACKs")
        stack.agent.kill()
        stack.agent.start()
    finally:
        stack.broker.proc.send_signal(signal.SIGCONT)
    wait_for(stack.stored_at_least(20 * (kills + 1)), what="telemetry flowing after the last restart")
    # One reading per device per kill may be missing: the one in flight at the SIGKILL. A poll's answer is
    # on disk one group commit (a few ms) after it arrives, and the next request goes out a poll
    # interval (50 ms) later, so at the instant of the kill at most one reading per device is either
    # a request the device answered (and counted) but the agent never received, or an answer
    # received and not yet committed. Everything committed is sent after the restart, and what the
    # broker had already received is sent again with its id and dropped by the cloud.
    stack.assert_exactly_once(may_miss=kills)


def test_ingest_sigkill_while_gateways_publish_loses_nothing(stack: Stack) -> None:
    wait_for(stack.stored_at_least(20), what="telemetry flowing")
    stack.ingest.kill()
    before = {name: d.count for name, d in stack.devices.devices.items()}
    # the agent keeps publishing; the broker queues it for the ingest's persistent session
    wait_for(lambda: all(d.count >= before[n] + 40 for n, d in stack.devices.devices.items()), what="polling on")
    stack.ingest.start()
    frozen = stack.assert_exactly_once()
    assert min(frozen.values()) >= max(before.values()) + 40


def test_modbus_device_unplugged_goes_offline_and_comes_back_without_a_restart(stack: Stack) -> None:
    wait_for(stack.stored_at_least(10), what="telemetry flowing")
    wait_for(lambda: stack.device_online("counter-1") is True, what="counter-1 online")
    agent_pid = stack.agent.pid
    stack.devices.stop("counter-1")  # the server goes away: connections refused
    wait_for(lambda: stack.device_online("counter-1") is False, what="counter-1 reported offline")
    while_away = set(stack.values("counter-1"))
    other_before = len(stack.values("counter-2"))
    wait_for(lambda: len(stack.values("counter-2")) >= other_before + 20, what="counter-2 polled meanwhile")
    stack.devices.start("counter-1")
    wait_for(lambda: stack.device_online("counter-1") is True, what="counter-1 back online")
    wait_for(lambda: len(set(stack.values("counter-1")) - while_away) >= 10, what="counter-1 polled again")
    assert stack.agent.alive() and stack.agent.pid == agent_pid  # nothing was restarted
    # a request answered just as its server went away may be missing; nothing is doubled
    stack.assert_exactly_once(may_miss=1)


def test_postgresql_restart_during_ingest_loses_nothing(tmp_path: Path, unique_id: str) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", cleanup="stop").start()
    try:
        url = pg.ensure_database("faults")
        upgrade(url)
        (tmp_path / "stack").mkdir()
        stack = Stack(tmp_path / "stack", url, unique_id, ("counter-1", "counter-2")).start()
        try:
            wait_for(stack.stored_at_least(20), what="telemetry flowing")
            before = {name: d.count for name, d in stack.devices.devices.items()}
            pg.stop()  # the database goes away during ingest
            wait_for(lambda: all(d.count >= before[n] + 40 for n, d in stack.devices.devices.items()), what="polling")
            pg = EmbeddedPostgres(tmp_path / "pg", cleanup="stop").start()  # and comes back
            frozen = stack.assert_exactly_once()
            assert min(frozen.values()) >= max(before.values()) + 40
            assert stack.ingest.alive(), stack.logs()
        finally:
            stack.close()
    finally:
        pg.stop()
