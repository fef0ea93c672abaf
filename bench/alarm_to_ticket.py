"""Alarm to ticket: how long from an alarm's MQTT publish to the commit of the ticket it opens, while
telemetry flows at half the ingest's measured maximum.

1. Measures the maximum end-to-end telemetry rate briefly (or takes --max-rate).
2. Starts a paced telemetry publisher (its own process) at half that rate.
3. Publishes 1,000 alarm raises, each a different device and rule with `ticket: repair` (so each
   opens a ticket), spaced out over the run; listens on the `community_changes` channel, where
   the ingest's `alarm_raised` notification arrives when the alarm and its ticket commit, and
   matches each by message id.

Prints p50, p99 and max latency and the telemetry rate the ingest committed meanwhile; the last
line is the figures as name=value pairs. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time

import harness
from harness import Stack, log

from contract import messages, topics


def measure_max_rate(
    stack: Stack, ingest: harness.IngestProcess | harness.ThreadIngest, fleet: harness.Fleet, points: int
) -> float:
    """The ingest's end-to-end rate on a backlog of `points` (published as fast as possible)."""
    prepared = harness.build_telemetry(fleet, points, seed=11)
    harness.ensure_partitions(stack.database_url, harness.time_range(prepared))
    publisher = harness.Publisher(stack.mqtt_url, "bench-calibrate")
    try:
        result = harness.run_through(stack, ingest, publisher, prepared, timeout=600)
    finally:
        publisher.close()
    return result["points"] / result["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=1000, help="alarm raises to time (at most one per device+rule)")
    parser.add_argument("--interval", type=float, default=0.05, help="mean seconds between two alarms")
    parser.add_argument("--max-rate", type=float, default=None, help="the ingest's max points/s (skips measuring)")
    parser.add_argument("--calibrate-points", type=int, default=1_000_000, help="points used to measure the max")
    parser.add_argument("--load", type=float, default=0.5, help="telemetry load as a fraction of the max")
    args = parser.parse_args()
    harness.install_signal_handlers()
    rng = random.Random(3)
    try:
        with Stack("alarm") as stack:
            harness.print_environment(stack)
            fleet = harness.make_fleet()
            pairs = fleet.alarm_pairs()
            if args.alarms > len(pairs):
                parser.error(f"the fleet has {len(pairs)} different device+rule pairs; --alarms at most that")
            rng.shuffle(pairs)
            pairs = pairs[: args.alarms]
            harness.register_fleet(stack.database_url, fleet)
            ingest = harness.start_ingest(stack, "process")
            warm = harness.Publisher(stack.mqtt_url, "bench-warmup")
            harness.warm_up(stack, ingest, warm, fleet)
            warm.close()

            max_rate = args.max_rate
            if max_rate is None:
                log(f"measuring the ingest's maximum on {args.calibrate_points:,} points ...")
                max_rate = measure_max_rate(stack, ingest, fleet, args.calibrate_points)
            publisher = harness.Publisher(stack.mqtt_url, "bench-alarms")
            stack.on_close(publisher.close)
            target = max_rate * args.load
            print(f"max end-to-end telemetry rate: {max_rate:,.0f} points/s; load: {target:,.0f} points/s")

            # the telemetry load: its own process, paced by points
            run_seconds = 5 + args.alarms * args.interval * 1.1 + 15
            ctx = mp.get_context("spawn")
            ready, go, stop = ctx.Event(), ctx.Event(), ctx.Event()
            stats = ctx.Array("d", 4, lock=False)
            loader = ctx.Process(
                target=harness.paced_publisher_main,
                args=(stack.mqtt_url, target, run_seconds, 5, ready, go, stop, stats),
                daemon=True,
            )
            loader.start()

            def stop_loader() -> None:
                stop.set()
                loader.join(15)
                if loader.is_alive():
                    loader.kill()

            stack.on_close(stop_loader)
            log("building the telemetry load ...")
            deadline = time.monotonic() + 300
            while not ready.is_set():
                if time.monotonic() > deadline or not loader.is_alive():
                    raise RuntimeError("the telemetry publisher did not get ready")
                publisher.idle(0.5)
            listener = harness.AlarmListener(stack.database_url)
            listener.start()
            stack.on_close(listener.stop)
            go.set()

            # warm the control lane (first statements, caches) with alarms that are not timed
            for i in range(5):
                gw, dev, _rule = pairs[i]
                warm_alarm = harness.alarm_message(dev, "bench_warmup")
                publisher.publish(gw.topic(topics.Kind.ALARM), messages.encode(warm_alarm))
            publisher.idle(3)

            mosquitto_pid = stack.mosquitto.proc.pid if stack.mosquitto and stack.mosquitto.proc else None
            named = {"ingest": ingest.pid, "mosquitto": mosquitto_pid, "loader": loader.pid, "benchmark": os.getpid()}
            cpu = harness.CpuMeter(named, postgres=stack.postgres_pid())
            with stack.connect(autocommit=True) as conn:
                rows_before = harness.telemetry_rows(conn)
                cpu.start()
                t_first = time.monotonic()
                log(f"publishing {args.alarms} alarms over ~{args.alarms * args.interval:.0f} s ...")
                sent: dict[str, tuple[float, float]] = {}
                due = time.monotonic()
                for gw, dev, rule in pairs:
                    due += args.interval * rng.uniform(0.5, 1.5)
                    while (now := time.monotonic()) < due:
                        publisher.pump(min(due - now, 0.01))
                    msg = harness.alarm_message(dev, rule)
                    payload = messages.encode(msg)
                    sent[str(msg.id)] = (time.monotonic(), time.time())
                    publisher.publish(gw.topic(topics.Kind.ALARM), payload)
                publisher.flush()
                deadline = time.monotonic() + 60
                while not all(mid in listener.arrived for mid in sent):
                    if time.monotonic() > deadline:
                        break
                    ingest.check()
                    publisher.pump(0.05)
                t_last = time.monotonic()
                cpu.stop()
                rows_after = harness.telemetry_rows(conn)
                handled = dict(
                    conn.execute("SELECT id, extract(epoch FROM received_at)::float8 FROM alarms").fetchall()
                )
                tickets = conn.execute(
                    "SELECT count(*) FROM tickets WHERE channel = 'device' AND alarm_rule <> 'bench_warmup'"
                ).fetchone()
            if stats[3] and stats[3] < t_last:
                log("warning: the telemetry load ran out before the last alarm; raise the run length")
            stop_loader()
            log(f"  cpu (cores) while the alarms ran: {cpu.describe()}")

            seen = [(t, listener.arrived[mid]) for mid, t in sent.items() if mid in listener.arrived]
            latencies = [(arr[0] - t[0]) * 1000 for t, arr in seen]
            # where the time went: publish -> the control lane handles it (alarms.received_at) -> commit
            to_handler = [(handled[arr[2]] - t[1]) * 1000 for t, arr in seen if arr[2] in handled]
            to_commit = [(arr[1] - handled[arr[2]]) * 1000 for t, arr in seen if arr[2] in handled]
            with_ticket = sum(1 for _t, arr in seen if arr[3])
            missing = len(sent) - len(latencies)
            telemetry_rate = (rows_after - rows_before) / (t_last - t_first)
            published_rate = stats[1] / max(stats[3] - stats[2], 1e-9)
            if not latencies:
                raise RuntimeError("no alarm notification arrived")
            p50, p99 = harness.percentile(latencies, 50), harness.percentile(latencies, 99)
            p90, worst = harness.percentile(latencies, 90), max(latencies)
            print(
                f"alarm -> ticket committed: p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms "
                f"over {len(latencies)} alarms ({with_ticket} opened a ticket, {missing} not seen)"
            )
            if to_handler:
                print(
                    "  of which publish -> handled by the control lane: "
                    f"p50 {harness.percentile(to_handler, 50):.1f} ms, p99 {harness.percentile(to_handler, 99):.1f} ms;"
                    f" handled -> committed: p50 {harness.percentile(to_commit, 50):.1f} ms, "
                    f"p99 {harness.percentile(to_commit, 99):.1f} ms"
                )
            print(
                f"telemetry meanwhile: {telemetry_rate:,.0f} points/s committed "
                f"(target {target:,.0f}, published {published_rate:,.0f})"
            )
            print(
                harness.pairs(
                    {
                        "alarm_p50_ms": p50,
                        "alarm_p99_ms": p99,
                        "alarm_max_ms": worst,
                        "alarms": len(latencies),
                        "tickets": int(tickets[0]) if tickets else 0,
                        "missing": missing,
                        "telemetry_points_per_s": telemetry_rate,
                        "telemetry_target_points_per_s": target,
                        "max_points_per_s": max_rate,
                    }
                ),
                flush=True,
            )
            return 0 if missing == 0 else 1
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
