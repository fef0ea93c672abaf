"""Writes telemetry batches: validate, drop already-seen ids, COPY, commit, then acknowledge.

One transaction per batch of up to `ingest_batch_messages` messages. The seen-id insert and
the COPY of the new messages' rows commit together, so a message is either fully stored and
its id recorded, or neither; the broker's redelivery then finds the id and adds nothing.
Several writers may take batches from the same queue (`ingest_telemetry_writers`): while one
waits on PostgreSQL another decodes, and the primary key on message ids keeps them honest.
"""

import logging
import queue
import time
from datetime import datetime, timedelta
from uuid import UUID

from cloud.domain.registry import Resolver
from cloud.ingest import deadletter
from cloud.ingest.db_worker import DatabaseWorker
from cloud.ingest.inbound import Inbound
from cloud.ingest.last_values import LastValues
from cloud.storage import telemetry
from cloud.storage.telemetry import Partitions
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


class TelemetryWriter(DatabaseWorker):
    def __init__(
        self,
        *,
        database_url: str,
        inbox: "queue.Queue[Inbound]",
        resolver: Resolver,
        partitions: Partitions,
        last_values: LastValues,
        clock: Clock,
        batch_messages: int,
        batch_delay: float,
        max_age: timedelta,
        max_ahead: timedelta = timedelta(days=1),
        name: str = "telemetry-writer",
    ) -> None:
        super().__init__(name=name, database_url=database_url)
        self._inbox = inbox
        self._resolver = resolver
        self._partitions = partitions
        self._last_values = last_values
        self._clock = clock
        self._batch_messages = batch_messages
        self._batch_delay = batch_delay
        self._max_age = max_age
        self._max_ahead = max_ahead
        self.committed_messages = 0
        self.committed_points = 0
        self.duplicates = 0

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
            if batch and not self._until_stored(lambda b=batch: self._write(b), f"a batch of {len(batch)} messages"):
                break
        self._drop_connection()

    def _check_times(self, msg: TelemetryBatch) -> None:
        """A reading dated outside the retention or far in the future means a gateway clock is wrong."""
        now = self._clock.now()
        for i, reading in enumerate(msg.readings):
            if reading.ts < now - self._max_age:
                raise InvalidMessage(
                    f"telemetry message: readings[{i}].ts {reading.ts.isoformat()} is older than the retention "
                    f"({self._max_age.days} days); check the gateway's clock"
                )
            if reading.ts > now + self._max_ahead:
                raise InvalidMessage(
                    f"telemetry message: readings[{i}].ts {reading.ts.isoformat()} is in the future; "
                    "check the gateway's clock"
                )

    def _write(self, batch: list[Inbound]) -> None:
        good: list[tuple[Inbound, TelemetryBatch, dict[str, int]]] = []
        dead: list[tuple[Inbound, str]] = []
        seen_in_batch: set[UUID] = set()
        duplicates = 0
        earliest: datetime | None = None
        latest: datetime | None = None
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
                self._check_times(msg)
            except InvalidMessage as exc:
                dead.append((item, exc.reason))
                continue
            if msg.id in seen_in_batch:
                duplicates += 1  # the same message twice in one batch: stored once
                continue
            seen_in_batch.add(msg.id)
            good.append((item, msg, device_ids))
            for reading in msg.readings:
                if earliest is None or reading.ts < earliest:
                    earliest = reading.ts
                if latest is None or reading.ts > latest:
                    latest = reading.ts
        if earliest is not None and latest is not None:
            self._partitions.ensure_span(self._url, earliest, latest)

        conn = self._connection()
        points = 0
        fresh: set[UUID] = set()
        with conn.transaction():
            cur = conn.cursor()
            if good:
                cur.execute(
                    """INSERT INTO ingest_messages (message_id, gateway_id, kind, points)
                       SELECT id, gw, 'telemetry', n FROM unnest(%s::uuid[], %s::text[], %s::int[]) AS m(id, gw, n)
                       ON CONFLICT (message_id) DO NOTHING
                       RETURNING message_id""",
                    (
                        [m.id for _, m, _ in good],
                        [i.parsed.gateway for i, _, _ in good],  # type: ignore[union-attr]
                        [m.points for _, m, _ in good],
                    ),
                )
                fresh = {r["message_id"] for r in cur.fetchall()}
                rows: list[telemetry.Row] = []
                for _item, msg, ids in good:
                    if msg.id in fresh:
                        rows.extend(rows_of(msg, ids))
                if rows:
                    telemetry.copy_rows(cur, rows)
                points = len(rows)
            for item, reason in dead:
                deadletter.store(conn, topic=item.topic, payload=item.payload, reason=reason)
        # committed: now the broker may forget them
        for item in batch:
            item.ack()
        self.committed_messages += len(fresh)
        self.committed_points += points
        self.duplicates += duplicates + len(good) - len(fresh)
        now = self._clock.now()
        self._last_values.update_many(
            [(ids[r.device], r.ts, r.values) for _item, msg, ids in good if msg.id in fresh for r in msg.readings],
            gateways={item.parsed.gateway for item, msg, _ in good if msg.id in fresh},  # type: ignore[union-attr]
            seen_at=now,
        )
