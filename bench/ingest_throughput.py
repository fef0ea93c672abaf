"""Ingest throughput: telemetry points a second from MQTT publish to committed rows, beside the two
limits measured in the same run with the same messages.

1. broker alone: the messages published at QoS 1 -> one QoS 1 subscriber (another process); no database.
2. database alone: COPY of the same rows into the same indexed `telemetry` table, in transactions
   of as many messages' rows as the ingest commits together (`ingest_batch_messages`).
3. end to end: publish -> `community cloud --role ingest` (its own process) -> rows committed,
   from the first publish to the moment the last message's rows are committed.

Prints the three, and the ratio end-to-end / min(broker alone, database alone); the last line
is the figures as name=value pairs. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import harness
import psycopg
from harness import Prepared, Stack, log

from cloud.ingest.telemetry_writer import rows_of
from cloud.settings import CloudSettings
from cloud.storage import telemetry
from contract import topics


def broker_alone(stack: Stack, prepared: list[Prepared], min_seconds: float) -> dict[str, float]:
    """Publish the messages (again and again, for at least min_seconds) to a subscriber process."""
    ctx = mp.get_context("spawn")
    count, last = ctx.RawValue("q", 0), ctx.RawValue("d", 0.0)
    ready, stop = ctx.Event(), ctx.Event()
    topic_filter = f"{topics.ROOT}/+/+/{topics.Kind.TELEMETRY.value}"
    sub = ctx.Process(
        target=harness.subscriber_main, args=(stack.mqtt_url, topic_filter, count, last, ready, stop), daemon=True
    )
    sub.start()

    def stop_subscriber() -> None:
        stop.set()
        sub.join(10)
        if sub.is_alive():
            sub.kill()

    stack.on_close(stop_subscriber)
    if not ready.wait(30):
        raise RuntimeError("the subscriber did not subscribe")
    publisher = harness.Publisher(stack.mqtt_url, "bench-publisher-broker")
    mosquitto_pid = stack.mosquitto.proc.pid if stack.mosquitto and stack.mosquitto.proc else None
    cpu = harness.CpuMeter({"mosquitto": mosquitto_pid, "benchmark": os.getpid(), "subscriber": sub.pid})
    cpu.start()
    t0, _acked, sent = publisher.publish_all(prepared, min_seconds=min_seconds)
    deadline = time.monotonic() + 120
    while count.value < sent:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the subscriber received {count.value} of {sent} messages")
        time.sleep(0.01)
    elapsed = last.value - t0
    cpu.stop()
    publisher.close()
    stop_subscriber()
    passes = sent // len(prepared)
    points = passes * sum(p.points for p in prepared)
    log(f"  cpu (cores): {cpu.describe()}")
    return {"messages": sent, "points": points, "seconds": elapsed, "passes": passes}


def message_rows(prepared: list[Prepared], ids: dict[str, dict[str, int]]) -> list[list[telemetry.Row]]:
    """The rows of each message, made exactly as the ingest makes them."""
    return [rows_of(p.batch, ids[p.gateway]) for p in prepared]


def database_alone(
    stack: Stack, per_message: list[list[telemetry.Row]], batch_messages: int, min_seconds: float, writers: int
) -> dict[str, float]:
    """COPY the rows, batch by batch as the ingest groups them, on as many connections at once as the
    ingest has telemetry writers, for at least min_seconds.

    A pass after the first writes the same rows moved later by the whole span of the data, so no
    row repeats another. The shifted rows are made before a pass starts; each pass is timed from
    its first COPY to its last commit.
    """
    stack.prepare_phase()
    chunks = [
        [row for rows in per_message[i : i + batch_messages] for row in rows]
        for i in range(0, len(per_message), batch_messages)
    ]
    times = [row[0] for chunk in chunks for row in chunk]
    first, last = min(times), max(times)
    span = (last - first) + timedelta(seconds=1)
    cpu = harness.CpuMeter({"benchmark": os.getpid()}, postgres=stack.postgres_pid())
    elapsed = 0.0
    rows = 0
    passes = 0
    connections = [stack.connect() for _ in range(writers)]

    def copy_from(conn: psycopg.Connection, work: queue.SimpleQueue[list[telemetry.Row]]) -> None:
        cur = conn.cursor()
        while True:
            try:
                chunk = work.get_nowait()
            except queue.Empty:
                return
            with conn.transaction():
                telemetry.copy_rows(cur, chunk)

    cpu.start()
    try:
        while True:
            shift = span * passes
            if passes:
                harness.ensure_partitions(stack.database_url, [first + shift, last + shift])
            data = chunks if not passes else [[(r[0] + shift, r[1], r[2], r[3], r[4]) for r in c] for c in chunks]
            work: queue.SimpleQueue[list[telemetry.Row]] = queue.SimpleQueue()
            for chunk in data:
                work.put(chunk)
            threads = [threading.Thread(target=copy_from, args=(conn, work)) for conn in connections]
            t0 = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed += time.perf_counter() - t0
            rows += sum(len(c) for c in data)
            passes += 1
            if elapsed >= min_seconds:
                break
    finally:
        for conn in connections:
            conn.close()
    cpu.stop()
    log(f"  cpu (cores, over the whole phase): {cpu.describe()}")
    return {"rows": rows, "seconds": elapsed, "passes": passes, "transactions": passes * len(chunks)}


def end_to_end(
    stack: Stack, prepared: list[Prepared], fleet: harness.Fleet, mode: str, timeout: float
) -> dict[str, Any]:
    """Publish every message once; the ingest stores them; time until the last one is committed."""
    stack.prepare_phase()
    ingest = harness.start_ingest(stack, mode)
    publisher = harness.Publisher(stack.mqtt_url, "bench-publisher-e2e")
    harness.warm_up(stack, ingest, publisher, fleet)
    mosquitto_pid = stack.mosquitto.proc.pid if stack.mosquitto and stack.mosquitto.proc else None
    named = {"ingest": ingest.pid, "mosquitto": mosquitto_pid}
    if mode == "process":
        named["benchmark"] = os.getpid()
    cpu = harness.CpuMeter(named, postgres=stack.postgres_pid())
    result: dict[str, Any] = harness.run_through(stack, ingest, publisher, prepared, timeout=timeout, cpu=cpu)
    publisher.close()
    ingest.stop()
    log(f"  cpu (cores): {cpu.describe()}")
    result["ingest_cores"] = cpu.cores.get("ingest", 0.0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=3_000_000, help="telemetry points in the message set")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="least duration of each phase")
    parser.add_argument(
        "--ingest",
        choices=("process", "thread"),
        default="process",
        help="run the ingest as its own process (as deployed; default) or inside this one",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on the end-to-end phase after this")
    args = parser.parse_args()
    harness.install_signal_handlers()
    settings = CloudSettings(_env_file=None)  # type: ignore[call-arg]
    batch_messages = settings.ingest_batch_messages
    try:
        with Stack("ingest") as stack:
            harness.print_environment(stack)
            fleet = harness.make_fleet()
            ids = harness.register_fleet(stack.database_url, fleet)
            log(f"building {args.points:,} points of telemetry from {fleet.devices} devices ...")
            prepared = harness.build_telemetry(fleet, args.points)
            harness.ensure_partitions(stack.database_url, harness.time_range(prepared))
            n_msg = len(prepared)
            n_pts = sum(p.points for p in prepared)
            print(
                f"message set: {n_msg} messages, {n_pts} points ({n_pts / n_msg:.1f} a message, at most "
                f"{harness.MAX_POINTS}), {fleet.devices} devices behind {len(fleet.gateways)} gateways, "
                f"{sum(len(p.payload) for p in prepared) / n_msg:.0f} bytes a message"
            )

            log("phase 1/3: broker alone ...")
            broker = broker_alone(stack, prepared, args.min_seconds)
            b_mps = broker["messages"] / broker["seconds"]
            b_pps = broker["points"] / broker["seconds"]
            print(
                f"broker alone:   {b_mps:10,.0f} messages/s {b_pps:12,.0f} points/s "
                f"({broker['messages']} messages in {broker['seconds']:.1f} s, {broker['passes']} passes)"
            )

            log("phase 2/3: database alone ...")
            per_message = message_rows(prepared, ids)
            writers = settings.ingest_telemetry_writers
            db = database_alone(stack, per_message, batch_messages, args.min_seconds, writers)
            del per_message
            d_rps = db["rows"] / db["seconds"]
            print(
                f"database alone: {d_rps:12,.0f} rows/s ({db['rows']} rows by COPY in {db['seconds']:.1f} s, "
                f"{db['transactions']} transactions of {batch_messages} messages' rows on {writers} connections, "
                "as many as the ingest's telemetry writers)"
            )

            log(f"phase 3/3: end to end (ingest as a {args.ingest}) ...")
            e2e = end_to_end(stack, prepared, fleet, args.ingest, args.timeout)
            e_pps = e2e["points"] / e2e["seconds"]
            e_mps = e2e["messages"] / e2e["seconds"]
            print(
                f"end to end:     {e_mps:10,.0f} messages/s {e_pps:12,.0f} points/s "
                f"({e2e['messages']} messages in {e2e['seconds']:.1f} s; published in {e2e['publish_seconds']:.1f} s;"
                f" ingest used {e2e['ingest_cores']:.2f} cores)"
            )
            if e2e["seconds"] < args.min_seconds:
                log(f"warning: the end-to-end phase took under {args.min_seconds:.0f} s; raise --points")
            lower = min(b_pps, d_rps)
            ratio = e_pps / lower
            limit = "broker" if b_pps <= d_rps else "database"
            print(f"ratio end-to-end / min(broker, database) = {ratio:.3f} (the lower limit is the {limit})")
            print(
                harness.pairs(
                    {
                        "e2e_points_per_s": e_pps,
                        "e2e_messages_per_s": e_mps,
                        "broker_points_per_s": b_pps,
                        "broker_messages_per_s": b_mps,
                        "db_rows_per_s": d_rps,
                        "ratio": ratio,
                        "points_per_message": n_pts / n_msg,
                        "devices": fleet.devices,
                        "e2e_seconds": e2e["seconds"],
                        "ingest": args.ingest,
                    }
                ),
                flush=True,
            )
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
