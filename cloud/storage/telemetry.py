"""Telemetry rows: batched COPY in, time-bucketed aggregates out, monthly partitions kept.

On plain PostgreSQL the table is partitioned by month; partitions are created before rows
need them and dropped past the retention. On TimescaleDB the extension makes its chunks itself,
and the retention drops old chunks with `drop_chunks`, driven by the same setting.
"""

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from cloud.storage.queries import TELEMETRY_BUCKETS

log = logging.getLogger(__name__)

COLUMNS = ("time", "device_id", "metric", "value", "value_text")
Row = tuple[datetime, int, str, float | None, str | None]


def month_start(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"telemetry_y{start.year:04d}m{start.month:02d}"


class Partitions:
    """Knows which monthly partitions exist and creates missing ones (plain PostgreSQL only)."""

    _LOCK_KEY = 7_342_002

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._timescale: bool | None = None
        self._mutex = threading.Lock()

    def load(self, conn: psycopg.Connection) -> None:
        with self._mutex:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()
            self._timescale = bool(_first(row))
            rows = conn.execute(
                """SELECT c.relname FROM pg_inherits i
                   JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = 'telemetry'::regclass"""
            ).fetchall()
            self._known = {_first(r) for r in rows}

    @property
    def timescale(self) -> bool:
        return bool(self._timescale)

    def ensure(self, database_url: str, times: Iterable[datetime]) -> None:
        """Make sure a partition exists for every month these times fall in.

        Runs in its own short transaction, before the batch that needs it, so the batch
        itself never holds a DDL lock.
        """
        if self._timescale:
            return
        needed = {month_start(t) for t in times}
        missing = [m for m in needed if partition_name(m) not in self._known]
        if not missing:
            return
        with psycopg.connect(database_url, autocommit=True) as conn:
            if self._timescale is None:
                self.load(conn)
                if self._timescale:
                    return
            conn.execute("SELECT pg_advisory_lock(%s)", (self._LOCK_KEY,))
            try:
                for start in sorted(missing):
                    name = partition_name(start)
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {} PARTITION OF telemetry FOR VALUES FROM ({}) TO ({})"
                        ).format(sql.Identifier(name), sql.Literal(start), sql.Literal(next_month(start)))
                    )
                    with self._mutex:
                        self._known.add(name)
                    log.info("created telemetry partition %s", name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._LOCK_KEY,))

    def ensure_span(self, database_url: str, earliest: datetime, latest: datetime) -> None:
        """ensure() for every month from the earliest time to the latest."""
        months = [month_start(earliest)]
        while months[-1] < month_start(latest):
            months.append(next_month(months[-1]))
        self.ensure(database_url, months)

    def drop_older_than(self, database_url: str, cutoff: datetime) -> list[str]:
        """Drop whole monthly partitions (or TimescaleDB chunks) that end before the cutoff (retention)."""
        if self._timescale:  # not exercised by the tests: TimescaleDB cannot be installed where they run
            with psycopg.connect(database_url, autocommit=True) as conn:
                rows = conn.execute("SELECT drop_chunks('telemetry', older_than => %s)", (cutoff,)).fetchall()
            return [str(_first(r)) for r in rows]
        dropped = []
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(
                """SELECT c.relname FROM pg_inherits i
                   JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = 'telemetry'::regclass"""
            ).fetchall()
            for row in rows:
                name = _first(row)
                start = _parse_partition(name)
                if start is not None and next_month(start) <= cutoff:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                    with self._mutex:
                        self._known.discard(name)
                    dropped.append(name)
                    log.info("dropped telemetry partition %s (older than retention)", name)
        return dropped


def _first(row: object) -> object:
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]  # type: ignore[index]


def _parse_partition(name: str) -> datetime | None:
    try:
        return datetime(int(name[11:15]), int(name[16:18]), 1, tzinfo=UTC)
    except (ValueError, IndexError):
        return None


def copy_rows(cur: psycopg.Cursor, rows: Sequence[Row]) -> None:
    """COPY rows into the telemetry table (binary format: no text formatting of each value)."""
    with cur.copy("COPY telemetry (time, device_id, metric, value, value_text) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["timestamptz", "int8", "text", "float8", "text"])
        for row in rows:
            copy.write_row(row)


def bucketed(
    conn: psycopg.Connection,
    *,
    device_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
) -> list[dict]:
    """min, max, mean and count per time bucket, for one device and metric.

    The text is queries.TELEMETRY_BUCKETS, which the Grafana telemetry dashboard is built from too.
    """
    cur = conn.execute(
        TELEMETRY_BUCKETS.sql,
        {"bucket": bucket, "device": device_id, "metric": metric, "start": start, "end": end},
    )
    return list(cur.fetchall())
