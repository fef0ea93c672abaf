"""The ingest process: two MQTT connections feeding two lanes, and a housekeeper.

Telemetry arrives on one connection and is written by `ingest_telemetry_writers` threads;
everything else (births, status, alarms, events, command results) arrives on a connection of
its own and is handled by the control lane, so a telemetry backlog never delays an alarm.
"""

import gc
import logging
import queue
import signal
import threading
from datetime import timedelta

import psycopg

from cloud.domain import workflow
from cloud.domain.registry import Resolver
from cloud.ingest.consumer import Consumer
from cloud.ingest.control import ControlHandler
from cloud.ingest.frames import FrameStore
from cloud.ingest.housekeeping import Housekeeper, maintain_storage
from cloud.ingest.inbound import Inbound
from cloud.ingest.last_values import LastValues
from cloud.ingest.telemetry_writer import TelemetryWriter
from cloud.settings import CloudSettings
from cloud.storage import migrate, telemetry
from contract.clock import Clock, SystemClock
from contract.topics import UPLINK_KINDS, Kind

log = logging.getLogger(__name__)


class IngestWorker:
    def __init__(self, settings: CloudSettings, *, clock: Clock | None = None, apply_migrations: bool = True) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.database_url = settings.require_database_url()
        self._apply_migrations = apply_migrations
        self.telemetry_inbox: queue.Queue[Inbound] = queue.Queue(maxsize=settings.ingest_queue_size)
        self.control_inbox: queue.Queue[Inbound] = queue.Queue(maxsize=settings.ingest_queue_size)
        self.resolver = Resolver(self.database_url)
        self.partitions = telemetry.Partitions()
        self.last_values = LastValues()
        self.frames = FrameStore(settings.frames_dir)
        self._stopped = threading.Event()
        login = {
            "username": settings.mqtt_username,
            "password": settings.mqtt_password,
            "ca_file": settings.mqtt_ca_file,
        }
        self.telemetry_consumer = Consumer(
            url=settings.mqtt_url,
            client_id=settings.mqtt_client_id,
            deliver=self._route,
            kinds=(Kind.TELEMETRY,),
            **login,
        )
        self.control_consumer = Consumer(
            url=settings.mqtt_url,
            client_id=f"{settings.mqtt_client_id}-control",
            deliver=self._route,
            kinds=tuple(k for k in UPLINK_KINDS if k != Kind.TELEMETRY),
            **login,
        )
        self.telemetry_writers = [
            TelemetryWriter(
                database_url=self.database_url,
                inbox=self.telemetry_inbox,
                resolver=self.resolver,
                partitions=self.partitions,
                last_values=self.last_values,
                clock=self.clock,
                batch_messages=settings.ingest_batch_messages,
                batch_delay=settings.ingest_batch_delay_ms / 1000,
                max_age=timedelta(days=settings.telemetry_retention_days),
                name=f"telemetry-writer-{i + 1}",
            )
            for i in range(settings.ingest_telemetry_writers)
        ]
        self.control = ControlHandler(
            database_url=self.database_url,
            inbox=self.control_inbox,
            resolver=self.resolver,
            clock=self.clock,
            workflow_settings=workflow.settings_from(settings),
            attachments_dir=settings.attachments_dir,
        )
        self.housekeeper = Housekeeper(
            database_url=self.database_url,
            settings=settings,
            clock=self.clock,
            partitions=self.partitions,
            last_values=self.last_values,
        )

    @property
    def consumers(self) -> tuple[Consumer, Consumer]:
        return (self.telemetry_consumer, self.control_consumer)

    @property
    def subscribed(self) -> bool:
        return all(c.subscribed.is_set() for c in self.consumers)

    @property
    def connected(self) -> bool:
        return all(c.connected.is_set() for c in self.consumers)

    @property
    def committed_points(self) -> int:
        return sum(w.committed_points for w in self.telemetry_writers)

    @property
    def committed_messages(self) -> int:
        return sum(w.committed_messages for w in self.telemetry_writers)

    @property
    def duplicates(self) -> int:
        return sum(w.duplicates for w in self.telemetry_writers)

    def _route(self, item: Inbound) -> None:
        if self._stopped.is_set():
            return  # not acknowledged: the broker delivers it again to the next session
        # blocks when a lane is full: that connection stops reading and the broker holds the rest
        if item.parsed is not None and item.parsed.kind == Kind.TELEMETRY:
            self.telemetry_inbox.put(item)
        elif item.parsed is not None and item.parsed.kind == Kind.CAMERA_FRAME:
            self.frames.store(item)  # the latest frame only: a file, no queue, no database
        else:
            self.control_inbox.put(item)

    def start(self) -> "IngestWorker":
        if self._apply_migrations:
            applied = migrate.upgrade(self.database_url)
            if applied:
                log.info("database migrated: %s", ", ".join(applied))
        with psycopg.connect(self.database_url) as conn:
            self.partitions.load(conn)
        maintain_storage(self.database_url, self.partitions, self.settings, self.clock)
        for writer in self.telemetry_writers:
            writer.start()
        self.control.start()
        self.housekeeper.start()
        for consumer in self.consumers:
            consumer.start()
        log.info(
            "ingest started (MQTT %s, client id %s, %d telemetry writers)",
            self.settings.mqtt_url,
            self.settings.mqtt_client_id,
            len(self.telemetry_writers),
        )
        return self

    def stop(self) -> None:
        """Stop taking messages, finish and commit what is queued, then disconnect."""
        if self._stopped.is_set():
            return
        self._stopped.set()  # new deliveries are left unacknowledged from here on
        for worker in (*self.telemetry_writers, self.control):
            worker.stop()
        for worker in (*self.telemetry_writers, self.control):
            worker.join(30)
        self.housekeeper.stop()
        self.housekeeper.join(30)
        for consumer in self.consumers:
            consumer.stop()
        self.resolver.close()
        log.info("ingest stopped")

    def __enter__(self) -> "IngestWorker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_ingest(settings: CloudSettings) -> None:
    """Run until SIGINT or SIGTERM (the `community cloud --role ingest` entry)."""
    worker = IngestWorker(settings).start()
    # Every message makes thousands of short-lived objects; the default collector thresholds
    # make full collections (all threads stopped) take a quarter of the ingest's CPU. Freeze
    # what start-up made and collect young objects less often (measured: docs/benchmarks.md).
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)
    done = threading.Event()

    def _stop(_sig: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    done.wait()
    worker.stop()
