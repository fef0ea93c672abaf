"""What both benchmarks share: the stack they start, the simulated fleet and its messages, a QoS 1
publisher, the ingest process, and the figures they print.

Everything a benchmark starts is registered on a `Stack`, which stops it and removes its temporary
folder on the way out, on an error, on Ctrl-C (SIGINT) and on SIGTERM alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from cloud.domain import registry
from cloud.domain.changes import NOTIFY_CHANNEL
from cloud.storage import telemetry
from cloud.storage.migrate import upgrade
from community.broker import MosquittoProcess
from community.embedded_db import EmbeddedPostgres
from contract import messages, topics
from contract.common import Location, Severity, SiteInfo, TicketKind, Value
from contract.ids import uuid7
from contract.urls import parse_mqtt_url

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The edge's defaults (contract.gateway_config.TelemetryOptions): a batch goes when it holds
#: 50 points or when its first point has waited a second.
MAX_POINTS = messages.DEFAULT_POINTS_PER_MESSAGE
MAX_DELAY = 1.0


def log(text: str) -> None:
    """Progress goes to stderr; stdout keeps the results."""
    print(text, file=sys.stderr, flush=True)


# --- the simulated fleet --------------------------------------------------------------------

# (metric, kind, typical value, spread); kinds: f float, i integer, b flag, c counter
Metric = tuple[str, str, float, float]

PROFILES: dict[str, tuple[float, list[Metric], list[str]]] = {
    # profile: (poll interval in seconds, metrics polled, alarm rules), after device_profiles/*.yaml
    "fire-panel": (
        1.0,
        [(f"zone_{z}_alarm", "b", 0, 0) for z in range(1, 9)]
        + [("fault_word", "i", 0, 0), ("disabled_zones", "i", 0, 0), ("silenced", "b", 0, 0)]
        + [("battery_voltage", "i", 27, 1)],
        ["zone_1_alarm", "zone_2_alarm", "panel_fault", "battery_low"],
    ),
    "elevator": (
        2.0,
        [
            ("floor", "i", 8, 8),
            ("direction", "i", 1, 1),
            ("door_state", "i", 1, 1),
            ("fault_code", "i", 0, 0),
            ("load", "i", 300, 300),
            ("car_speed", "i", 100, 100),
            ("trips", "c", 40_000, 1),
            ("in_service", "b", 1, 0),
            ("passenger_trapped", "b", 0, 0),
            ("inspection_mode", "b", 0, 0),
        ],
        ["passenger_trapped", "elevator_fault", "door_blocked", "overload"],
    ),
    "water-pump": (
        5.0,
        [
            ("outlet_pressure", "f", 4.2, 0.3),
            ("inlet_pressure", "f", 1.1, 0.1),
            ("motor_current", "i", 18, 3),
            ("motor_frequency", "i", 48, 2),
            ("water_temperature", "i", 16, 2),
            ("fault_code", "i", 0, 0),
            ("run_hours", "c", 12_000, 1),
            ("start_count", "c", 3_000, 1),
            ("running", "b", 1, 0),
            ("auto_mode", "b", 1, 0),
            ("pressure_setpoint", "f", 4.2, 0),
        ],
        ["pump_fault", "low_outlet_pressure", "high_motor_current", "dry_running"],
    ),
    "electricity-meter": (
        10.0,
        [
            ("voltage_l1", "f", 230, 4),
            ("voltage_l2", "f", 230, 4),
            ("voltage_l3", "f", 230, 4),
            ("current_l1", "f", 42, 8),
            ("current_l2", "f", 40, 8),
            ("current_l3", "f", 44, 8),
            ("power", "f", 29_000, 4_000),
            ("power_factor", "f", 0.95, 0.03),
            ("frequency", "f", 50, 0.05),
            ("energy_import", "c", 812_345.6, 0.1),
            ("energy_export", "c", 1_234.5, 0.0),
            ("reactive_power", "i", 3_000, 800),
            ("energy_import_wh", "c", 812_345_600, 100),
            ("energy_import_precise", "c", 812_345.6, 0.1),
        ],
        ["undervoltage", "overvoltage", "phase_loss", "overcurrent"],
    ),
    "water-leak-sensor": (
        30.0,
        [("leak", "b", 0, 0), ("battery", "i", 87, 2), ("temperature", "f", 21.5, 1.5), ("rssi", "i", -70, 8)],
        ["water_leak", "low_battery", "sensor_tamper", "sensor_offline"],
    ),
}

#: Devices behind one gateway (a building complex): about 92 points a second between them.
GATEWAY_MIX = {"fire-panel": 3, "elevator": 6, "water-pump": 8, "electricity-meter": 6, "water-leak-sensor": 2}
SITES = 2
GATEWAYS_PER_SITE = 5


@dataclass(frozen=True)
class Device:
    name: str
    profile: str
    building: str
    floor: str


@dataclass(frozen=True)
class Gateway:
    site: str
    id: str
    devices: tuple[Device, ...]

    def topic(self, kind: topics.Kind) -> str:
        return topics.topic(self.site, self.id, kind)


@dataclass(frozen=True)
class Fleet:
    gateways: tuple[Gateway, ...]

    @property
    def devices(self) -> int:
        return sum(len(g.devices) for g in self.gateways)

    @property
    def points_per_second(self) -> float:
        """How many points the whole fleet produces a second of (simulated) real time."""
        return sum(len(PROFILES[d.profile][1]) / PROFILES[d.profile][0] for g in self.gateways for d in g.devices)

    def alarm_pairs(self) -> list[tuple[Gateway, Device, str]]:
        """Every (gateway, device, rule) the fleet can raise: each a different alarm."""
        return [(g, d, rule) for g in self.gateways for d in g.devices for rule in PROFILES[d.profile][2]]


def make_fleet(sites: int = SITES, gateways_per_site: int = GATEWAYS_PER_SITE) -> Fleet:
    """Sites of gateways, each serving the same mix of devices (250 devices by default)."""
    gateways = []
    for s in range(sites):
        site = f"estate-{chr(ord('a') + s)}"
        for g in range(gateways_per_site):
            building = f"B{g + 1}"
            devices = []
            for profile, count in GATEWAY_MIX.items():
                for i in range(count):
                    devices.append(Device(f"{profile}-{i + 1:02d}", profile, building, str(1 + i % 20)))
            gateways.append(Gateway(site, f"{site}-{building.lower()}", tuple(devices)))
    return Fleet(tuple(gateways))


def register_fleet(database_url: str, fleet: Fleet) -> dict[str, dict[str, int]]:
    """Record the fleet as the gateways' birth messages would; returns device ids per gateway."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for gw in fleet.gateways:
            birth = messages.BirthMessage(
                ts=now,
                site=SiteInfo(id=gw.site, name=f"Estate {gw.site[-1].upper()}", timezone="Asia/Shanghai"),
                gateway=messages.GatewayInfo(id=gw.id, name=f"gateway {gw.id}", version="bench"),
                devices=[
                    messages.DeviceInfo(
                        name=d.name,
                        profile=d.profile,
                        protocol="mqtt" if d.profile == "water-leak-sensor" else "modbus",
                        location=Location(building=d.building, floor=d.floor),
                        metrics=[messages.MetricInfo(name=m[0]) for m in PROFILES[d.profile][1]],
                    )
                    for d in gw.devices
                ],
            )
            with conn.transaction():
                registry.record_birth(conn, site=gw.site, gateway=gw.id, birth=birth, now=now)
        ids: dict[str, dict[str, int]] = {}
        for row in conn.execute("SELECT gateway_id, name, id FROM devices"):
            ids.setdefault(row["gateway_id"], {})[row["name"]] = row["id"]
    return ids


@dataclass
class Prepared:
    """One telemetry message, encoded once, published as it is."""

    topic: str
    payload: bytes
    points: int
    batch: messages.TelemetryBatch
    gateway: str


def _value(kind: str, base: float, spread: float, rng: random.Random, step: int) -> Value:
    if kind == "b":
        return bool(base) if rng.random() > 0.002 else not bool(base)
    if kind == "i":
        return round(base + rng.uniform(-spread, spread))
    if kind == "c":
        return round(base + step * spread, 3) if isinstance(base, float) else int(base + step * spread)
    return round(base + rng.gauss(0, spread / 2), 3)


def build_telemetry(fleet: Fleet, points: int, *, seed: int = 7) -> list[Prepared]:
    """Telemetry as the fleet's gateways would send it, oldest first, `points` points or just over.

    Each device is polled at its profile's interval (random phase); each gateway packs the
    readings into messages of at most 50 points, sent when full or a second after their first
    point (the edge's defaults). Ids are UUIDv7 of the moment the message is made. The history
    ends now.
    """
    rng = random.Random(seed)
    span = points / fleet.points_per_second * 1.02 + 2 * MAX_DELAY
    start = datetime.now(UTC) - timedelta(seconds=span)
    out: list[tuple[float, int, Prepared]] = []
    for gi, gw in enumerate(fleet.gateways):
        topic = gw.topic(topics.Kind.TELEMETRY)
        polls: list[tuple[float, int]] = []  # (offset, device index)
        for di, dev in enumerate(gw.devices):
            interval = PROFILES[dev.profile][0]
            t = rng.uniform(0, interval)
            while t < span:
                polls.append((t, di))
                t += interval
        polls.sort()
        steps = [0] * len(gw.devices)
        pending: list[messages.Reading] = []
        pending_points = 0
        first_at = 0.0

        def flush(at: float, gi: int = gi, gw: Gateway = gw, topic: str = topic) -> None:
            nonlocal pending, pending_points
            ts = start + timedelta(seconds=at)
            batch = messages.TelemetryBatch(id=uuid7(int(ts.timestamp() * 1000)), ts=ts, readings=pending)
            out.append((at, gi, Prepared(topic, messages.encode(batch), pending_points, batch, gw.id)))
            pending, pending_points = [], 0

        for t, di in polls:
            if pending and t >= first_at + MAX_DELAY:
                flush(first_at + MAX_DELAY)
            dev = gw.devices[di]
            steps[di] += 1
            values = {m: _value(k, b, s, rng, steps[di]) for m, k, b, s in PROFILES[dev.profile][1]}
            items = list(values.items())
            ts = start + timedelta(seconds=t)
            while items:
                if not pending:
                    first_at = t
                room = MAX_POINTS - pending_points
                part, items = items[:room], items[room:]
                pending.append(messages.Reading(device=dev.name, ts=ts, values=dict(part)))
                pending_points += len(part)
                if pending_points >= MAX_POINTS:
                    flush(t)
        if pending:
            flush(first_at + MAX_DELAY)
    out.sort(key=lambda x: (x[0], x[1]))
    result: list[Prepared] = []
    total = 0
    for _at, _gi, prepared in out:
        if total >= points:
            break
        result.append(prepared)
        total += prepared.points
    return result


def warmup_messages(fleet: Fleet, tag: int) -> list[Prepared]:
    """One small message per gateway naming each of its devices (so the ingest caches every id)."""
    now = datetime.now(UTC)
    result = []
    for gw in fleet.gateways:
        readings = [messages.Reading(device=d.name, ts=now, values={"bench_warmup": tag}) for d in gw.devices]
        batch = messages.TelemetryBatch(ts=now, readings=readings)
        result.append(Prepared(gw.topic(topics.Kind.TELEMETRY), messages.encode(batch), len(readings), batch, gw.id))
    return result


def alarm_message(device: Device, rule: str) -> messages.AlarmMessage:
    """A major repair alarm raised now on `device` (what the alarm benchmarks publish)."""
    return messages.AlarmMessage(
        ts=datetime.now(UTC),
        device=device.name,
        rule=rule,
        action="raise",
        severity=Severity.MAJOR,
        ticket=TicketKind.REPAIR,
        value=1,
        message=f"{rule.replace('_', ' ')} on {device.name}",
    )


def time_range(prepared: Sequence[Prepared]) -> list[datetime]:
    """The earliest and latest reading time: the months whose partitions must exist."""
    times = [r.ts for p in prepared for r in p.batch.readings]
    return [min(times), max(times)] if times else []


def ensure_partitions(database_url: str, times: Sequence[datetime]) -> None:
    """Create the monthly partitions the rows fall in, outside any timing."""
    if not times:
        return
    parts = telemetry.Partitions()
    with psycopg.connect(database_url) as conn:
        parts.load(conn)
    month = telemetry.month_start(min(times))
    months = []
    while month <= max(times):
        months.append(month)
        month = telemetry.next_month(month)
    parts.ensure(database_url, months)


# --- MQTT -----------------------------------------------------------------------------------


def mqtt_client(url: str, client_id: str) -> mqtt.Client:
    """A connected paho client (MQTT 3.1.1, clean session) with its network loop running."""
    endpoint = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(endpoint.host, endpoint.port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise RuntimeError(f"could not connect to MQTT at {url}")
    return client


class Publisher:
    """Publishes at QoS 1 as fast as the broker acknowledges, at most `window` messages in flight.

    No network thread: `publish` writes to the socket at once and the caller's own thread reads
    the acknowledgements (`pump`). With paho's background thread the two threads hand the GIL to
    each other for every message, which caps a publisher at about a quarter of this speed.
    """

    def __init__(self, url: str, client_id: str, *, window: int = 2000) -> None:
        endpoint = parse_mqtt_url(url)
        self.window = window
        self.acked = 0
        self.sent = 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        client.connect(endpoint.host, endpoint.port, keepalive=60)
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not connect to MQTT at {url}")
            client.loop(0.05)
        self.client = client

    def _on_publish(self, *_args: object) -> None:
        self.acked += 1

    def pump(self, timeout: float = 0.0) -> None:
        """Read what the broker sent (acknowledgements) and keep the connection alive."""
        rc = self.client.loop(timeout)
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            raise RuntimeError(f"MQTT publisher lost its connection: {mqtt.error_string(rc)}")

    def publish(self, topic: str, payload: bytes) -> None:
        """Send one message at QoS 1 (written to the socket before this returns, window allowing)."""
        while self.sent - self.acked >= self.window:
            self.pump(0.01)
        self.client.publish(topic, payload, qos=1)
        self.sent += 1
        if self.sent % 200 == 0:
            self.pump()

    def idle(self, seconds: float) -> None:
        """Wait, keeping the connection alive meanwhile."""
        until = time.monotonic() + seconds
        while (now := time.monotonic()) < until:
            self.pump(min(until - now, 0.5))

    def flush(self, timeout: float = 120.0) -> None:
        """Wait until the broker has acknowledged everything sent."""
        deadline = time.monotonic() + timeout
        while self.acked < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker acknowledged {self.acked} of {self.sent} messages")
            self.pump(0.01)

    def publish_all(self, items: Sequence[Prepared], *, min_seconds: float = 0.0) -> tuple[float, float, int]:
        """Publish every item (again and again until `min_seconds` have passed, when given).

        Returns (monotonic time of the first publish, of the last acknowledgement, messages sent).
        """
        base = self.sent
        t0 = time.monotonic()
        while True:
            for item in items:
                self.publish(item.topic, item.payload)
            if time.monotonic() - t0 >= min_seconds:
                break
        self.flush()
        return t0, time.monotonic(), self.sent - base

    def close(self) -> None:
        self.client.disconnect()


def subscriber_main(url: str, topic_filter: str, count: Any, last: Any, ready: Any, stop: Any) -> None:
    """A QoS 1 subscriber in its own process: counts what arrives and when the last one did."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops it in order

    def on_message(_c: object, _u: object, _m: object) -> None:
        count.value += 1
        last.value = time.monotonic()

    client = mqtt_client(url, f"bench-subscriber-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: ready.set()
    client.subscribe(topic_filter, qos=1)
    stop.wait()
    client.disconnect()
    client.loop_stop()


def paced_publisher_main(
    url: str, points_per_s: float, seconds: float, seed: int, ready: Any, go: Any, stop: Any, stats: Any
) -> None:
    """Telemetry at a steady rate from its own process: builds its messages, waits for `go`, then
    publishes them paced by points until `stop` or until they run out.

    stats: [messages, points, first publish, last publish] (shared doubles).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops it in order
    fleet = make_fleet()
    # keep only what is published: the models are not needed here
    prepared = [(p.topic, p.payload, p.points) for p in build_telemetry(fleet, int(points_per_s * seconds), seed=seed)]
    publisher = Publisher(url, f"bench-paced-{uuid.uuid4().hex[:8]}")
    ready.set()
    go.wait()
    t0 = time.monotonic()
    stats[2] = t0
    points = 0
    for topic, payload, count in prepared:
        if stop.is_set():
            break
        due = t0 + points / points_per_s
        while (now := time.monotonic()) < due:
            publisher.pump(min(due - now, 0.01))
        publisher.publish(topic, payload)
        points += count
        stats[0] += 1
        stats[1] = points
        stats[3] = time.monotonic()
    with contextlib.suppress(TimeoutError):
        publisher.flush(10)
    publisher.close()
    stop.wait()


# --- the stack ------------------------------------------------------------------------------


def _raise_interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` and context manager cleans up
    (SIGINT too when started from a shell that had it ignored, as for background jobs)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


class Stack:
    """A fresh, migrated database (embedded PostgreSQL, or a new database on DATABASE_URL's server)
    and, unless `broker` is false, a private Mosquitto running the repository's config; all removed on close."""

    def __init__(self, name: str, *, broker: bool = True) -> None:
        self.name = name
        self.broker = broker
        self._exit = contextlib.ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"community-bench-{name}-"))
        self._exit.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        self.embedded: EmbeddedPostgres | None = None
        self.database_url = ""
        self.mqtt_url = ""
        self.mosquitto: MosquittoProcess | None = None
        self.children: list[Callable[[], None]] = []

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _start(self) -> None:
        admin = os.environ.get("DATABASE_URL") or self.start_embedded(self.tmp / "pg" / "data")
        dbname = f"community_bench_{uuid.uuid4().hex[:10]}"
        self.open_database(admin, dbname)
        if not self.broker:
            log(f"database {dbname} migrated")
            return
        self.mosquitto = MosquittoProcess(self.tmp / "mosquitto")
        self._exit.callback(self.mosquitto.stop)
        self.mosquitto.start()
        self.mqtt_url = self.mosquitto.url
        log(f"database {dbname} migrated; mosquitto on {self.mqtt_url}")

    def start_embedded(self, folder: Path, *, cleanup: str = "delete") -> str:
        """The embedded PostgreSQL started in `folder` and stopped on close; its admin URL."""
        log(f"starting the embedded PostgreSQL in {folder} ...")
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        self.embedded = EmbeddedPostgres(folder, cleanup=cleanup)
        self._exit.callback(self.embedded.stop)
        self.embedded.start()
        return self.embedded.url()

    def open_database(self, admin: str, dbname: str, *, drop: bool = True) -> None:
        """`dbname` on the server of `admin`, created unless it exists (dropped on close with `drop`), migrated."""
        create_database(admin, dbname)
        if drop:
            self._exit.callback(_drop_database, admin, dbname)
        self.database_url = make_conninfo(admin, dbname=dbname)
        upgrade(self.database_url)

    def on_close(self, stop: Callable[[], None]) -> None:
        """Run `stop` on close (before the broker and the database go)."""
        self._exit.callback(stop)

    def close(self) -> None:
        self._exit.close()

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(self.database_url, **kwargs)

    def postgres_pid(self) -> int | None:
        """The postmaster's pid when the server runs on this machine (for CPU figures), else None."""
        if self.embedded is not None:
            with contextlib.suppress(OSError, ValueError):
                return int((self.embedded.data_dir / "postmaster.pid").read_text().split()[0])
            return None
        try:  # DATABASE_URL: our backend's parent is the postmaster, if that backend is a local process
            import psutil

            with self.connect() as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                backend = psutil.Process(int(row[0])) if row else None
                if backend is not None and "postgres" in " ".join(backend.cmdline() or [backend.name()]):
                    return backend.ppid()
        except Exception:  # not local, not visible, or no psutil: no postgres figure
            return None
        return None

    def prepare_phase(self, *, empty: bool = True) -> None:
        """Start a phase from the same state: telemetry emptied (when asked) and a checkpoint done."""
        with self.connect(autocommit=True) as conn:
            if empty:
                conn.execute("TRUNCATE telemetry")
            conn.execute("CHECKPOINT")


def create_database(admin: str, dbname: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _drop_database(admin: str, dbname: str) -> None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


class CloudProcess:
    """`python -m community cloud --role ROLE`, as deployed: its own process, so its own GIL.

    Started in its own session (Ctrl-C reaches the benchmark, which stops it in order) and in the
    temporary folder (no stray `.env`); `prefix_var` names a variable whose value runs it under a
    tool, e.g. BENCH_INGEST_PREFIX="py-spy record -o ingest.svg --".
    """

    def __init__(self, stack: Stack, *, role: str, name: str, env: dict[str, str], prefix_var: str) -> None:
        self.role = role
        self.log_path = stack.tmp / f"{name}.log"
        full_env = dict(os.environ)
        full_env.update(
            DATABASE_URL=stack.database_url,
            COMMUNITY_LOG_LEVEL=full_env.get("COMMUNITY_LOG_LEVEL", "WARNING"),
            COMMUNITY_DATA_DIR=str(stack.tmp / "cloud"),
            **env,
        )
        self._log = self.log_path.open("ab")
        prefix = shlex.split(os.environ.get(prefix_var, ""))
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "community", "cloud", "--role", role],
            cwd=stack.tmp,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.on_close(self.stop)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.role} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # both roles stop cleanly on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class IngestProcess(CloudProcess):
    """The ingest as its own process."""

    def __init__(self, stack: Stack, *, client_id: str) -> None:
        super().__init__(
            stack,
            role="ingest",
            name=client_id,
            env={"MQTT_URL": stack.mqtt_url, "COMMUNITY_MQTT_CLIENT_ID": client_id},
            prefix_var="BENCH_INGEST_PREFIX",
        )
        log(f"  ingest process {self.proc.pid} (log {self.log_path})")


class ThreadIngest:
    """The same IngestWorker inside the benchmark's process (shares its GIL); for comparison."""

    def __init__(self, stack: Stack, *, client_id: str) -> None:
        from cloud.ingest.worker import IngestWorker
        from cloud.settings import CloudSettings

        settings = CloudSettings(
            database_url=stack.database_url, mqtt_url=stack.mqtt_url, mqtt_client_id=client_id, _env_file=None
        )  # type: ignore[call-arg]
        self.worker = IngestWorker(settings, apply_migrations=False).start()
        stack.on_close(self.stop)
        self.pid = os.getpid()

    def check(self) -> None:
        pass

    def tail(self, lines: int = 30) -> str:
        return ""

    def stop(self) -> None:
        self.worker.stop()


def start_ingest(stack: Stack, mode: str) -> IngestProcess | ThreadIngest:
    client_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    if mode == "thread":
        return ThreadIngest(stack, client_id=client_id)
    return IngestProcess(stack, client_id=client_id)


def committed_messages(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM ingest_messages WHERE kind = 'telemetry'").fetchone()
    return int(row[0]) if row else 0


def telemetry_rows(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


def is_committed(conn: psycopg.Connection, message_id: uuid.UUID) -> bool:
    return conn.execute("SELECT 1 FROM ingest_messages WHERE message_id = %s", (message_id,)).fetchone() is not None


def warm_up(stack: Stack, ingest: IngestProcess | ThreadIngest, publisher: Publisher, fleet: Fleet) -> None:
    """Wait until the ingest is subscribed and has resolved every device: one message per gateway
    naming all its devices, sent again until it is committed (messages sent before the ingest
    subscribed are not queued for it)."""
    deadline = time.monotonic() + 60
    tag = 0
    with stack.connect(autocommit=True) as conn:
        while True:
            ingest.check()
            tag += 1
            batch = warmup_messages(fleet, tag)
            publisher.publish_all(batch)
            until = time.monotonic() + 2.0
            while time.monotonic() < until:
                if all(is_committed(conn, p.batch.id) for p in batch):
                    return
                time.sleep(0.05)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ingest committed nothing within 60 s:\n{ingest.tail()}")


def wait_committed(
    conn: psycopg.Connection,
    ingest: IngestProcess | ThreadIngest,
    last: Prepared,
    expected: int,
    *,
    timeout: float,
    interval: float = 0.01,
) -> float:
    """Monotonic time at which all `expected` telemetry messages were first seen committed.

    Watches the last message's id (a primary-key probe, cheap enough to ask every 10 ms), then
    checks the total; if something is still missing, counts until it is there.
    """
    deadline = time.monotonic() + timeout
    while not is_committed(conn, last.batch.id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the last message was not committed within {timeout:.0f} s")
        ingest.check()
        time.sleep(interval)
    done = time.monotonic()
    while committed_messages(conn) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{committed_messages(conn)} of {expected} messages committed after {timeout:.0f} s")
        time.sleep(0.05)
        done = time.monotonic()
    return done


def run_through(
    stack: Stack,
    ingest: IngestProcess | ThreadIngest,
    publisher: Publisher,
    prepared: Sequence[Prepared],
    *,
    timeout: float,
    cpu: CpuMeter | None = None,
) -> dict[str, float]:
    """Publish every message once, as fast as the broker takes them, and time until the ingest has
    committed the last one; checks that exactly their points became rows."""
    with stack.connect(autocommit=True) as conn:
        base_messages = committed_messages(conn)
        base_rows = telemetry_rows(conn)
        if cpu is not None:
            cpu.start()
        t0, acked, sent = publisher.publish_all(prepared)
        log(f"  published {sent} messages in {acked - t0:.1f} s; waiting for the ingest to commit them")
        done = wait_committed(conn, ingest, prepared[-1], base_messages + sent, timeout=timeout)
        if cpu is not None:
            cpu.stop()
        rows = telemetry_rows(conn) - base_rows
    points = sum(p.points for p in prepared)
    if rows != points:
        raise RuntimeError(f"the ingest committed {rows} rows for {points} points")
    return {"messages": sent, "points": points, "seconds": done - t0, "publish_seconds": acked - t0}


# --- CPU accounting -------------------------------------------------------------------------


class AlarmListener(threading.Thread):
    """LISTENs on the changes channel; keeps when each alarm_raised notification arrived (its commit)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(name="alarm-listener", daemon=True)
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        #: message id -> (monotonic and wall time of arrival, alarm id, ticket number)
        self.arrived: dict[str, tuple[float, float, int, str | None]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for note in self.conn.notifies(timeout=0.2):
                at, wall = time.monotonic(), time.time()
                data = json.loads(note.payload)
                if data.get("kind") == "alarm_raised" and data.get("message_id"):
                    self.arrived[data["message_id"]] = (at, wall, data["alarm_id"], data.get("ticket"))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self.conn.close()


class CpuMeter:
    """CPU seconds used by the processes that matter, between start() and stop()."""

    def __init__(self, named: dict[str, int | None], *, postgres: int | None = None) -> None:
        self._named = {k: v for k, v in named.items() if v}
        self._postgres = postgres
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self.cores: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        try:
            import psutil
        except ImportError:
            return {}
        out: dict[str, float] = {}
        for label, pid in self._named.items():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                out[label] = t.user + t.system
        if self._postgres:
            total = 0.0
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(self._postgres)
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        total += t.user + t.system
            out["postgres"] = total
        t = psutil.cpu_times()
        out["_system"] = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        return out

    def start(self) -> None:
        self._start = self._sample()
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        wall = max(time.monotonic() - self._t0, 1e-9)
        # postgres backends that ended in between are not counted: a lower bound for them
        cores = {k: max(end[k] - self._start.get(k, 0.0), 0.0) / wall for k in end}
        system = cores.pop("_system", None)
        if system is not None:
            # everything else on the machine (another job running meanwhile disturbs the figures)
            cores["others"] = max(system - sum(cores.values()), 0.0)
        self.cores = cores
        return cores

    def describe(self) -> str:
        text = ", ".join(f"{k} {v:.2f}" for k, v in self.cores.items())
        if self.cores.get("others", 0.0) > 0.25:
            text += " -- other work on this machine took CPU meanwhile: the figures are disturbed"
        return text


# --- reporting ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model, cores, memory, OS, Python: the table's machine columns."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def versions(stack: Stack) -> dict[str, str]:
    with stack.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    pg = str(row[0]) if row else "unknown"
    mosq = "unknown"
    if stack.mosquitto is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([stack.mosquitto.binary, "-h"], capture_output=True, text=True, timeout=5).stdout
            match = re.search(r"mosquitto version (\S+)", out)
            mosq = match.group(1) if match else mosq
    return {"postgresql": pg, "mosquitto": mosq}


def print_environment(stack: Stack) -> None:
    info = {**machine(), **versions(stack)}
    print("machine: " + json.dumps(info))


def pairs(figures: dict[str, float | int | str]) -> str:
    """The last line of every benchmark: name=value pairs."""

    def fmt(v: float | int | str) -> str:
        if isinstance(v, float):
            return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
        return str(v)

    return " ".join(f"{k}={fmt(v)}" for k, v in figures.items())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]
