"""Periodic work of the ingest process: the gateway watchdog and storage maintenance.

- A gateway whose last will said offline, and that stayed offline past the grace period,
  gets a `gateway_offline` alarm (and a ticket when configured); it clears when the gateway
  says online again.
- Telemetry partitions are created ahead for this month and the next, and dropped past the
  retention; seen message ids and dead letters past their retention are deleted.
"""

import logging
import threading
import time
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

from cloud.domain import alarms, workflow
from cloud.ingest.control import GATEWAY_OFFLINE_RULE
from cloud.ingest.last_values import LastValues
from cloud.settings import CloudSettings
from cloud.storage import telemetry
from contract.clock import Clock
from contract.common import Severity

log = logging.getLogger(__name__)


def raise_silent_gateways(conn: psycopg.Connection, settings: CloudSettings, clock: Clock) -> list[str]:
    """Raise `gateway_offline` for every gateway offline longer than the grace period."""
    now = clock.now()
    cutoff = now - timedelta(seconds=settings.gateway_offline_grace_seconds)
    raised = []
    with conn.transaction():
        rows = conn.execute(
            """SELECT g.id, g.site_id, s.timezone, g.status_since, g.status_reason
               FROM gateways g JOIN sites s ON s.id = g.site_id
               WHERE g.status = 'offline' AND g.status_since <= %s
                 AND NOT EXISTS (SELECT 1 FROM alarms a
                                 WHERE a.alarm_key = 'gateway:' || g.id || ':' || %s AND a.state <> 'cleared')
               FOR UPDATE OF g SKIP LOCKED""",
            (cutoff, GATEWAY_OFFLINE_RULE),
        ).fetchall()
        for row in rows:
            silent = int((now - row["status_since"]).total_seconds())
            alarms.raise_gateway_alarm(
                conn,
                gateway_id=row["id"],
                site_id=row["site_id"],
                site_timezone=row["timezone"],
                rule=GATEWAY_OFFLINE_RULE,
                severity=Severity.MAJOR,
                message=f"gateway silent for {silent} s ({row['status_reason'] or 'connection lost'})",
                ticket_kind=settings.gateway_offline_ticket,
                raised_at=row["status_since"],
                now=now,
                cfg=workflow.settings_from(settings),
            )
            raised.append(row["id"])
            log.warning("gateway %s silent since %s: alarm raised", row["id"], row["status_since"])
    return raised


def purge_seen_messages(conn: psycopg.Connection, settings: CloudSettings, clock: Clock) -> int:
    cutoff = clock.now() - timedelta(days=settings.seen_messages_retention_days)
    total = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                """DELETE FROM ingest_messages WHERE message_id IN (
                       SELECT message_id FROM ingest_messages WHERE received_at < %s LIMIT 10000)""",
                (cutoff,),
            )
        total += cur.rowcount
        if cur.rowcount < 10000:
            return total


def maintain_storage(
    database_url: str, partitions: telemetry.Partitions, settings: CloudSettings, clock: Clock
) -> None:
    now = clock.now()
    this_month = telemetry.month_start(now)
    partitions.ensure(database_url, [this_month, telemetry.next_month(this_month)])
    partitions.drop_older_than(database_url, now - timedelta(days=settings.telemetry_retention_days))
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        purged = purge_seen_messages(conn, settings, clock)
        if purged:
            log.info("forgot %d message ids older than %d days", purged, settings.seen_messages_retention_days)
        with conn.transaction():
            cur = conn.execute(
                "DELETE FROM dead_letters WHERE received_at < %s",
                (clock.now() - timedelta(days=settings.dead_letters_retention_days),),
            )
        if cur.rowcount:
            log.info("deleted %d dead letters older than %d days", cur.rowcount, settings.dead_letters_retention_days)


class Housekeeper(threading.Thread):
    def __init__(
        self,
        *,
        database_url: str,
        settings: CloudSettings,
        clock: Clock,
        partitions: telemetry.Partitions,
        last_values: LastValues,
    ) -> None:
        super().__init__(name="housekeeper", daemon=True)
        self._url = database_url
        self._settings = settings
        self._clock = clock
        self._partitions = partitions
        self._last_values = last_values
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        next_watchdog = next_maintenance = next_flush = 0.0
        tick = min(self._settings.last_values_flush_seconds, self._settings.watchdog_interval_seconds, 1.0)
        while True:
            stopping = self._stop_event.wait(tick)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._url, row_factory=dict_row)
                mono = time.monotonic()  # scheduling only; domain time comes from the clock
                if mono >= next_flush or stopping:
                    self._last_values.flush(conn)
                    next_flush = mono + self._settings.last_values_flush_seconds
                if stopping:
                    break
                if mono >= next_watchdog:
                    raise_silent_gateways(conn, self._settings, self._clock)
                    next_watchdog = mono + self._settings.watchdog_interval_seconds
                if mono >= next_maintenance:
                    maintain_storage(self._url, self._partitions, self._settings, self._clock)
                    next_maintenance = mono + self._settings.maintenance_interval_seconds
            except psycopg.OperationalError as exc:
                log.error("housekeeping: database unavailable (%s); will retry", exc)
                if conn is not None:
                    conn.close()
                conn = None
                if stopping:
                    break
            except Exception:
                log.exception("housekeeping failed; will retry")
                if stopping:
                    break
        if conn is not None:
            conn.close()
