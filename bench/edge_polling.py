"""The edge agent polling a fleet of simulated Modbus devices: points and requests per second, and its CPU.

One agent (`edge.agent.Agent`: pollers on shared buses, alarm rules, the durable outbox, the MQTT
uplink to a real Mosquitto) polls `--devices` simulated devices of `--registers` adjacent
holding registers each, `--units` unit ids behind each simulated Modbus TCP gateway. The devices
are served by a process of their own (`serve` below) and the published telemetry is counted by
another (`count`), so the CPU figure is the agent's alone: the benchmark process *is* the agent.

Runs, each `--seconds` long after every device has answered and a warm-up:

1. planned reads at `--period` (default 0.2 s): each device's registers in one request;
2. the baseline: the same map at the same period read one register per request (no planner);
3. planned reads at `--fast-period` (default 0.05 s).

For each: data points read and published per second, Modbus requests per second, polls per
second against the target (devices / period), poll latency, and the agent's CPU seconds per
second of wall time (psutil, user + system, every thread: asyncio loop, outbox writer, paho).
The simulator's CPU is printed too: when it nears one core, it is the limit, not the agent.

    .venv/bin/python bench/edge_polling.py [--devices 100] [--registers 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from community.broker import MosquittoProcess, free_port  # noqa: E402
from contract.gateway_config import LoadedGatewayConfig, load_gateway_config  # noqa: E402
from contract.topics import ROOT, Kind  # noqa: E402


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the fleet ---------------------------------------------------------------------------------


def write_fleet(folder: Path, *, devices: int, registers: int, units: int, ports: list[int], period: float,
                gateway: str) -> Path:  # fmt: skip
    """A profile of `registers` adjacent uint16 holding registers and a gateway config of `devices` of it."""
    profiles = folder / "profiles"
    profiles.mkdir(exist_ok=True)
    profile = {
        "name": "Benchmark device",
        "protocol": "modbus",
        "timeout": 1.0,
        "metrics": [
            {"name": f"r{i}", "table": "holding_register", "address": i, "type": "uint16"} for i in range(registers)
        ],
    }
    (profiles / "bench-device.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    config = {
        "site": {"id": "bench-site", "name": "Benchmark", "timezone": "UTC"},
        "gateway": {"id": gateway, "name": gateway},
        "profiles_dir": str(profiles),
        "devices": [
            {
                "name": f"dev-{i:03d}",
                "profile": "bench-device",
                "modbus": {"host": "127.0.0.1", "port": ports[i // units], "unit": 1 + i % units},
                "poll_interval": period,
            }
            for i in range(devices)
        ],
    }
    path = folder / f"{gateway}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- child processes: the devices and the counter ------------------------------------------------


def serve(config: str) -> None:
    """Serve the config's devices until stdin closes; values change every second."""
    from simulator.modbus_server import ModbusSimulation

    loaded = load_gateway_config(config)

    async def run() -> None:
        async with ModbusSimulation(loaded) as sim:
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            closed = asyncio.Event()
            loop.add_reader(sys.stdin.fileno(), closed.set)
            tick = 0
            while not closed.is_set():
                tick += 1
                for device in sim.devices.values():
                    device.set("r0", tick % 65536)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), 1.0)

    asyncio.run(run())


def count(url: str) -> None:
    """Count telemetry points arriving at the broker; print `points messages` every 0.25 s."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from contract.urls import parse_mqtt_url

    endpoint = parse_mqtt_url(url)
    totals = [0, 0]
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        points = sum(len(r["values"]) for r in json.loads(message.payload)["readings"])
        with lock:
            totals[0] += points
            totals[1] += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-counter-{os.getpid()}")
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(f"{ROOT}/+/+/{Kind.TELEMETRY.value}", qos=1)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    while True:
        time.sleep(0.25)
        with lock:
            print(f"{totals[0]} {totals[1]}", flush=True)


class Counter:
    """The `count` child, read from a thread: the latest totals."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "count", url], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        self.points = 0
        self.messages = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            points, messages = line.split()
            self.points, self.messages = int(points), int(messages)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- one run -------------------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    period: float
    devices: int
    seconds: float
    points_read: int
    points_published: int
    requests: int
    polls: int
    polls_failed: int
    agent_cpu: float
    sim_cpu: float
    latency_mean_ms: float
    latency_max_ms: float

    def rate(self, n: float) -> float:
        return n / self.seconds

    @property
    def target_polls(self) -> float:
        return self.devices / self.period

    def line(self) -> str:
        return (
            f"{self.name:<44} {self.rate(self.points_read):>9,.0f} {self.rate(self.points_published):>9,.0f} "
            f"{self.rate(self.requests):>8,.0f} {self.rate(self.polls):>7,.0f}/{self.target_polls:<6,.0f} "
            f"{self.latency_mean_ms:>6.1f}/{self.latency_max_ms:<6.0f} {self.agent_cpu / self.seconds:>6.2f} "
            f"{self.sim_cpu / self.seconds:>6.2f}"
        )


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure(name: str, loaded: LoadedGatewayConfig, *, url: str, folder: Path, plan: bool, seconds: float,
                  counter: Counter, sim: psutil.Process, period: float) -> Figures:  # fmt: skip
    from edge.agent import Agent
    from edge.drivers.modbus.poller import _one_per_metric
    from edge.settings import EdgeSettings

    settings = EdgeSettings(mqtt_url=url, outbox_path=folder / f"outbox-{loaded.config.gateway.id}.sqlite3")
    agent = Agent(settings, gateway_config=loaded)
    if not plan:
        for poller in agent.pollers.values():
            poller.requests = _one_per_metric(poller.profile)
    me = psutil.Process()
    await agent.start()
    try:
        deadline = time.monotonic() + 60
        while not all(p.online for p in agent.pollers.values()):
            if time.monotonic() > deadline:
                offline = [n for n, p in agent.pollers.items() if not p.online]
                raise SystemExit(f"{len(offline)} device(s) never answered: {offline[:5]}")
            await asyncio.sleep(0.2)
        log("  every device answers; warming up")
        await asyncio.sleep(2.0)  # warm-up: schedules settle, the outbox reaches its pace

        def snapshot() -> tuple[float, float, float, int, int, int, int, int]:
            pollers = agent.pollers.values()
            return (
                time.monotonic(), cpu(me), cpu(sim), sum(p.points for p in pollers), counter.points,
                agent.buses.requests, sum(p.polls_ok for p in pollers), sum(p.polls_failed for p in pollers),
            )  # fmt: skip

        before = snapshot()
        await asyncio.sleep(seconds)
        after = snapshot()
        delta = [a - b for a, b in zip(after, before, strict=True)]
        healths = [p.health() for p in agent.pollers.values()]
        log("  measured; stopping the agent")
    finally:
        await agent.stop()
    return Figures(
        name=name, period=period, devices=len(agent.pollers), seconds=delta[0],
        agent_cpu=delta[1], sim_cpu=delta[2], points_read=int(delta[3]), points_published=int(delta[4]),
        requests=int(delta[5]), polls=int(delta[6]), polls_failed=int(delta[7]),
        latency_mean_ms=sum(h.latency_ms_mean or 0 for h in healths) / len(healths),
        latency_max_ms=max(h.latency_ms_max or 0 for h in healths),
    )  # fmt: skip


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {psutil.cpu_count()} logical CPUs, {system}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--registers", type=int, default=10)
    parser.add_argument("--units", type=int, default=10, help="unit ids behind each simulated TCP gateway")
    parser.add_argument("--period", type=float, default=0.2)
    parser.add_argument("--fast-period", type=float, default=0.05)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        folder = Path(tmp)
        ports = [free_port() for _ in range(-(-args.devices // args.units))]
        fleet = {"devices": args.devices, "registers": args.registers, "units": args.units, "ports": ports}
        runs = [
            ("planned", args.period, True),
            ("baseline: one register per request", args.period, False),
            ("planned, fast", args.fast_period, True),
        ]
        configs = [write_fleet(folder, period=p, gateway=f"gw-bench-{i}", **fleet) for i, (_n, p, _) in enumerate(runs)]
        broker = MosquittoProcess(folder / "mosquitto").start()
        sim = subprocess.Popen(
            [sys.executable, __file__, "serve", str(configs[0])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, cwd=REPO_ROOT,
        )  # fmt: skip
        counter = Counter(broker.url)
        results: list[Figures] = []
        try:
            assert sim.stdout is not None
            if sim.stdout.readline().strip() != "ready":
                raise SystemExit("the simulated devices did not start")
            log(f"{args.devices} devices x {args.registers} registers, {len(ports)} gateways of {args.units} units")
            for (name, period, plan), config in zip(runs, configs, strict=True):
                log(f"run: {name}, every {period:g} s, {args.seconds:g} s ...")
                loaded = load_gateway_config(config)
                figures = asyncio.run(
                    measure(f"{name} ({period * 1000:g} ms)", loaded, url=broker.url, folder=folder, plan=plan,
                            seconds=args.seconds, counter=counter, sim=psutil.Process(sim.pid), period=period)
                )  # fmt: skip
                results.append(figures)
        finally:
            counter.stop()
            if sim.stdin is not None:
                sim.stdin.close()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.send_signal(signal.SIGKILL)
            broker.stop()

    print(f"machine: {machine()}")
    print(f"{args.devices} devices x {args.registers} registers, {len(ports)} simulated gateways x {args.units} units")
    print(
        f"{'run':<44} {'read/s':>9} {'publ./s':>9} {'req/s':>8} {'polls/s /target':>14} "
        f"{'lat ms mean/max':>14} {'agent':>6} {'sim':>6}   (points, requests; CPU in cores)"
    )
    for figures in results:
        print(figures.line())
    planned, baseline, fast = results
    ms = [1e6 * f.agent_cpu / max(f.points_read, 1) for f in results]  # CPU ms per 1,000 points
    print(f"agent CPU per 1,000 points: planned {ms[0]:.1f} ms, baseline {ms[1]:.1f} ms, fast {ms[2]:.1f} ms")
    fewer = baseline.requests / max(planned.requests, 1)
    less = (baseline.agent_cpu / baseline.seconds) / max(planned.agent_cpu / planned.seconds, 1e-9)
    print(f"planner vs one register per request: {fewer:.1f}x fewer requests, {less:.1f}x less agent CPU")
    one_core = [f.rate(f.points_read) / max(f.agent_cpu / f.seconds, 1e-9) for f in results]
    print(
        f"points/s per agent core: planned {one_core[0]:,.0f}, fast {one_core[2]:,.0f} (target: >= 5,000 on one core)"
    )
    pairs = [
        ("planned_points_per_s", planned.rate(planned.points_read)),
        ("planned_published_per_s", planned.rate(planned.points_published)),
        ("planned_requests_per_s", planned.rate(planned.requests)),
        ("planned_agent_cores", planned.agent_cpu / planned.seconds),
        ("baseline_points_per_s", baseline.rate(baseline.points_read)),
        ("baseline_requests_per_s", baseline.rate(baseline.requests)),
        ("baseline_agent_cores", baseline.agent_cpu / baseline.seconds),
        ("fast_points_per_s", fast.rate(fast.points_read)),
        ("fast_published_per_s", fast.rate(fast.points_published)),
        ("fast_polls_per_s", fast.rate(fast.polls)),
        ("fast_agent_cores", fast.agent_cpu / fast.seconds),
        ("fast_sim_cores", fast.sim_cpu / fast.seconds),
    ]
    print(" ".join(f"{k}={v:.3f}" if v < 100 else f"{k}={v:.0f}" for k, v in pairs))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 2 and sys.argv[1] == "count":
        count(sys.argv[2])
    else:
        main()
