"""The control lane: births, status, alarms, events, command results, health, config state, and door
access (access events, whitelist requests, camera snapshots of alarms), one at a time.

They are few and they matter quickly (an alarm should become a ticket in milliseconds), so
they have their own queue and connection and never wait behind a telemetry batch.
"""

import logging
import queue
import re
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from cloud.domain import access_events, alarms, commands, patrol, registry, remote_config, whitelist, workflow
from cloud.domain.changes import notify
from cloud.domain.registry import Resolver
from cloud.ingest import deadletter
from cloud.ingest.db_worker import DatabaseWorker
from cloud.ingest.inbound import Inbound
from contract.access import AccessEvent, WhitelistRequest
from contract.clock import Clock
from contract.common import format_validation_errors
from contract.messages import (
    AlarmMessage,
    BirthMessage,
    CommandAck,
    ConfigState,
    Envelope,
    EventMessage,
    HealthMessage,
    InvalidMessage,
    StatusMessage,
    decode,
)
from contract.patrol import PATROL_SCAN_EVENT, PatrolScanData
from contract.topics import Kind

log = logging.getLogger(__name__)

GATEWAY_OFFLINE_RULE = "gateway_offline"
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ControlHandler(DatabaseWorker):
    def __init__(
        self,
        *,
        database_url: str,
        inbox: "queue.Queue[Inbound]",
        resolver: Resolver,
        clock: Clock,
        workflow_settings: workflow.Settings | None = None,
        attachments_dir: Path = Path("var/attachments"),
    ) -> None:
        super().__init__(name="control-handler", database_url=database_url)
        #: where access-event and alarm snapshots (JPEG files) are kept, as ticket attachments are
        self._attachments_dir = attachments_dir
        self._workflow = workflow_settings
        self._inbox = inbox
        self._resolver = resolver
        self._clock = clock
        self.handled = 0

    def run(self) -> None:
        while not self._stop_event.is_set() or not self._inbox.empty():
            try:
                item = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if not self._until_stored(lambda i=item: self.handle(i), f"a message on {item.topic}"):
                break
        self._drop_connection()

    def handle(self, item: Inbound) -> None:
        conn = self._connection()
        try:
            if item.parsed is None:
                raise InvalidMessage(f"topic {item.topic!r} is not in the contract")
            if not item.payload and item.parsed.kind in (Kind.BIRTH, Kind.STATUS):
                # an empty retained message removes the retained state (MQTT's convention): nothing to store
                log.debug("retained %s of %s removed", item.parsed.kind.value, item.parsed.gateway)
                item.ack()
                return
            msg = decode(item.parsed.kind, item.payload)
            with conn.transaction():
                if self._first_time(conn, item, msg):
                    self._dispatch(conn, item, msg)
        except InvalidMessage as exc:
            with conn.transaction():
                deadletter.store(conn, topic=item.topic, payload=item.payload, reason=exc.reason)
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # a bug must not lose the message: keep it, say so, go on
            log.exception("failed to handle a message on %s", item.topic)
            if conn.closed:
                raise psycopg.OperationalError("connection closed") from exc
            with conn.transaction():
                reason = f"internal error: {type(exc).__name__}: {exc}"
                deadletter.store(conn, topic=item.topic, payload=item.payload, reason=reason)
        item.ack()
        self.handled += 1

    def _first_time(self, conn: psycopg.Connection, item: Inbound, msg: Envelope) -> bool:
        assert item.parsed is not None
        row = conn.execute(
            """INSERT INTO ingest_messages (message_id, gateway_id, kind) VALUES (%s, %s, %s)
               ON CONFLICT (message_id) DO NOTHING RETURNING message_id""",
            (msg.id, item.parsed.gateway, item.parsed.kind.value),
        ).fetchone()
        return row is not None

    def _dispatch(self, conn: psycopg.Connection, item: Inbound, msg: Envelope) -> None:
        assert item.parsed is not None
        site, gateway = item.parsed.site, item.parsed.gateway
        now = self._clock.now()
        if isinstance(msg, BirthMessage):
            count = registry.record_birth(conn, site=site, gateway=gateway, birth=msg, now=now)
            remote_config.record_running(conn, gateway=gateway, version=msg.config_version, at=msg.ts)
            self._resolver.forget_gateway(gateway)
            log.info("gateway %s/%s announced %d devices", site, gateway, count)
            return
        self._resolver.check_gateway(site, gateway)
        if isinstance(msg, StatusMessage):
            self._status(conn, site, gateway, msg, now)
        elif isinstance(msg, AlarmMessage):
            self._alarm(conn, site, gateway, msg, now)
        elif isinstance(msg, EventMessage):
            self._event(conn, site, gateway, msg, now)
        elif isinstance(msg, CommandAck):
            self._command_ack(conn, site, gateway, msg, now)
        elif isinstance(msg, HealthMessage):
            registry.record_health(conn, gateway=gateway, health=msg)
            if msg.config_version is not None:
                remote_config.record_running(conn, gateway=gateway, version=msg.config_version, at=msg.ts)
        elif isinstance(msg, ConfigState):
            remote_config.record_state(conn, gateway=gateway, state=msg)
            self._record_event(
                conn, site, gateway, None, msg.ts, now, f"config_{msg.status}", msg.reason, msg.model_dump(mode="json")
            )
            notify(
                conn,
                "config_state",
                {"site": site, "gateway": gateway, "version": msg.version, "status": msg.status},
            )
        elif isinstance(msg, AccessEvent):
            stored = access_events.store(
                conn, site=site, gateway=gateway, msg=msg, now=now, attachments_dir=self._attachments_dir
            )
            if stored:
                notify(
                    conn,
                    "access_event",
                    {"site": site, "id": str(msg.id), "gateway": gateway, "door": msg.door, "granted": msg.granted},
                )
        elif isinstance(msg, WhitelistRequest):
            whitelist.request_full(conn, gateway)
            log.info("gateway %s asks for its full whitelist (has %s: %s)", gateway, msg.have_version, msg.reason)

    def _command_ack(self, conn: psycopg.Connection, site: str, gateway: str, msg: CommandAck, now: datetime) -> None:
        """The command's final state; the answer itself is kept as a `command_ack` event, known command or not."""
        outcome = commands.apply_ack(conn, gateway=gateway, ack=msg, now=now)
        device_id = None
        row = conn.execute("SELECT device_id, gateway_id FROM commands WHERE id = %s", (msg.command_id,)).fetchone()
        if row is not None and row["gateway_id"] == gateway:
            device_id = row["device_id"]
        data = {**msg.model_dump(mode="json"), "outcome": outcome}
        self._record_event(conn, site, gateway, device_id, msg.ts, now, "command_ack", msg.reason, data)
        notify(
            conn,
            "command",
            {"site": site, "command_id": str(msg.command_id), "status": msg.status, "outcome": outcome},
        )
        log.info("command %s on %s: %s (%s)", msg.command_id, gateway, msg.status, outcome)

    def _device(self, conn: psycopg.Connection, site: str, gateway: str, name: str) -> registry.DeviceRef:
        device_id = self._resolver.device_ids(site, gateway, {name})[name]
        return registry.device_ref(conn, device_id)

    def _status(self, conn: psycopg.Connection, site: str, gateway: str, msg: StatusMessage, now: datetime) -> None:
        registry.set_gateway_status(conn, gateway=gateway, state=msg.state, reason=msg.reason, at=now)
        if msg.state == "online":
            cleared = alarms.clear(
                conn, key=alarms.gateway_key(gateway, GATEWAY_OFFLINE_RULE), cleared_at=now, value=None, now=now
            )
            if cleared:
                log.info("gateway %s is back online; alarm %s cleared", gateway, cleared)
        self._record_event(conn, site, gateway, None, msg.ts, now, f"gateway_{msg.state}", msg.reason, {})
        notify(conn, "gateway", {"site": site, "gateway": gateway, "state": msg.state})

    def _alarm(self, conn: psycopg.Connection, site: str, gateway: str, msg: AlarmMessage, now: datetime) -> None:
        device = self._device(conn, site, gateway, msg.device)
        if msg.action == "raise":
            outcome = alarms.raise_device_alarm(conn, device=device, msg=msg, now=now, cfg=self._workflow)
            if outcome.duplicate:
                log.info("alarm %s on %s reported again while still active", msg.rule, msg.device)
            elif outcome.ticket is not None:
                log.info(
                    "alarm %s on %s/%s -> ticket %s (%s)",
                    msg.rule,
                    gateway,
                    msg.device,
                    outcome.ticket.number,
                    "opened" if outcome.ticket.created else "repeat",
                )
            # cloud.domain.alarms announces `alarm_raised` (with this message's id)
        else:
            cleared = alarms.clear(
                conn, key=alarms.device_key(device.id, msg.rule), cleared_at=msg.ts, value=msg.value, now=now
            )
            if cleared is None:
                # normal after a gateway restart: it settles every rule once, clear or not
                log.debug("clear of alarm %s on %s, which is not active here; nothing to clear", msg.rule, msg.device)

    def _event(self, conn: psycopg.Connection, site: str, gateway: str, msg: EventMessage, now: datetime) -> None:
        device_id = None
        if msg.device is not None:
            device_id = self._resolver.device_ids(site, gateway, {msg.device})[msg.device]
            if msg.kind in ("device_online", "device_offline"):
                registry.set_device_online(conn, device_id=device_id, online=msg.kind == "device_online", at=msg.ts)
                notify(
                    conn,
                    "device",
                    {"site": site, "gateway": gateway, "device_id": device_id, "online": msg.kind == "device_online"},
                )
        data = msg.data
        if msg.kind == "alarm_snapshot":
            # the JPEG goes to a file linked to the alarm (and its ticket), not into the events table
            alarm_device = data.get("alarm_device")
            alarm_device_id = None
            if isinstance(alarm_device, str) and _DEVICE_NAME.match(alarm_device):
                alarm_device_id = self._resolver.device_ids(site, gateway, {alarm_device})[alarm_device]
            data = access_events.attach_alarm_snapshot(
                conn,
                device_id=alarm_device_id,
                data=data,
                camera=msg.device,
                now=now,
                attachments_dir=self._attachments_dir,
            )
            if data.get("alarm_id") is not None:
                notify(conn, "alarm_snapshot", {"site": site, "alarm_id": data["alarm_id"]})
        elif msg.kind == PATROL_SCAN_EVENT:
            data = self._patrol_scan(conn, site, gateway, msg, now)
        self._record_event(conn, site, gateway, device_id, msg.ts, now, msg.kind, msg.detail, data)

    @staticmethod
    def _patrol_scan(conn: psycopg.Connection, site: str, gateway: str, msg: EventMessage, now: datetime) -> dict:
        """A checkpoint reader's scan, counted on its round (docs/patrol.md); kept as an event in any case."""
        try:
            scan = PatrolScanData.model_validate(msg.data)
        except ValidationError as exc:
            reason = format_validation_errors(exc.errors(include_url=False))
            log.warning("patrol scan from gateway %s/%s not counted: %s (kept as an event)", site, gateway, reason)
            return {**msg.data, "outcome": "invalid", "reason": reason}
        result = patrol.record_scan(
            conn,
            sites=[site],
            tag=scan.tag,
            at=msg.ts,
            now=now,
            via="reader",
            gateway_id=gateway,
            device=msg.device,
            card=scan.card,
            message_id=msg.id,
        )
        if result.outcome == "unknown_tag":
            log.warning(
                "patrol scan of unknown tag %r from gateway %s/%s (%s): kept", scan.tag, site, gateway, msg.device
            )
        elif result.outcome not in ("on_time", "late"):
            log.info("patrol scan from gateway %s not counted (%s): %s", gateway, result.outcome, result.reason)
        return {**msg.data, "scan_id": result.scan_id, "outcome": result.outcome}

    @staticmethod
    def _record_event(
        conn: psycopg.Connection,
        site: str,
        gateway: str,
        device_id: int | None,
        at: datetime,
        now: datetime,
        kind: str,
        detail: str | None,
        data: dict,
    ) -> None:
        conn.execute(
            """INSERT INTO events (at, received_at, site_id, gateway_id, device_id, kind, detail, data)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (at, now, site, gateway, device_id, kind, detail, Jsonb(data)),
        )
