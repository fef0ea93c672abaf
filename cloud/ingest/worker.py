"""The ingest process: one MQTT consumer feeding two lanes (telemetry, control) and a housekeeper."""

import logging
import queue
import signal
import threading

import psycopg

from cloud.domain.registry import Resolver
from cloud.ingest.consumer import Consumer
from cloud.ingest.control import ControlHandler
from cloud.ingest.housekeeping import Housekeeper, maintain_storage
from cloud.ingest.inbound import Inbound
from cloud.ingest.last_values import LastValues
from cloud.ingest.telemetry_writer import TelemetryWriter
from cloud.settings import CloudSettings
from cloud.storage import migrate, telemetry
from contract.clock import Clock, SystemClock
from contract.topics import Kind

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
        self.consumer = Consumer(
            url=settings.mqtt_url,
            client_id=settings.mqtt_client_id,
            deliver=self._route,
            username=settings.mqtt_username,
            password=settings.mqtt_password,
        )
        self.telemetry_writer = TelemetryWriter(
            database_url=self.database_url,
            inbox=self.telemetry_inbox,
            ack=self.consumer.ack,
            resolver=self.resolver,
            partitions=self.partitions,
            last_values=self.last_values,
            clock=self.clock,
            batch_messages=settings.ingest_batch_messages,
            batch_delay=settings.ingest_batch_delay_ms / 1000,
        )
        self.control = ControlHandler(
            database_url=self.database_url,
            inbox=self.control_inbox,
            ack=self.consumer.ack,
            resolver=self.resolver,
            clock=self.clock,
        )
        self.housekeeper = Housekeeper(
            database_url=self.database_url,
            settings=settings,
            clock=self.clock,
            partitions=self.partitions,
            last_values=self.last_values,
        )
        self._stopped = threading.Event()

    def _route(self, item: Inbound) -> None:
        if self._stopped.is_set():
            return  # not acknowledged: the broker delivers it again to the next session
        # blocks when a lane is full: the MQTT thread stops reading and the broker holds the rest
        if item.parsed is not None and item.parsed.kind == Kind.TELEMETRY:
            self.telemetry_inbox.put(item)
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
        self.telemetry_writer.start()
        self.control.start()
        self.housekeeper.start()
        self.consumer.start()
        log.info("ingest started (MQTT %s, client id %s)", self.settings.mqtt_url, self.settings.mqtt_client_id)
        return self

    def stop(self) -> None:
        """Stop taking messages, finish and commit what is queued, then disconnect."""
        if self._stopped.is_set():
            return
        self._stopped.set()  # new deliveries are left unacknowledged from here on
        self.telemetry_writer.stop()
        self.control.stop()
        self.telemetry_writer.join(30)
        self.control.join(30)
        self.housekeeper.stop()
        self.housekeeper.join(30)
        self.consumer.stop()
        self.resolver.close()
        log.info("ingest stopped")

    def __enter__(self) -> "IngestWorker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_ingest(settings: CloudSettings) -> None:
    """Run until SIGINT or SIGTERM (the `community cloud --role ingest` entry)."""
    worker = IngestWorker(settings).start()
    done = threading.Event()

    def _stop(_sig: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    done.wait()
    worker.stop()
