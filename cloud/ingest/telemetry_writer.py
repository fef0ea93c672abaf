"""Writes telemetry batches: validate, drop already-seen ids, COPY, commit, then acknowledge.

One transaction per batch of up to `ingest_batch_messages` messages. The seen-id insert and
the COPY of the new messages' rows commit together, so a message is either fully stored and
its id recorded, or neither; the broker's redelivery then finds the id and adds nothing.
"""

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime

import psycopg

from cloud.domain.registry import Resolver
from cloud.ingest import deadletter
from cloud.ingest.inbound import Inbound
from cloud.ingest.last_values import LastValues
from cloud.storage import telemetry
from contract.clock import Clock
from contract.messages import InvalidMessage, TelemetryBatch, decode
from contract.topics import Kind

log = logging.getLogger(__name__)


def rows_of(batch: TelemetryBatch, device_ids: dict[str, int]) -> list[telemetry.Row]:
    rows: list[telemetry.Row] = []
    append = rows.append
    for reading in batch.readings:
        device_id = device_ids[reading.device]
        ts = reading.ts
        for metric, value in reading.values.items():
            if isinstance(value, bool):
                append((ts, device_id, metric, 1.0 if value else 0.0, None))
            elif isinstance(value, str):
                append((ts, device_id, metric, None, value))
            else:
                append((ts, device_id, metric, float(value), None))
    return rows


class TelemetryWriter(threading.Thread):
    def __init__(
        self,
        *,
        database_url: str,
        inbox: "queue.Queue[Inbound]",
        ack: Callable[[Inbound], None],
        resolver: Resolver,
        partitions: telemetry.Partitions,
        last_values: LastValues,
        clock: Clock,
        batch_messages: int,
        batch_delay: float,
        name: str = "telemetry-writer",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._url = database_url
        self._inbox = inbox
        self._ack = ack
        self._resolver = resolver
        self._partitions = partitions
        self._last_values = last_values
        self._clock = clock
        self._batch_messages = batch_messages
        self._batch_delay = batch_delay
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self.committed_messages = 0
        self.committed_points = 0
        self.duplicates = 0

    def stop(self) -> None:
        self._stop_event.set()

    def _collect(self) -> list[Inbound]:
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self._batch_delay
        while len(batch) < self._batch_messages:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._inbox.get(timeout=remaining) if remaining > 0 else self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def run(self) -> None:
        while not self._stop_event.is_set() or not self._inbox.empty():
            batch = self._collect()
            if not batch:
                continue
            delay = 0.5
            while True:
                try:
                    self._write(batch)
                    break
                except psycopg.OperationalError as exc:
                    # the database went away: keep the batch (unacknowledged) and try again
                    log.error("telemetry batch not stored, database unavailable (%s); retrying in %.1fs", exc, delay)
                    self._drop_connection()
                    if self._stop_event.wait(delay) and self._stop_event.is_set():
                        log.warning(
                            "stopping with %d telemetry messages unacknowledged; the broker keeps them", len(batch)
                        )
                        return
                    delay = min(delay * 2, 30.0)
        self._drop_connection()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _write(self, batch: list[Inbound]) -> None:
        good: list[tuple[Inbound, TelemetryBatch, dict[str, int]]] = []
        dead: list[tuple[Inbound, str]] = []
        seen_in_batch: set = set()
        for item in batch:
            if item.parsed is None or item.parsed.kind != Kind.TELEMETRY:
                dead.append((item, f"topic {item.topic!r} is not a telemetry topic of the contract"))
                continue
            try:
                msg = decode(Kind.TELEMETRY, item.payload)
                assert isinstance(msg, TelemetryBatch)
                device_ids = self._resolver.device_ids(
                    item.parsed.site, item.parsed.gateway, {r.device for r in msg.readings}
                )
            except InvalidMessage as exc:
                dead.append((item, exc.reason))
                continue
            if msg.id in seen_in_batch:
                self.duplicates += 1  # the same message twice in one batch: stored once
                continue
            seen_in_batch.add(msg.id)
            good.append((item, msg, device_ids))

        times: set[datetime] = set()
        for _item, msg, _ids in good:
            for reading in msg.readings:
                times.add(reading.ts)
        self._partitions.ensure(self._url, times)

        conn = self._connection()
        points = 0
        new_count = 0
        with conn.transaction():
            cur = conn.cursor()
            fresh: set = set()
            if good:
                cur.execute(
                    """INSERT INTO ingest_messages (message_id, gateway_id, kind)
                       SELECT id, gw, 'telemetry' FROM unnest(%s::uuid[], %s::text[]) AS m(id, gw)
                       ON CONFLICT (message_id) DO NOTHING
                       RETURNING message_id""",
                    ([m.id for _, m, _ in good], [i.parsed.gateway for i, _, _ in good]),  # type: ignore[union-attr]
                )
                fresh = {r[0] for r in cur.fetchall()}
                rows: list[telemetry.Row] = []
                for _item, msg, ids in good:
                    if msg.id in fresh:
                        rows.extend(rows_of(msg, ids))
                if rows:
                    telemetry.copy_rows(cur, rows)
                points = len(rows)
                new_count = len(fresh)
            for item, reason in dead:
                deadletter.store(conn, topic=item.topic, payload=item.payload, reason=reason)
        # committed: now the broker may forget them
        for item in batch:
            self._ack(item)
        self.committed_messages += new_count
        self.committed_points += points
        self.duplicates += len(good) - new_count
        now = self._clock.now()
        for item, msg, ids in good:
            if msg.id in fresh:
                for reading in msg.readings:
                    self._last_values.update(ids[reading.device], reading.ts, reading.values)
                self._last_values.gateway_seen(item.parsed.gateway, now)  # type: ignore[union-attr]
