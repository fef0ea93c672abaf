"""The API process's background thread: the workflow scheduler, the patrol pass, command expiry and the notification
dispatcher.

Every API process may run it; each change it makes happens once (see cloud/domain/scheduler.py
and cloud/notify/dispatch.py).
"""

import logging
import threading

from psycopg_pool import ConnectionPool

from cloud.domain import commands, patrol, scheduler, workflow
from cloud.notify.dispatch import deliver_due
from cloud.notify.email import email_sender_from
from cloud.notify.sms import sms_provider_from
from cloud.security.pii import PiiCipher
from cloud.settings import CloudSettings
from contract.clock import Clock

log = logging.getLogger(__name__)


class Background(threading.Thread):
    def __init__(self, pool: ConnectionPool, settings: CloudSettings, clock: Clock, cipher: PiiCipher) -> None:
        super().__init__(name="workflow-scheduler", daemon=True)
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.cipher = cipher
        self.cfg = workflow.settings_from(settings)
        self.patrol = patrol.settings_from(settings)
        self.email = email_sender_from(settings)
        self.sms = sms_provider_from(settings, settings.data_dir)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def tick(self) -> None:
        """One scheduler pass and one round of deliveries."""
        now = self.clock.now()
        with self.pool.connection() as conn:
            counts = scheduler.run_pass(conn, now, self.cfg)
            rounds = patrol.run_pass(conn, now, self.patrol, self.cfg)
            with conn.transaction():
                expired = commands.expire_due(conn, now)
        if expired:
            log.info("scheduler: %d commands expired without an answer", expired)
        if rounds.missed or rounds.alarms or rounds.finished:
            log.info(
                "patrol: %d checkpoints missed, %d alarms raised, %d rounds finished",
                rounds.missed,
                rounds.alarms,
                rounds.finished,
            )
        if counts.warned or counts.breached or counts.closed:
            log.info("scheduler: %d warned, %d breached, %d closed", counts.warned, counts.breached, counts.closed)
        while True:
            sent = deliver_due(self.pool.connection, cipher=self.cipher, email=self.email, sms=self.sms, now=now)
            if sent.claimed < 50:
                break

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.scheduler_interval_seconds):
            try:
                self.tick()
            except Exception:
                log.exception("scheduler pass failed; trying again next time")
