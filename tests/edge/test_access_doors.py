"""Door contacts: forced open (opened without a grant) and held open, with the test's clock."""

from contract.clock import ManualClock
from contract.gateway_config import DoorConfig
from edge.access.doors import DoorWatch

DOOR = DoorConfig(name="lobby", relay="ctl", contact="ctl", grant_window=10, held_open_after=30)


def actions(alarms: list) -> list[tuple[str, str]]:
    return [(a.rule, a.action) for a in alarms]


def test_opening_without_a_grant_is_forced_and_closing_clears_it() -> None:
    clock = ManualClock()
    watch = DoorWatch(DOOR, clock)
    assert watch.contact(False) == []
    assert actions(watch.contact(True)) == [("door_forced", "raise")]
    assert watch.contact(True) == []  # still open: raised once
    assert actions(watch.contact(False)) == [("door_forced", "clear")]


def test_opening_within_the_grant_window_is_not_forced_after_it_is() -> None:
    clock = ManualClock()
    watch = DoorWatch(DOOR, clock)
    watch.contact(False)
    watch.granted()
    clock.advance(10)
    assert watch.contact(True) == []
    watch.contact(False)
    clock.advance(0.5)  # 10.5 s after the grant
    assert actions(watch.contact(True)) == [("door_forced", "raise")]


def test_a_door_found_open_at_start_is_not_forced() -> None:
    clock = ManualClock()
    watch = DoorWatch(DOOR, clock)
    assert watch.contact(True) == []
    clock.advance(30)
    assert actions(watch.check()) == [("door_held_open", "raise")]


def test_held_open_raises_once_after_the_limit_and_clears_on_close() -> None:
    clock = ManualClock()
    watch = DoorWatch(DOOR, clock)
    watch.contact(False)
    watch.granted()
    clock.advance(1)
    assert watch.contact(True) == []
    clock.advance(29.5)
    assert watch.check() == []
    clock.advance(0.5)
    assert actions(watch.check()) == [("door_held_open", "raise")]
    clock.advance(100)
    assert watch.check() == [] and watch.contact(True) == []
    assert actions(watch.contact(False)) == [("door_held_open", "clear")]
    assert watch.check() == []


def test_forced_and_held_open_together() -> None:
    clock = ManualClock()
    watch = DoorWatch(DOOR, clock)
    watch.contact(False)
    watch.contact(True)
    clock.advance(31)
    assert actions(watch.contact(True)) == [("door_held_open", "raise")]  # a reading finds it too
    assert actions(watch.contact(False)) == [("door_forced", "clear"), ("door_held_open", "clear")]
