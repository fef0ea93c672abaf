"""The door-access controller of a gateway: credentials in, decisions, the relay, events and alarms out.

It owns the decisions' state (anti-passback, repeat suppression for cameras), the door watches
and the relay tasks; the agent gives it three callables so it stays free of MQTT and Modbus:
`open_relay(door)` (a pulse of the door controller's coil through the agent's command path),
`emit(kind, message)` (the durable outbox) and `online()` (whether the uplink is connected right
now, for the event's `offline` flag). Every decision is made from the whitelist on disk, at once:
nothing on the path from a swipe to the relay waits for the cloud.

It is also the cameras' `CameraSink` (edge/access/camera.py): faces and QR codes seen at a door
are decided like cards, with the distance and a JPEG snapshot in the event; camera alarms go out
as AlarmMessages naming the camera (announced as a device in the birth).
"""

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from contract.access import AccessEvent
from contract.clock import Clock
from contract.common import Category, Location, Severity, TicketKind
from contract.envelope import Envelope
from contract.gateway_config import AccessConfig, DoorConfig, ReaderConfig
from contract.messages import AlarmMessage, EventMessage, Reading
from contract.topics import Kind
from edge.access.decide import Decision, Passback, decide_card, decide_face, decide_secret
from edge.access.doors import FORCED, DoorAlarm, DoorWatch
from edge.access.readers import Credential
from edge.access.whitelist import WhitelistStore

log = logging.getLogger(__name__)

#: Seconds during which a camera seeing the same face or QR code at a door does not decide again.
REPEAT_AFTER = 3.0
#: The contact device's metric that, when true in a reading, counts as a grant (request-to-exit).
EXIT_BUTTON = "exit_button"
#: Base64 characters of a snapshot an AccessEvent may carry (contract.access.AccessEvent.snapshot_jpeg).
MAX_SNAPSHOT = 700_000
#: Seconds between checks of held-open doors.
CHECK_INTERVAL = 0.25
#: Camera alarm rules: severity, ticket and category of the AlarmMessage.
CAMERA_RULES: dict[str, tuple[Severity, TicketKind, Category]] = {
    "camera_offline": (Severity.MAJOR, TicketKind.REPAIR, Category.FACILITY),
    "camera_tamper": (Severity.MAJOR, TicketKind.SAFETY, Category.SAFETY),
}

OpenRelay = Callable[[DoorConfig], Awaitable[None]]


def covers(camera: Location, device: Location) -> bool:
    """Whether a camera at `camera` watches a device at `device`: same building, and the same floor
    and room where the camera's location names them (a camera with no building covers nothing)."""
    if camera.building is None or camera.building != device.building:
        return False
    return all(getattr(camera, f) is None or getattr(camera, f) == getattr(device, f) for f in ("floor", "room"))


def snapshot_event(ts: datetime, camera: str, device: str, rule: str, jpeg: bytes) -> EventMessage:
    """The `alarm_snapshot` event that attaches a camera's frame to a device's alarm in the cloud."""
    data = {"alarm_device": device, "rule": rule, "jpeg": base64.b64encode(jpeg).decode()}
    return EventMessage(ts=ts, device=camera, kind="alarm_snapshot", data=data)


Emit = Callable[[Kind, Envelope], None]


class AccessController:
    """Decides for the doors of one gateway config; see the module docstring."""

    def __init__(
        self,
        config: AccessConfig,
        store: WhitelistStore,
        clock: Clock,
        *,
        open_relay: OpenRelay,
        emit: Emit,
        online: Callable[[], bool],
        snapshot: Callable[[str], bytes | None] | None = None,
        passback: Passback | None = None,
        repeat_after: float = REPEAT_AFTER,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.open_relay = open_relay
        self.emit = emit
        self.online = online
        #: The latest JPEG of a camera at a door (by door name), for alarms and events.
        self.snapshot = snapshot or (lambda _door: None)
        self.passback = passback or Passback()
        self.repeat_after = repeat_after
        self.doors = {d.name: d for d in config.doors}
        self.watches = {d.name: DoorWatch(d, clock) for d in config.doors if d.contact is not None}
        self._contacts: dict[str, list[DoorWatch]] = {}
        for watch in self.watches.values():
            assert watch.door.contact is not None
            self._contacts.setdefault(watch.door.contact, []).append(watch)
        self._recent: dict[tuple[str, str, object], float] = {}
        self._relay_tasks: set[asyncio.Task[None]] = set()
        #: Every decision made, newest last (bounded), for the agent's tests and logs.
        self.decisions: list[Decision] = []

    # -- the whitelist -------------------------------------------------------------------------

    def request_whitelist(self, reason: str) -> None:
        """Ask the cloud for the full whitelist (sent through the outbox when the link is up)."""
        self.emit(Kind.ACCESS_REQUEST, self.store.request(self.clock, reason))

    # -- credentials ---------------------------------------------------------------------------

    def credential(self, reader: ReaderConfig, credential: Credential) -> Decision:
        """A card, PIN or QR code read at a reader's door: decide, open, report."""
        return self._decide(reader.door, credential.kind, credential.value, source=reader.name)

    def _decide(
        self,
        door_name: str,
        kind: Literal["card", "pin", "qr", "face"],
        value: object,
        *,
        source: str,
        distance: float | None = None,
        jpeg: bytes | None = None,
    ) -> Decision:
        door = self.doors[door_name]
        now = self.clock.now()
        whitelist = self.store.current
        if whitelist is None:
            reason = {"card": "unknown_card", "pin": "unknown_pin", "qr": "unknown_qr", "face": "not_recognised"}[kind]
            decision = Decision(door.name, kind, False, reason, detail="no whitelist at this gateway yet")  # type: ignore[arg-type]
        elif kind == "card":
            decision = decide_card(whitelist, str(value), door, now, self._passback())
        elif kind == "face":
            decision = decide_face(whitelist, value, door, now, self._passback())  # type: ignore[arg-type]
        else:
            decision = decide_secret(whitelist, kind, str(value), door, now)
        if decision.granted:
            self._commit(decision, door)
        self._report(decision, source=source, distance=distance, jpeg=jpeg)
        return decision

    def _passback(self) -> Passback | None:
        return self.passback if self.config.antipassback else None

    def _commit(self, decision: Decision, door: DoorConfig) -> None:
        """A grant: record the passage, count a pass's use, open the lock."""
        if decision.person_id is not None and self.config.antipassback:
            self.passback.record(decision.person_id, door)
        watch = self.watches.get(door.name)
        if watch is not None:
            watch.granted()
        if door.relay is not None:  # the lock first: its write goes out as soon as the loop is free
            task = asyncio.get_running_loop().create_task(self._open(door), name=f"open-{door.name}")
            self._relay_tasks.add(task)
            task.add_done_callback(self._relay_tasks.discard)
        if decision.pass_id is not None:
            try:
                left = self.store.use_pass(decision.pass_id)
                log.info("door %s: pass %s used, %d use(s) left", door.name, decision.pass_id, left)
            except OSError as exc:
                log.error("door %s: the use of pass %s could not be saved: %s", door.name, decision.pass_id, exc)

    async def _open(self, door: DoorConfig) -> None:
        try:
            await self.open_relay(door)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("door %s: the lock did not open: %s", door.name, exc)
            self.emit(
                Kind.EVENT,
                EventMessage(ts=self.clock.now(), device=door.relay, kind="door_open_failed", detail=str(exc)[:500]),
            )

    def _report(self, decision: Decision, *, source: str, distance: float | None, jpeg: bytes | None) -> None:
        self.decisions.append(decision)
        del self.decisions[:-1000]
        log.info(
            "door %s: %s %s by %s%s (%s)",
            decision.door, "granted" if decision.granted else "denied", decision.method, source,
            f" person {decision.person_id}" if decision.person_id is not None else "",
            decision.reason or "ok",
        )  # fmt: skip
        snapshot = base64.b64encode(jpeg).decode() if jpeg else None
        detail = decision.detail
        if snapshot is not None and len(snapshot) > MAX_SNAPSHOT:  # the event matters more than the picture
            log.warning(
                "door %s: a %d-byte snapshot is too large for the event; left out", decision.door, len(jpeg or b"")
            )
            snapshot, detail = None, ((detail + "; ") if detail else "") + "snapshot too large, left out"
        event = AccessEvent(
            ts=self.clock.now(),
            door=decision.door,
            method=decision.method,
            granted=decision.granted,
            reason=decision.reason,
            person_id=decision.person_id,
            pass_id=decision.pass_id,
            card=decision.card,
            distance=distance,
            snapshot_jpeg=snapshot,
            offline=not self.online(),
            whitelist_version=self.store.version,
            source=source[:64],
            detail=detail,
        )
        self.emit(Kind.ACCESS_EVENT, event)

    # -- CameraSink ----------------------------------------------------------------------------

    def _repeated(self, door: str, kind: str, key: object) -> bool:
        """The same face or code at the same door within `repeat_after` seconds: decided already."""
        now = self.clock.monotonic()
        if len(self._recent) > 1000:
            self._recent = {k: t for k, t in self._recent.items() if now - t < self.repeat_after}
        last = self._recent.get((door, kind, key))
        if last is not None and now - last < self.repeat_after:
            return True
        self._recent[(door, kind, key)] = now
        return False

    def face_seen(
        self, camera: str, door: str | None, person_id: int | None, distance: float | None, jpeg: bytes
    ) -> None:
        if door is None or door not in self.doors or self._repeated(door, "face", person_id):
            return
        self._decide(door, "face", person_id, source=camera, distance=distance, jpeg=jpeg)

    def qr_seen(self, camera: str, door: str | None, token: str, jpeg: bytes) -> None:
        if door is None or door not in self.doors or self._repeated(door, "qr", token):
            return
        self._decide(door, "qr", token, source=camera, jpeg=jpeg)

    def camera_alarm(self, camera: str, rule: str, action: Literal["raise", "clear"], message: str) -> None:
        severity, ticket, category = CAMERA_RULES.get(rule, (Severity.MAJOR, TicketKind.NONE, Category.SAFETY))
        self.emit(
            Kind.ALARM,
            AlarmMessage(
                ts=self.clock.now(), device=camera, rule=rule, action=action, severity=severity,
                ticket=ticket, category=category, message=message[:500],
            ),
        )  # fmt: skip

    # -- doors ---------------------------------------------------------------------------------

    def reading(self, reading: Reading) -> None:
        """A polled reading; the door contacts among its values drive the door watches."""
        for watch in self._contacts.get(reading.device, []):
            if reading.values.get(EXIT_BUTTON) is True:  # leaving by the button is not forcing the door
                watch.granted()
            value = reading.values.get(watch.door.contact_metric)
            if isinstance(value, bool):
                self._alarms(watch, watch.contact(value))

    def check_doors(self) -> None:
        for watch in self.watches.values():
            self._alarms(watch, watch.check())

    def _alarms(self, watch: DoorWatch, alarms: list[DoorAlarm]) -> None:
        device = watch.door.contact
        assert device is not None
        for alarm in alarms:
            severity = Severity.MAJOR if alarm.rule == FORCED else Severity.MINOR
            log.warning("door %s: %s %s", alarm.door, alarm.rule, alarm.action)
            self.emit(
                Kind.ALARM,
                AlarmMessage(
                    ts=self.clock.now(), device=device, rule=alarm.rule, action=alarm.action, severity=severity,
                    ticket=TicketKind.SAFETY, category=Category.SAFETY, value=alarm.action == "raise",
                    message=alarm.message,
                ),
            )  # fmt: skip
            if alarm.action == "raise":
                self._attach_snapshot(watch.door, device, alarm.rule)

    def _attach_snapshot(self, door: DoorConfig, device: str, rule: str) -> None:
        jpeg = self.snapshot(door.name)
        camera = next((c.name for c in self.config.cameras if c.door == door.name), None)
        if jpeg is None or camera is None:
            return
        self.emit(Kind.EVENT, snapshot_event(self.clock.now(), camera, device, rule, jpeg))

    async def run(self) -> None:
        """Check held-open doors until cancelled."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                self.check_doors()
            except Exception:  # a fault here must not stop the checks
                log.exception("access: door check failed")

    async def stop(self) -> None:
        """Let pulses in progress finish switching their coil off."""
        for task in list(self._relay_tasks):
            task.cancel()
        await asyncio.gather(*self._relay_tasks, return_exceptions=True)
