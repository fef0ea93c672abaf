"""A thread with its own database connection that holds on to its work while the database is away.

The telemetry writers and the control lane both work this way: a unit of work (a batch, a
message) is retried with backoff until the database takes it, and the MQTT messages behind it
stay unacknowledged meanwhile, so the broker keeps them.
"""

import contextlib
import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg.rows import dict_row

log = logging.getLogger(__name__)


class DatabaseWorker(threading.Thread):
    def __init__(self, *, name: str, database_url: str) -> None:
        super().__init__(name=name, daemon=True)
        self._url = database_url
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, row_factory=dict_row)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _until_stored(self, work: Callable[[], None], what: str) -> bool:
        """Run `work` until the database takes it; False if told to stop first (nothing acknowledged)."""
        delay = 0.5
        while True:
            try:
                work()
                return True
            except psycopg.OperationalError as exc:
                log.error("%s not stored, database unavailable (%s); retrying in %.1fs", what, exc, delay)
                self._drop_connection()
                if self._stop_event.wait(delay):
                    log.warning("stopping with %s unacknowledged; the broker keeps it", what)
                    return False
                delay = min(delay * 2, 30.0)
