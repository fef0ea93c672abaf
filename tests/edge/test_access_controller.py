"""The access controller as the cameras' sink and the door watches' voice, with the test's clock.

The controller takes its relay, outbox and link state as callables; here they record what they
are given (the agent tests run the same paths against Mosquitto and a pymodbus door controller).
"""

import asyncio
import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

from contract.access import AccessEvent
from contract.clock import ManualClock
from contract.gateway_config import AccessConfig, CameraConfig, DoorConfig
from contract.messages import AlarmMessage, EventMessage, Reading
from contract.topics import Kind
from edge.access.controller import AccessController
from edge.access.whitelist import WhitelistStore
from tests.edge.test_access_decide import MONDAY_4PM_SHANGHAI, full_whitelist

LOBBY = DoorConfig(name="lobby-in", relay="door-ctl", contact="door-ctl")
CONFIG = AccessConfig(
    doors=[LOBBY, DoorConfig(name="garage")],
    cameras=[CameraConfig(name="cam-lobby", source="0", door="lobby-in")],
)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[Kind, Any]] = []
        self.opened: list[str] = []
        self.online = True
        self.fail_relay = False

    def emit(self, kind: Kind, message: Any) -> None:
        self.sent.append((kind, message))

    async def open_relay(self, door: DoorConfig) -> None:
        self.opened.append(door.name)
        if self.fail_relay:
            raise RuntimeError("open_door on door-ctl failed: device unreachable")

    def of(self, kind: Kind) -> list[Any]:
        return [m for k, m in self.sent if k == kind]


def controller(tmp_path: Path, *, whitelist: bool = True) -> tuple[AccessController, Recorder, ManualClock]:
    clock = ManualClock(MONDAY_4PM_SHANGHAI)
    store = WhitelistStore(tmp_path / "wl.json")
    if whitelist:
        store.apply(full_whitelist())
    rec = Recorder()
    ctl = AccessController(
        CONFIG, store, clock, open_relay=rec.open_relay, emit=rec.emit, online=lambda: rec.online,
        snapshot=lambda door: b"\xff\xd8door-frame" if door == "lobby-in" else None,
    )  # fmt: skip
    return ctl, rec, clock


def test_faces_from_a_camera_are_decided_once_per_appearance(tmp_path: Path) -> None:
    async def run() -> None:
        ctl, rec, clock = controller(tmp_path)
        ctl.face_seen("cam-lobby", "lobby-in", 1, 0.41, b"\xff\xd8jpeg")
        ctl.face_seen("cam-lobby", "lobby-in", 1, 0.39, b"\xff\xd8jpeg")  # the next frame: same person
        await asyncio.sleep(0)
        (event,) = rec.of(Kind.ACCESS_EVENT)
        assert isinstance(event, AccessEvent)
        assert (event.method, event.granted, event.person_id, event.distance) == ("face", True, 1, 0.41)
        assert base64.b64decode(event.snapshot_jpeg or "") == b"\xff\xd8jpeg"
        assert event.source == "cam-lobby" and event.whitelist_version == 1 and not event.offline
        assert rec.opened == ["lobby-in"]
        clock.advance(3)
        rec.online = False
        ctl.face_seen("cam-lobby", "lobby-in", None, 0.72, b"\xff\xd8x")  # a stranger
        ctl.face_seen("cam-lobby", "lobby-in", 1, 0.40, b"\xff\xd8jpeg")  # back after the repeat window
        ctl.face_seen("cam-lobby", None, 1, 0.40, b"\xff\xd8jpeg")  # a camera at no door decides nothing
        await asyncio.sleep(0)
        stranger, again = rec.of(Kind.ACCESS_EVENT)[1:]
        assert (stranger.granted, stranger.reason, stranger.distance, stranger.offline) == (
            False, "not_recognised", 0.72, True,
        )  # fmt: skip
        assert again.granted and again.offline
        assert rec.opened == ["lobby-in", "lobby-in"]

    asyncio.run(run())


def test_a_qr_code_in_a_frame_is_a_visitor_pass(tmp_path: Path) -> None:
    async def run() -> None:
        ctl, rec, clock = controller(tmp_path)
        ctl.qr_seen("cam-lobby", "lobby-in", "qr-token-1", b"\xff\xd8q")
        clock.advance(24 * 3600)  # the pass starts tomorrow
        ctl.qr_seen("cam-lobby", "lobby-in", "qr-token-1", b"\xff\xd8q")
        clock.advance(1)
        ctl.qr_seen("cam-lobby", "lobby-in", "qr-token-1", b"\xff\xd8q")  # still in front of the camera
        clock.advance(3)
        ctl.qr_seen("cam-lobby", "lobby-in", "qr-token-1", b"\xff\xd8q")  # shown again: one use only
        await asyncio.sleep(0)
        events = rec.of(Kind.ACCESS_EVENT)
        assert [(e.method, e.granted, e.reason) for e in events] == [
            ("qr", False, "not_yet_valid"), ("qr", True, None), ("qr", False, "pass_used_up"),
        ]  # fmt: skip
        assert events[1].snapshot_jpeg is not None and rec.opened == ["lobby-in"]

    asyncio.run(run())


def test_camera_alarms_name_the_camera(tmp_path: Path) -> None:
    ctl, rec, _ = controller(tmp_path)
    ctl.camera_alarm("cam-lobby", "camera_tamper", "raise", "view blocked")
    ctl.camera_alarm("cam-lobby", "camera_offline", "clear", "pictures again")
    tamper, offline = rec.of(Kind.ALARM)
    assert isinstance(tamper, AlarmMessage)
    assert (tamper.device, tamper.rule, tamper.action, tamper.ticket.value) == (
        "cam-lobby", "camera_tamper", "raise", "safety",
    )  # fmt: skip
    assert (offline.rule, offline.action, offline.ticket.value) == ("camera_offline", "clear", "repair")


def test_a_forced_door_alarm_carries_the_door_cameras_snapshot(tmp_path: Path) -> None:
    ctl, rec, clock = controller(tmp_path)
    for is_open in (False, True):
        ctl.reading(Reading(device="door-ctl", ts=clock.now(), values={"door_open": is_open, "exit_button": False}))
    (alarm,) = rec.of(Kind.ALARM)
    assert (alarm.device, alarm.rule, alarm.action, alarm.ticket.value) == (
        "door-ctl",
        "door_forced",
        "raise",
        "safety",
    )
    (snapshot,) = rec.of(Kind.EVENT)
    assert isinstance(snapshot, EventMessage) and snapshot.kind == "alarm_snapshot" and snapshot.device == "cam-lobby"
    assert snapshot.data["alarm_device"] == "door-ctl" and snapshot.data["rule"] == "door_forced"
    assert base64.b64decode(snapshot.data["jpeg"]) == b"\xff\xd8door-frame"
    clock.advance(LOBBY.held_open_after)
    ctl.check_doors()
    assert [a.rule for a in rec.of(Kind.ALARM)] == ["door_forced", "door_held_open"]


def test_the_exit_button_is_a_grant(tmp_path: Path) -> None:
    ctl, rec, clock = controller(tmp_path)
    ctl.reading(Reading(device="door-ctl", ts=clock.now(), values={"door_open": False, "exit_button": True}))
    ctl.reading(Reading(device="door-ctl", ts=clock.now(), values={"door_open": True, "exit_button": False}))
    assert rec.of(Kind.ALARM) == []


def test_without_a_whitelist_everything_is_refused_and_a_lock_that_fails_is_reported(tmp_path: Path) -> None:
    async def run() -> None:
        ctl, rec, clock = controller(tmp_path, whitelist=False)
        ctl.face_seen("cam-lobby", "lobby-in", 1, 0.3, b"j")
        (event,) = rec.of(Kind.ACCESS_EVENT)
        assert (event.granted, event.reason, event.detail) == (
            False,
            "not_recognised",
            "no whitelist at this gateway yet",
        )
        ctl.store.apply(full_whitelist(at=clock.now() - timedelta(hours=1)))
        rec.fail_relay = True
        clock.advance(5)
        ctl.face_seen("cam-lobby", "lobby-in", 1, 0.3, b"j")
        await asyncio.sleep(0.01)
        assert rec.of(Kind.ACCESS_EVENT)[1].granted
        (failed,) = rec.of(Kind.EVENT)
        assert failed.kind == "door_open_failed" and failed.device == "door-ctl" and "unreachable" in failed.detail

    asyncio.run(run())


def test_the_example_door_site_builds_its_doors_readers_and_camera() -> None:
    from contract.gateway_config import load_gateway_config
    from edge.agent import Agent
    from edge.settings import EdgeSettings
    from tests.edge.conftest import REPO

    loaded = load_gateway_config(REPO / "examples" / "door-site.yaml")
    agent = Agent(EdgeSettings(), gateway_config=loaded)
    assert agent.access is not None and set(agent.access.doors) == {"lobby-in", "lobby-out", "garage"}
    assert set(agent.access.watches) == {"lobby-in", "garage"}
    assert [r.reader.name for r in agent.line_readers] == ["lobby-keypad", "garage-wedge"]
    assert agent.mqtt_readers is not None and [c.camera.name for c in agent.cameras] == ["cam-lobby"]  # type: ignore[attr-defined]
    assert [d.name for d in agent._birth().devices] == ["lobby-ctl", "garage-ctl", "cam-lobby"]


def test_which_devices_a_camera_covers() -> None:
    from contract.common import Location
    from edge.access.controller import covers

    lobby = Location(building="1", floor="1", room="Lobby")
    assert covers(Location(building="1"), lobby)
    assert covers(Location(building="1", floor="1"), lobby)
    assert covers(lobby, lobby)
    assert not covers(Location(building="1", floor="2"), lobby)
    assert not covers(Location(building="2"), lobby)
    assert not covers(Location(), lobby)  # a camera placed nowhere covers nothing
    assert not covers(Location(building="1", room="Garage"), lobby)


def test_a_snapshot_too_large_for_the_event_is_left_out_not_the_event(tmp_path: Path) -> None:
    async def run() -> None:
        ctl, rec, _ = controller(tmp_path)
        ctl.face_seen("cam-lobby", "lobby-in", 1, 0.4, b"\xff" * 600_000)
        (event,) = rec.of(Kind.ACCESS_EVENT)
        assert event.granted and event.snapshot_jpeg is None and event.detail == "snapshot too large, left out"

    asyncio.run(run())
