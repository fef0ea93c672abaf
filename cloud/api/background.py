"""The API process's background thread: the workflow scheduler, the patrol pass, command expiry and the notification
dispatcher.

Every API process may run it; each change it makes happens once (see cloud/domain/scheduler.py
and cloud/notify/dispatch.py).
"""

import logging
import threading
from datetime import datetime

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
        """One pass of every time-driven job. Each job has its own connection and its own failure:
        one that keeps failing (bad data, say) must not hold up deadlines, patrols or deliveries."""
        now = self.clock.now()
        for name, job in (
            ("SLA", self._sla),
            ("patrol", self._patrol),
            ("command expiry", self._expire_commands),
            ("delivery", self._deliver),
        ):
            try:
                job(now)
            except Exception:
                log.exception("scheduler: the %s pass failed; trying again next time", name)

    def _sla(self, now: datetime) -> None:
        with self.pool.connection() as conn:
            counts = scheduler.run_pass(conn, now, self.cfg)
        if counts.warned or counts.breached or counts.closed:
            log.info("scheduler: %d warned, %d breached, %d closed", counts.warned, counts.breached, counts.closed)

    def _patrol(self, now: datetime) -> None:
        with self.pool.connection() as conn:
            rounds = patrol.run_pass(conn, now, self.patrol, self.cfg)
        if rounds.missed or rounds.alarms or rounds.finished:
            log.info(
                "patrol: %d checkpoints missed, %d alarms raised, %d rounds finished",
                rounds.missed,
                rounds.alarms,
                rounds.finished,
            )

    def _expire_commands(self, now: datetime) -> None:
        with self.pool.connection() as conn, conn.transaction():
            expired = commands.expire_due(conn, now)
        if expired:
            log.info("scheduler: %d commands expired without an answer", expired)

    def _deliver(self, now: datetime) -> None:
        while True:
            sent = deliver_due(self.pool.connection, cipher=self.cipher, email=self.email, sms=self.sms, now=now)
            if sent.claimed < 50:
                break

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.scheduler_interval_seconds):
            self.tick()
