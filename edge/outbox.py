"""The durable outbox: every message for the cloud is on disk before it counts, and leaves only when
the broker has acknowledged it.

One SQLite file (WAL, `synchronous=FULL`) holds three tables: `readings` (device readings not yet
packed into a telemetry message), `messages` (encoded messages waiting for the broker, with the id
they got when they were made) and `counters` (what the bounds dropped, kept across restarts).
One thread owns the connection. It takes readings, messages, acknowledgements and connection
changes from a queue and applies everything that has arrived in one transaction (group commit: one
fsync for many points), packs staged readings into a `TelemetryBatch` inside the same transaction
that deletes them, then hands messages to paho.

Flow control: at most `window` messages per lane are handed to paho and not yet acknowledged, so
paho's own queue stays small however long the broker is away; the rest stays on disk and is read in
chunks. Lanes, each oldest first:

- control: alarms, events, command acknowledgements, health, config state — never behind telemetry;
- live telemetry: messages made since the last (re)connect, sent at once;
- backlog telemetry: messages made before it, at `drain_rate` messages a second.

Messages paho already holds when the connection breaks stay in the window: paho re-sends them
itself after the reconnect (persistent session), so the outbox does not hand them over again.
A message is deleted when its PUBACK arrives; a crash before that sends it again after the restart
with the same id, and the cloud drops the copy.

Bounds: past `max_bytes` of payload the oldest telemetry goes first (control messages only when no
telemetry is left); messages older than `max_age` go too. What is dropped is counted (messages and
telemetry points) in `counters`, logged, and reported in the agent's health.
"""

import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from contract.clock import Clock
from contract.messages import Envelope, OutboxHealth, Reading, TelemetryBatch, encode
from contract.topics import Kind
from edge.batcher import split

log = logging.getLogger(__name__)

CONTROL, TELEMETRY = 0, 1
#: Events applied in one transaction at most (one fsync).
_GROUP = 5000
#: Rows deleted per statement when a bound drops messages.
_DROP_CHUNK = 500
#: Seconds between checks of the age bound.
_AGE_CHECK = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq     INTEGER PRIMARY KEY,
    body    TEXT NOT NULL,
    points  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    lane    INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    retain  INTEGER NOT NULL,
    payload BLOB NOT NULL,
    points  INTEGER NOT NULL,
    made    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_lane ON messages (lane, seq);
CREATE TABLE IF NOT EXISTS counters (
    name    TEXT PRIMARY KEY,
    value   INTEGER NOT NULL
);
"""


class Publisher(Protocol):
    """What the outbox needs of the uplink (edge/uplink.py's Uplink)."""

    def publish(self, kind: Kind, payload: bytes, *, retain: bool = False) -> int | None: ...


@dataclass(slots=True)
class _InFlight:
    seq: int
    lane: int
    size: int


class DurableOutbox:
    """SQLite outbox with flow control; see the module docstring. Its public methods are thread-safe."""

    def __init__(
        self,
        path: Path,
        publisher: Publisher,
        clock: Clock,
        *,
        max_points: int = 50,
        max_delay: float = 1.0,
        max_bytes: int = 256 * 1024 * 1024,
        max_age: float = 7 * 24 * 3600.0,
        drain_rate: float = 200.0,
        window: int = 100,
        age_check: float = _AGE_CHECK,
    ) -> None:
        if max_points < 1 or window < 1:
            raise ValueError("max_points and window must be at least 1")
        self.path = Path(path)
        self.publisher = publisher
        self.clock = clock
        self.max_points = max_points
        self.max_delay = max_delay
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.drain_rate = drain_rate
        self.window = window
        self.age_check = age_check
        self._db = self._open(self.path)
        self._lock = self._take_lock(self.path)
        self._events: queue.Queue[tuple] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # -- state owned by the writer thread ---------------------------------------------------
        self._connected = False
        self._boundary = 0  # highest seq made before the last connect: at or below it is backlog
        self._cursor = {"control": 0, "live": 0, "backlog": 0}
        self._backlog_done = True
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._by_mid: dict[int, _InFlight] = {}
        self._done: list[_InFlight] = []  # acknowledged, deleted by the next transaction
        self._in_window: set[int] = set()
        self._in_flight = [0, 0]
        self._staged_points = 0
        self._staged_since: float | None = None
        self._age_checked = 0.0
        # -- figures shared with other threads (under _cond) -----------------------------------
        self._cond = threading.Condition()
        self._depth = 0
        self._bytes = 0
        self._oldest_made: float | None = None
        self._dropped_messages = 0
        self._dropped_points = 0
        self._recover()

    # -- opening ------------------------------------------------------------------------------

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RuntimeError(f"outbox {path}: cannot open ({exc})") from exc
        return db

    def _take_lock(self, path: Path) -> int:
        """One agent per outbox file: a second would send and delete the first one's messages."""
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._db.close()
            raise RuntimeError(f"outbox {path}: in use by another agent (one file per gateway)") from None
        return fd

    def _recount(self) -> tuple[int, int, int]:
        """The figures as the file has them: messages, their bytes, staged points, drop counters."""
        db = self._db
        depth, size = db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
        staged = db.execute("SELECT coalesce(sum(points), 0) FROM readings").fetchone()[0]
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        with self._cond:
            self._depth, self._bytes, self._staged_points = depth, size, staged
            self._dropped_messages = counters.get("dropped_messages", 0)
            self._dropped_points = counters.get("dropped_points", 0)
        return depth, size, staged

    def _recover(self) -> None:
        """Figures of what a previous run left; staged readings are due at once."""
        depth, size, staged = self._recount()
        if staged:
            self._staged_since = time.monotonic() - self.max_delay
        self._oldest_made = self._query_oldest()
        if depth or staged:
            log.info(
                "outbox %s: %d message(s) (%d bytes) and %d staged point(s) from the last run",
                self.path, depth, size, staged,
            )  # fmt: skip

    # -- the agent's side -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def add_reading(self, reading: Reading) -> None:
        """Stage a device reading; it is on disk within one group commit, in a batch within `max_delay`."""
        self._offer(("reading", reading))

    def put(self, kind: Kind, message: Envelope, *, retain: bool = False) -> None:
        """Take a message for delivery (QoS 1); returns at once, on disk within one group commit."""
        points = message.points if isinstance(message, TelemetryBatch) else 0
        self._offer(("message", kind, encode(message), retain, points))

    def acked(self, mid: int) -> None:
        """paho's thread: the broker has message `mid`."""
        self._events.put(("ack", mid))

    def connected(self) -> None:
        self._events.put(("connected",))

    def disconnected(self) -> None:
        self._events.put(("disconnected",))

    def pending(self) -> int:
        """Messages not yet acknowledged by the broker (staged readings not counted)."""
        with self._cond:
            return self._depth

    def health(self) -> OutboxHealth:
        with self._cond:
            age = None
            if self._oldest_made is not None:
                age = max(0.0, self.clock.now().timestamp() - self._oldest_made)
            return OutboxHealth(
                depth=self._depth,
                bytes=self._bytes,
                oldest_age_s=age,
                dropped_messages=self._dropped_messages,
                dropped_points=self._dropped_points,
            )

    def wait_drained(self, timeout: float) -> bool:
        """Block until no message and no reading waits, or `timeout` seconds; whether it drained."""
        with self._cond:
            return self._cond.wait_for(lambda: self._depth == 0 and self._staged_points == 0, timeout)

    def queued(self) -> int:
        """Events taken and not yet applied by the writer thread (what a fast producer may wait on)."""
        return self._events.qsize()

    def in_window(self) -> int:
        """Messages handed to paho and not yet acknowledged (at most `window` per lane)."""
        with self._cond:
            return sum(self._in_flight)

    def close(self, timeout: float = 5.0) -> None:
        """Pack staged readings, give the window up to `timeout` to be acknowledged, stop, close the file.

        What is not acknowledged stays in the file and goes after the next start.
        """
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._events.put(("stop", time.monotonic() + timeout))
            self._thread.join(timeout + 10)
        self._db.close()
        os.close(self._lock)  # releases the lock

    def _offer(self, event: tuple) -> None:
        if self._closed:  # only during shutdown: a command's ack racing the stop, say
            log.warning("outbox: closed; a %s offered after the stop is not kept", event[0])
            return
        self._events.put(event)
        if self._thread is None:  # not started (tests, tools): apply at once
            self._step([self._events.get_nowait()])

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        stop_at: float | None = None
        retry: list[tuple] = []
        while True:
            events, retry = retry, []
            try:
                if not events:
                    events.append(self._events.get(timeout=self._next_wake() if stop_at is None else 0.05))
                while len(events) < _GROUP:
                    events.append(self._events.get_nowait())
            except queue.Empty:
                pass
            for event in events:
                if event[0] == "stop":
                    stop_at = event[1]
            try:
                self._step(events, stopping=stop_at is not None)
            except sqlite3.Error:
                # The file is what makes messages durable (a full disk, say): log it loudly and retry
                # the same events first (they are lost only if the process dies meanwhile). The
                # transaction was rolled back, so the figures are read again from the file.
                log.exception("outbox %s: write failed; retrying in 1 s", self.path)
                self._recount()
                time.sleep(1.0)
                retry = [event for event in events if event[0] != "ack"]  # acks wait in _done
                continue
            except Exception:
                # A bug, or an event that cannot be stored: the thread must not die, or everything
                # after it would wait in memory. The events go again one by one; one that fails on
                # its own is logged and left out.
                log.exception("outbox: a step failed; applying its events one by one")
                self._recount()
                for event in events:
                    if event[0] == "ack":
                        continue
                    try:
                        self._step([event], stopping=stop_at is not None)
                    except Exception:
                        self._recount()
                        log.exception("outbox: left out a %s it cannot store", event[0])
            waiting = any(self._in_flight) and self._connected
            if stop_at is not None and (not waiting or time.monotonic() >= stop_at):
                if any(self._in_flight):
                    log.warning("outbox: %d message(s) not acknowledged at shutdown; sent after the next start",
                                sum(self._in_flight))  # fmt: skip
                return

    def _next_wake(self) -> float:
        wake = 1.0
        if self._staged_since is not None:
            wake = min(wake, max(0.0, self._staged_since + self.max_delay - time.monotonic()))
        backlog = self._connected and not self._backlog_done and self.drain_rate > 0
        if backlog and self._in_flight[TELEMETRY] < self.window and self._tokens < 1:
            wake = min(wake, (1 - self._tokens) / self.drain_rate)
        return max(wake, 0.001)

    def _step(self, events: Iterable[tuple], *, stopping: bool = False) -> None:
        """Apply events in one transaction, then hand out what the window allows."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                self._apply(event)
            for entry in self._done:  # acknowledged: gone
                if db.execute("DELETE FROM messages WHERE seq = ?", (entry.seq,)).rowcount:
                    with self._cond:
                        self._depth -= 1
                        self._bytes -= entry.size
            self._pack(force=stopping)
            self._enforce_bounds()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._done.clear()
        oldest = self._query_oldest()
        with self._cond:
            self._oldest_made = oldest
            self._cond.notify_all()
        if not stopping:
            self._top_up()

    def _apply(self, event: tuple) -> None:
        what = event[0]
        if what == "reading":
            reading: Reading = event[1]
            points = len(reading.values)
            self._db.execute("INSERT INTO readings (body, points) VALUES (?, ?)", (reading.model_dump_json(), points))
            with self._cond:
                self._staged_points += points
            if self._staged_since is None:
                self._staged_since = time.monotonic()
        elif what == "message":
            _, kind, payload, retain, points = event
            self._insert(kind, payload, retain, points)
        elif what == "ack":
            entry = self._by_mid.pop(event[1], None)
            if entry is not None:
                self._in_window.discard(entry.seq)
                with self._cond:
                    self._in_flight[entry.lane] -= 1
                self._done.append(entry)
        elif what == "connected":
            self._connected = True
            self._boundary = self._db.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
            self._cursor["live"] = max(self._cursor["live"], self._boundary)
            self._backlog_done = False
            self._tokens, self._tokens_at = 0.0, time.monotonic()
        elif what == "disconnected":
            self._connected = False

    def _insert(self, kind: Kind, payload: bytes, retain: bool, points: int) -> None:
        lane = TELEMETRY if kind == Kind.TELEMETRY else CONTROL
        self._db.execute(
            "INSERT INTO messages (lane, kind, retain, payload, points, made) VALUES (?, ?, ?, ?, ?, ?)",
            (lane, kind.value, int(retain), payload, points, self.clock.now().timestamp()),
        )
        with self._cond:
            self._depth += 1
            self._bytes += len(payload)

    # -- readings into batches ------------------------------------------------------------------

    def _pack(self, *, force: bool) -> None:
        """Staged readings into telemetry messages: full ones always, the rest when due (or forced)."""
        due = self._staged_since is not None and time.monotonic() >= self._staged_since + self.max_delay
        while self._staged_points >= self.max_points or (self._staged_points and (due or force)):
            self._pack_one()
        if not self._staged_points:
            self._staged_since = None

    def _pack_one(self) -> None:
        """One batch of up to `max_points` from the oldest staged readings, which leave in the same step.

        A reading that does not fit the room left is split: the part that fits goes now, the rest
        stays staged under the same sequence number, so it is next.
        """
        readings: list[Reading] = []
        room = self.max_points
        staged = self._db.execute("SELECT seq, body FROM readings ORDER BY seq LIMIT ?", (self.max_points,))
        for seq, body in staged.fetchall():
            if room == 0:
                break
            part, rest = split(Reading.model_validate_json(body), room)
            readings.append(part)
            room -= len(part.values)
            if rest is None:
                self._db.execute("DELETE FROM readings WHERE seq = ?", (seq,))
            else:
                self._db.execute(
                    "UPDATE readings SET body = ?, points = ? WHERE seq = ?",
                    (rest.model_dump_json(), len(rest.values), seq),
                )
        if not readings:  # the counter disagrees with the table (cannot happen); trust the table
            self._staged_points = 0
            return
        batch = TelemetryBatch(ts=self.clock.now(), readings=readings)
        self._insert(Kind.TELEMETRY, encode(batch), False, batch.points)
        with self._cond:
            self._staged_points -= batch.points

    # -- bounds ---------------------------------------------------------------------------------

    def _enforce_bounds(self) -> None:
        if self._bytes > self.max_bytes:
            for lane in (TELEMETRY, CONTROL):
                self._drop_oldest(lane, lambda: self._bytes > self.max_bytes)
        now = time.monotonic()
        if now - self._age_checked >= self.age_check:
            self._age_checked = now
            cutoff = self.clock.now().timestamp() - self.max_age
            oldest = self._query_oldest()
            if oldest is not None and oldest < cutoff:
                for lane in (TELEMETRY, CONTROL):
                    self._drop_oldest(lane, lambda: True, made_before=cutoff)

    def _drop_oldest(self, lane: int, more: Callable[[], bool], made_before: float | None = None) -> None:
        """Delete the lane's oldest messages (not those paho holds) while `more()`; count them."""
        messages = points = 0
        after = 0
        while more():
            rows = self._db.execute(
                "SELECT seq, length(payload), points FROM messages WHERE lane = ? AND seq > ?"
                " AND made < ? ORDER BY seq LIMIT ?",
                (lane, after, made_before if made_before is not None else 1e308, _DROP_CHUNK),
            ).fetchall()
            if not rows:
                break
            doomed: list[tuple[int]] = []
            for seq, size, n in rows:
                after = seq
                if seq in self._in_window:
                    continue
                doomed.append((seq,))
                messages += 1
                points += n
                with self._cond:
                    self._depth -= 1
                    self._bytes -= size
                if not more():
                    break
            self._db.executemany("DELETE FROM messages WHERE seq = ?", doomed)
        if messages:
            with self._cond:
                self._dropped_messages += messages
                self._dropped_points += points
                totals = (self._dropped_messages, self._dropped_points)
            self._db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [("dropped_messages", totals[0]), ("dropped_points", totals[1])],
            )
            log.warning(
                "outbox: dropped the %d oldest %s message(s) (%d points) over the %s bound; %d dropped so far",
                messages, "telemetry" if lane == TELEMETRY else "control", points,
                "age" if made_before is not None else "size", totals[0],
            )  # fmt: skip

    def _query_oldest(self) -> float | None:
        row = self._db.execute("SELECT made FROM messages ORDER BY seq LIMIT 1").fetchone()
        return row[0] if row else None

    # -- handing messages to paho ---------------------------------------------------------------

    def _top_up(self) -> None:
        if not self._connected:
            return
        self._hand_out("control", CONTROL, "seq > ?", self.window - self._in_flight[CONTROL])
        self._hand_out("live", TELEMETRY, "seq > ?", self.window - self._in_flight[TELEMETRY])
        free = self.window - self._in_flight[TELEMETRY]
        if free > 0 and not self._backlog_done:
            if self.drain_rate > 0:
                now = time.monotonic()
                burst = max(1.0, self.drain_rate * 0.1)
                self._tokens = min(burst, self._tokens + (now - self._tokens_at) * self.drain_rate)
                self._tokens_at = now
                free = min(free, int(self._tokens))
            if free > 0:
                sent = self._hand_out("backlog", TELEMETRY, "seq > ? AND seq <= ?", free, self._boundary)
                if self.drain_rate > 0:
                    self._tokens -= sent

    def _hand_out(self, cursor: str, lane: int, where: str, free: int, *extra: int) -> int:
        """Publish up to `free` of the lane's next messages after the cursor, oldest first."""
        if free <= 0:
            return 0
        limit = free + len(self._in_window)
        rows = self._db.execute(
            f"SELECT seq, kind, retain, payload FROM messages WHERE lane = ? AND {where} ORDER BY seq LIMIT ?",
            (lane, self._cursor[cursor], *extra, limit),
        ).fetchall()
        exhausted = len(rows) < limit
        sent = 0
        for seq, kind, retain, payload in rows:
            if sent == free:
                exhausted = False
                break
            self._cursor[cursor] = seq
            if seq in self._in_window:  # paho holds it from before a reconnect and re-sends it itself
                continue
            mid = self.publisher.publish(Kind(kind), payload, retain=bool(retain))
            if mid is None:
                break
            self._by_mid[mid] = _InFlight(seq, lane, len(payload))
            self._in_window.add(seq)
            with self._cond:
                self._in_flight[lane] += 1
            sent += 1
        if cursor == "backlog" and exhausted:
            self._backlog_done = True  # nothing made before the last connect is left to hand out
        return sent

    def stats(self) -> dict[str, int]:
        """Figures for logs and benchmarks."""
        with self._cond:
            return {"depth": self._depth, "bytes": self._bytes, "staged_points": self._staged_points,
                    "in_window": sum(self._in_flight)}  # fmt: skip


def counters_of(path: Path) -> dict[str, int]:
    """The persistent drop counters of an outbox file (for tools and tests)."""
    with sqlite3.connect(path) as db:
        return {name: value for name, value in db.execute("SELECT name, value FROM counters")}
