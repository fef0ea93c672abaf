"""Live feed: from a device alarm's MQTT publish at the edge to its arrival at connected screens.

The ingest and the API run as their own processes (`community cloud --role ingest|api`), as
deployed, on a fresh database and a private Mosquitto. For each phase — 1 connected client (the
baseline), then 100 — the benchmark:

1. connects that many server-sent-event clients to GET /api/v1/live (asyncio, raw HTTP, logged in
   as an admin, so each receives every change), plus one real headless chromium page on the guard
   console (Debian's chromium through Playwright);
2. publishes alarm raises (each a different device and rule, each opening a repair ticket) spaced
   out at random, as gateways would;
3. times each alarm from its publish to (a) the `alarm_raised` event read by every SSE client and
   (b) its row appearing in the browser page's alarm list (a MutationObserver notes the time;
   that includes the page fetching the alarm from the API and drawing it).

It also reads the API process's resident memory before and after connecting the clients: the
cost of one connected client. Prints p50/p99 per phase; the last line is name=value pairs.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sys
import time
import urllib.parse
import urllib.request

import harness
import psutil
import psycopg
from harness import Stack, log

from cloud.security.passwords import hash_password
from contract import messages, topics

USER, PASSWORD = "bench-admin", "bench-admin-password"
# the page's own probe: when each alarm row first appears in the list (wall-clock ms)
OBSERVER = """() => {
  window.__arrived = {};
  const list = document.getElementById("alarm-list");
  new MutationObserver(() => {
    const now = Date.now();
    for (const li of list.children) {
      const id = li.dataset.alarmId;
      if (id && !(id in window.__arrived)) window.__arrived[id] = now;
    }
  }).observe(list, { childList: true });
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_admin(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        person = conn.execute("INSERT INTO people (kind, full_name) VALUES ('staff', 'Bench Admin') RETURNING id")
        person_id = person.fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, 'admin', %s)",
            (USER, hash_password(PASSWORD), person_id),
        )


def login(base: str) -> str:
    form = urllib.parse.urlencode({"username": USER, "password": PASSWORD}).encode()
    with urllib.request.urlopen(base + "/api/v1/auth/token", data=form, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


class SseClient:
    """One connected screen, as raw HTTP/1.1 over asyncio: notes when each alarm_raised arrives."""

    def __init__(self, port: int, token: str, arrived: dict[str, list[float]]) -> None:
        self.port, self.token, self.arrived = port, token, arrived
        self.greeted = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.alarm_ids: dict[str, int] = {}
        self.resyncs = 0

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            (
                "GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                f"Authorization: Bearer {self.token}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"live feed answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        buffer = ""
        try:
            while True:
                size_line = await reader.readline()
                if not size_line:
                    return
                size = int(size_line.strip() or b"0", 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    return
                buffer += chunk[:-2].decode()
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self._event(block)
        finally:
            writer.close()

    def _event(self, block: str) -> None:
        at = time.monotonic()
        for line in block.split("\n"):
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            kind = event.get("kind")
            if kind == "hello":
                self.greeted.set()
            elif kind == "resync":
                self.resyncs += 1
            elif kind == "alarm_raised" and event.get("message_id"):
                self.arrived.setdefault(event["message_id"], []).append(at)
                self.alarm_ids[event["message_id"]] = event["alarm_id"]

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def phase(
    *,
    clients: int,
    pairs: list[tuple[harness.Gateway, harness.Device, str]],
    port: int,
    token: str,
    api_pid: int,
    publisher: harness.Publisher,
    browser: object,
    interval: float,
    rng: random.Random,
    probe: harness.AlarmListener,
    database_url: str,
    ingest_pid: int,
) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}"
    with psycopg.connect(database_url) as conn:  # each phase's page starts with an empty alarm list
        conn.execute("UPDATE alarms SET state = 'cleared', cleared_at = now() WHERE state <> 'cleared'")
    api = psutil.Process(api_pid)
    page = await browser.new_page(viewport={"width": 1600, "height": 900})  # type: ignore[attr-defined]
    await page.goto(base + "/login")
    await page.fill("input[name=username]", USER)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)
    await page.goto(base + "/guard")
    await page.wait_for_selector("#live-state[data-state=live]")
    await page.evaluate(OBSERVER)
    await asyncio.sleep(1)
    rss_before = api.memory_info().rss
    arrived: dict[str, list[float]] = {}
    sse = [SseClient(port, token, arrived) for _ in range(clients)]
    for client in sse:
        client.start()
    await asyncio.wait_for(asyncio.gather(*(c.greeted.wait() for c in sse)), 120)
    await asyncio.sleep(2)
    rss_after = api.memory_info().rss
    log(f"  {clients} SSE clients and 1 browser page connected; API RSS {rss_before >> 20} -> {rss_after >> 20} MiB")

    cpu = harness.CpuMeter({"api": api_pid, "ingest": ingest_pid, "benchmark": os.getpid()})
    cpu.start()
    sent: dict[str, tuple[float, float]] = {}
    due = time.monotonic()
    for gw, dev, rule in pairs:
        due += interval * rng.uniform(0.5, 1.5)
        while (now := time.monotonic()) < due:
            publisher.pump(0)
            await asyncio.sleep(min(due - now, 0.005))
        msg = harness.alarm_message(dev, rule)
        sent[str(msg.id)] = (time.monotonic(), time.time() * 1000)
        publisher.publish(gw.topic(topics.Kind.ALARM), messages.encode(msg))
        publisher.pump(0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(len(arrived.get(m, ())) == clients for m in sent):
        publisher.pump(0)
        await asyncio.sleep(0.05)
    cpu.stop()
    await asyncio.sleep(2)  # the page's last rows
    in_page: dict[str, float] = await page.evaluate("() => window.__arrived")
    alarm_ids = {m: a for c in sse for m, a in c.alarm_ids.items()}
    resyncs = sum(c.resyncs for c in sse)
    for client in sse:
        await client.stop()
    await page.close()

    sse_ms = [(t - sent[m][0]) * 1000 for m, times in arrived.items() if m in sent for t in times]
    page_ms = [in_page[str(alarm_ids[m])] - sent[m][1] for m in sent if m in alarm_ids and str(alarm_ids[m]) in in_page]
    commit_ms = [(probe.arrived[m][0] - sent[m][0]) * 1000 for m in sent if m in probe.arrived]
    feed_ms = [(t - probe.arrived[m][0]) * 1000 for m, times in arrived.items() if m in probe.arrived for t in times]
    expected = len(sent) * clients
    if not sse_ms or not page_ms:
        raise RuntimeError("no alarm reached the clients")
    figures = {
        "sse_p50_ms": harness.percentile(sse_ms, 50),
        "sse_p99_ms": harness.percentile(sse_ms, 99),
        "sse_max_ms": max(sse_ms),
        "commit_p50_ms": harness.percentile(commit_ms, 50),
        "commit_p99_ms": harness.percentile(commit_ms, 99),
        "feed_p50_ms": harness.percentile(feed_ms, 50),
        "feed_p99_ms": harness.percentile(feed_ms, 99),
        "page_p50_ms": harness.percentile(page_ms, 50),
        "page_p99_ms": harness.percentile(page_ms, 99),
        "rss_per_client_kib": (rss_after - rss_before) / 1024 / clients,
        "missing": float(expected - len(sse_ms)),
        "page_missing": float(len(sent) - len(page_ms)),
        "resyncs": float(resyncs),
    }
    print(
        f"{clients:>3} SSE clients + 1 page: publish -> SSE event p50 {figures['sse_p50_ms']:.1f} ms, "
        f"p99 {figures['sse_p99_ms']:.1f} ms, max {figures['sse_max_ms']:.1f} ms "
        f"({len(sse_ms)} of {expected} arrivals, {resyncs} resyncs); publish -> row on the page "
        f"p50 {figures['page_p50_ms']:.1f} ms, p99 {figures['page_p99_ms']:.1f} ms "
        f"({len(page_ms)} of {len(sent)}); API memory {figures['rss_per_client_kib']:.0f} KiB per client",
        flush=True,
    )
    print(
        f"      of which publish -> committed (the ingest) p50 {figures['commit_p50_ms']:.1f} ms, "
        f"p99 {figures['commit_p99_ms']:.1f} ms; committed -> SSE client (the feed) "
        f"p50 {figures['feed_p50_ms']:.1f} ms, p99 {figures['feed_p99_ms']:.1f} ms",
        flush=True,
    )
    log(f"      cpu (cores) while the alarms ran: {cpu.describe()}")
    return figures


async def run(args: argparse.Namespace) -> int:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 1
    rng = random.Random(5)
    with Stack("live") as stack:
        harness.print_environment(stack)
        fleet = harness.make_fleet()
        pairs = fleet.alarm_pairs()
        rng.shuffle(pairs)
        phases = [1, args.clients]
        if len(pairs) < args.alarms * len(phases):
            raise SystemExit(f"the fleet has {len(pairs)} device+rule pairs; --alarms at most {len(pairs) // 2}")
        harness.register_fleet(stack.database_url, fleet)
        add_admin(stack.database_url)
        ingest = harness.start_ingest(stack, "process")
        port = free_port()
        api = harness.CloudProcess(
            stack,
            role="api",
            name="api",
            env={
                "COMMUNITY_HTTP_PORT": str(port),
                "COMMUNITY_SCHEDULER_ENABLED": "false",
                "MQTT_URL": stack.mqtt_url,
                "COMMUNITY_MQTT_CLIENT_ID": "bench-api",
            },
            prefix_var="BENCH_API_PREFIX",
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            api.check()
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not start:\n{api.tail()}") from None
                time.sleep(0.3)
        token = login(base)
        publisher = harness.Publisher(stack.mqtt_url, "bench-live")
        stack.on_close(publisher.close)
        warm = harness.Publisher(stack.mqtt_url, "bench-warmup")
        harness.warm_up(stack, ingest, warm, fleet)
        warm.close()
        results = {}
        probe = harness.AlarmListener(stack.database_url)
        probe.start()
        stack.on_close(probe.stop)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                for n, clients in enumerate(phases):
                    chunk = pairs[n * args.alarms : (n + 1) * args.alarms]
                    log(f"phase: {clients} client(s), {len(chunk)} alarms ~{args.interval * 1000:.0f} ms apart ...")
                    results[clients] = await phase(
                        clients=clients,
                        pairs=chunk,
                        port=port,
                        token=token,
                        api_pid=api.pid,
                        publisher=publisher,
                        browser=browser,
                        interval=args.interval,
                        rng=rng,
                        probe=probe,
                        database_url=stack.database_url,
                        ingest_pid=ingest.pid,
                    )
                    ingest.check()
                    api.check()
            finally:
                await browser.close()
        one, many = results[1], results[args.clients]
        print(
            harness.pairs(
                {
                    "clients": args.clients,
                    "alarms": args.alarms,
                    "sse_p50_ms": many["sse_p50_ms"],
                    "sse_p99_ms": many["sse_p99_ms"],
                    "feed_p50_ms": many["feed_p50_ms"],
                    "feed_p99_ms": many["feed_p99_ms"],
                    "page_p50_ms": many["page_p50_ms"],
                    "page_p99_ms": many["page_p99_ms"],
                    "rss_per_client_kib": many["rss_per_client_kib"],
                    "missing": int(many["missing"] + many["page_missing"]),
                    "baseline_sse_p50_ms": one["sse_p50_ms"],
                    "baseline_sse_p99_ms": one["sse_p99_ms"],
                    "baseline_page_p50_ms": one["page_p50_ms"],
                    "baseline_page_p99_ms": one["page_p99_ms"],
                }
            )
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="SSE clients in the loaded phase")
    parser.add_argument("--alarms", type=int, default=150, help="alarms per phase (each a new device+rule)")
    parser.add_argument("--interval", type=float, default=0.2, help="mean seconds between two alarms")
    args = parser.parse_args()
    harness.install_signal_handlers()
    os.environ.setdefault("COMMUNITY_LOG_LEVEL", "WARNING")
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
