"""A door's contact, watched: opened without a grant is "forced", open too long is "held open".

`DoorWatch` is fed the contact's value from the door controller's polled readings, told of each
grant, and asked `check()` now and then (the controller does it every fraction of a second) so a
held-open door raises while no new reading changes anything. It returns the alarm transitions;
the controller turns them into AlarmMessages. Both alarms clear when the door closes.
"""

from dataclasses import dataclass
from typing import Literal

from contract.clock import Clock
from contract.gateway_config import DoorConfig

FORCED = "door_forced"
HELD_OPEN = "door_held_open"


@dataclass(frozen=True)
class DoorAlarm:
    door: str
    rule: Literal["door_forced", "door_held_open"]
    action: Literal["raise", "clear"]
    message: str


class DoorWatch:
    """The state of one door's contact and the alarms it has raised."""

    def __init__(self, door: DoorConfig, clock: Clock) -> None:
        self.door = door
        self.clock = clock
        #: None until the first reading (a door found open at start is not "forced").
        self.open: bool | None = None
        self.opened_at: float | None = None
        self.last_grant: float | None = None
        self.raised: set[str] = set()

    def granted(self) -> None:
        self.last_grant = self.clock.monotonic()

    def contact(self, is_open: bool) -> list[DoorAlarm]:
        """A reading of the contact; the alarms it raises or clears."""
        now = self.clock.monotonic()
        was = self.open
        self.open = is_open
        alarms: list[DoorAlarm] = []
        if is_open and was is False:
            self.opened_at = now
            in_window = self.last_grant is not None and now - self.last_grant <= self.door.grant_window
            if not in_window:
                alarms.append(self._raise(FORCED, f"Door {self.door.name} was forced open (opened without a grant)"))
        elif is_open and was is None:
            self.opened_at = now  # found open: held-open timing starts now, not forced
        elif not is_open:
            self.opened_at = None
            for rule in sorted(self.raised):
                self.raised.discard(rule)
                alarms.append(DoorAlarm(self.door.name, rule, "clear", f"cleared: door {self.door.name} closed"))  # type: ignore[arg-type]
        return alarms + self.check()

    def check(self) -> list[DoorAlarm]:
        """The held-open alarm, once the door has been open for `held_open_after` seconds."""
        if not self.open or self.opened_at is None or HELD_OPEN in self.raised:
            return []
        held = self.clock.monotonic() - self.opened_at
        if held < self.door.held_open_after:
            return []
        return [
            self._raise(HELD_OPEN, f"Door {self.door.name} held open for more than {self.door.held_open_after:g} s")
        ]

    def _raise(self, rule: Literal["door_forced", "door_held_open"], message: str) -> DoorAlarm:
        self.raised.add(rule)
        return DoorAlarm(self.door.name, rule, "raise", message)
