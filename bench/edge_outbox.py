"""The edge outbox after an outage: a backlog of 1,000,000 points built while the broker is away,
then how fast it drains to a real Mosquitto, and the agent's peak memory during the outage.

Two variants, each in a process of its own (so each has its own peak RSS), same readings:

1. durable: `edge.outbox.DurableOutbox` (SQLite, WAL, synchronous=FULL) behind the agent's
   `Uplink`: readings staged on disk and packed into batches of 50 points, a window of
   `--window` messages per lane in paho, the backlog drained with no rate limit (`--rate 0`) so
   the figure is what the outbox can do; the agent's default `COMMUNITY_OUTBOX_DRAIN_RATE` paces it
   far lower on purpose.
2. baseline: the path before the outbox: the same batches handed straight to paho, whose
   in-memory queue holds them until the broker is back (lost on kill -9).

The readings are `--devices` devices of `--registers` points each, polled round robin, until
`--points` points. A persistent QoS 1 subscriber session exists at the broker (as the cloud's
does), so the broker queues what it acknowledges. Drain time: from the broker's start to the
last PUBACK.

    .venv/bin/python bench/edge_outbox.py [--points 1000000] [--devices 100] [--registers 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from community.broker import MosquittoProcess, free_port
from contract.clock import SystemClock
from contract.common import SiteInfo
from contract.messages import BirthMessage, GatewayInfo, Reading, encode
from contract.topics import Kind, cloud_subscription
from edge.batcher import Batcher
from edge.outbox import DurableOutbox
from edge.settings import parse_mqtt_url
from edge.uplink import Uplink

SITE, GATEWAY = "bench-site", "bench-gw"
MAX_POINTS = 50


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def readings(points: int, devices: int, registers: int) -> object:
    """The polls of an outage, made one at a time (as pollers make them)."""
    made, poll = 0, 0
    while made < points:
        for d in range(devices):
            n = min(registers, points - made)
            if n <= 0:
                return
            yield Reading(
                device=f"dev-{d:03d}", ts=datetime.now(UTC), values={f"r{i}": float(poll + i) for i in range(n)}
            )
            made += n
        poll += 1


def make_uplink(url: str, window: int) -> Uplink:
    def birth() -> BirthMessage:
        return BirthMessage(
            ts=datetime.now(UTC),
            site=SiteInfo(id=SITE, name="bench"),
            gateway=GatewayInfo(id=GATEWAY, name="b"),
            devices=[],
        )

    return Uplink(
        parse_mqtt_url(url), SITE, GATEWAY, birth=birth, on_command=lambda _p: None, clock=SystemClock(),
        max_inflight=2 * window + 10, reconnect_max_delay=1,
    )  # fmt: skip


def child(args: argparse.Namespace) -> None:
    """One variant: build the backlog, say so, wait for the broker, drain, report."""
    logging.getLogger("edge.mqtt").setLevel(logging.CRITICAL)  # paho's "not connected" while the broker is away
    uplink = make_uplink(args.url, args.window)
    rss_start = rss_mib()
    outbox: DurableOutbox | None = None
    if args.child == "durable":
        outbox = DurableOutbox(
            Path(args.dir) / "outbox.sqlite3", uplink, SystemClock(),
            max_points=MAX_POINTS, max_delay=1.0, max_bytes=2**34, drain_rate=args.rate, window=args.window,
        )  # fmt: skip
        uplink.on_ack, uplink.on_connected, uplink.on_disconnected = outbox.acked, outbox.connected, outbox.disconnected
        outbox.start()
        uplink.start()
        started = time.perf_counter()
        for i, reading in enumerate(readings(args.points, args.devices, args.registers)):
            outbox.add_reading(reading)
            if i % 1000 == 0:
                while outbox.queued() > 5000:  # a poller waits for the disk rather than grow the queue
                    time.sleep(0.001)
        expected = -(-args.points // MAX_POINTS)  # readings are split to fill every message
        while outbox.pending() < expected:  # the writer thread has packed and committed them all
            time.sleep(0.01)
        built = time.perf_counter() - started
        messages = outbox.pending()
        held = args.points  # every point is on disk (the outbox's bound is set far above the backlog)
    else:
        batcher = Batcher(MAX_POINTS, 1.0, SystemClock(), lambda b: uplink.publish(Kind.TELEMETRY, encode(b)))
        uplink.start()
        started = time.perf_counter()
        for reading in readings(args.points, args.devices, args.registers):
            batcher.add(reading)
        batcher.flush()
        built = time.perf_counter() - started
        messages = uplink.unacked()
        held = messages * MAX_POINTS  # paho refuses a message once its 65,535 message ids are taken
    outage = {
        "built_s": built,
        "messages": messages,
        "points": held,
        "rss_outage_mib": rss_mib(),
        "peak_rss_outage_mib": peak_rss_mib(),
    }
    print(json.dumps({"event": "built", **outage}), flush=True)
    sys.stdin.readline()  # the parent has started the broker
    uplink.connected.wait(args.timeout)  # the drain is timed from the connect (not paho's reconnect delay)
    t0 = time.perf_counter()
    drained = outbox.wait_drained(args.timeout) if outbox is not None else uplink.wait_delivered(args.timeout)
    drain = time.perf_counter() - t0
    result = {
        "event": "drained", "drained": drained, "drain_s": drain, "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(), **outage,
    }  # fmt: skip
    if outbox is not None:
        outbox.close()
    uplink.stop()
    print(json.dumps(result), flush=True)


def prepare_subscriber(url: str) -> None:
    """A persistent QoS 1 session for the telemetry, as the cloud's ingest keeps; not consuming."""
    endpoint = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-cloud", clean_session=False)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    info = client.subscribe(cloud_subscription(Kind.TELEMETRY), qos=1)
    time.sleep(0.5)
    assert info[0] == mqtt.MQTT_ERR_SUCCESS
    client.disconnect()
    client.loop_stop()


def run_variant(variant: str, args: argparse.Namespace, work: Path) -> dict:
    broker_dir = work / f"mosquitto-{variant}"
    broker = MosquittoProcess(broker_dir, free_port())
    broker.start()
    prepare_subscriber(broker.url)
    broker.stop()
    state = work / variant
    state.mkdir()
    cmd = [
        sys.executable, __file__, "--child", variant, "--url", broker.url, "--dir", str(state),
        "--points", str(args.points), "--devices", str(args.devices), "--registers", str(args.registers),
        "--window", str(args.window), "--rate", str(args.rate), "--timeout", str(args.timeout),
    ]  # fmt: skip
    log(f"{variant}: building a backlog of {args.points:,} points with the broker away")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        built = json.loads(proc.stdout.readline())
        log(f"{variant}: {built['messages']:,} messages waiting after {built['built_s']:.1f} s; starting the broker")
        broker.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()
    if not result["drained"]:
        raise SystemExit(f"{variant}: not drained within {args.timeout} s")
    if result["points"] < args.points:
        log(f"{variant}: only {result['points']:,} of {args.points:,} points were kept during the outage")
    return result


def machine() -> str:
    cpu = ""
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        cpu = f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPU(s)"
    return f"{cpu}; {' '.join(platform.uname())}; Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--registers", type=int, default=10)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="durable backlog drain rate, messages/s (0: no limit)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--child", choices=["durable", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if shutil.which("mosquitto") is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        results = {v: run_variant(v, args, Path(tmp)) for v in ("durable", "baseline")}
    print(f"machine: {machine()}")
    print(
        f"backlog: {args.points:,} points, {args.devices} devices x {args.registers} registers, {MAX_POINTS} a message"
    )
    heads = ("variant", "messages", "points kept", "build s", "drain s", "msg/s", "points/s", "RSS outage MiB")
    widths = (9, 12, 8, 8, 8, 10, 15, 13)
    heads += ("peak RSS MiB",)
    print(f"{heads[0]:10} " + " ".join(f"{h:>{w}}" for h, w in zip(heads[1:], widths, strict=True)))
    for name, r in results.items():
        cells = (
            f"{r['messages']:>9,}", f"{r['points']:>12,}", f"{r['built_s']:>8.1f}", f"{r['drain_s']:>8.1f}",
            f"{r['messages'] / r['drain_s']:>8,.0f}", f"{r['points'] / r['drain_s']:>10,.0f}",
            f"{r['peak_rss_outage_mib']:>15.0f}", f"{r['peak_rss_mib']:>13.0f}",
        )  # fmt: skip
        print(f"{name:10} " + " ".join(cells))
    d, b = results["durable"], results["baseline"]
    print(
        f"durable / baseline: drain rate {d['points'] / d['drain_s'] / (b['points'] / b['drain_s']):.2f}x, "
        f"peak RSS during the outage {d['peak_rss_outage_mib'] / b['peak_rss_outage_mib']:.2f}x"
    )
    figures = {
        "durable_points_per_s": round(d["points"] / d["drain_s"]),
        "baseline_points_per_s": round(b["points"] / b["drain_s"]),
        "durable_peak_rss_outage_mib": round(d["peak_rss_outage_mib"]),
        "baseline_peak_rss_outage_mib": round(b["peak_rss_outage_mib"]),
        "durable_build_points_per_s": round(d["points"] / d["built_s"]),
    }
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
