"""Decisions at the door: pure functions of the whitelist, the door, the input and the time.

Nothing here does I/O or reads a clock; the controller passes `now` (aware UTC). Deny reasons are
the contract's `DenyReason` values. Checks run from the credential outwards: the card (known,
not blocked, within its dates), the person (within their dates), a right for this door whose time
profile matches the local time in the whitelist's time zone, then anti-passback.
"""

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from uuid import UUID
from zoneinfo import ZoneInfo

from contract.access import AccessMethod, DenyReason, TimeProfile, WhitelistPerson, hash_secret, mask_card
from contract.gateway_config import DoorConfig
from edge.access.whitelist import Whitelist, card_key


@dataclass(frozen=True)
class Decision:
    """One decision, as the access event will report it."""

    door: str
    method: AccessMethod
    granted: bool
    reason: DenyReason | None = None
    person_id: int | None = None
    pass_id: UUID | None = None
    #: Masked card number.
    card: str | None = None
    detail: str | None = None


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def profile_matches(profile: TimeProfile, local: datetime, is_holiday: bool) -> bool:
    """Whether `local` (the site's local time) falls in the profile: weekday, segment, holiday rule."""
    if is_holiday and not profile.on_holidays:
        return False
    if local.isoweekday() not in profile.weekdays:
        return False
    moment = local.time().replace(tzinfo=None)
    for segment in profile.segments:
        if moment >= segment.start and (segment.end.hour == segment.end.minute == 0 or moment < segment.end):
            return True
    return False


def _window(valid_from: datetime | None, valid_until: datetime | None, now: datetime) -> DenyReason | None:
    if valid_from is not None and now < valid_from:
        return "not_yet_valid"
    if valid_until is not None and now >= valid_until:
        return "expired"
    return None


def right_for(whitelist: Whitelist, person: WhitelistPerson, door: str, now: datetime) -> DenyReason | None:
    """None when one of the person's rights covers `door` now; else no_right or outside_time_profile."""
    covering = [r for r in person.rights if door in r.doors]
    if not covering:
        return "no_right"
    local = now.astimezone(_zone(whitelist.timezone))
    holiday = local.date() in whitelist.holidays
    for right in covering:
        if right.time_profile is None:
            return None
        profile = whitelist.time_profiles.get(right.time_profile)
        if profile is not None and profile_matches(profile, local, holiday):
            return None
    return "outside_time_profile"


@dataclass
class Passback:
    """Anti-passback: the last direction each person passed in each door group (in memory)."""

    last: dict[tuple[int, str], str] = field(default_factory=dict)

    def refuses(self, person_id: int, door: DoorConfig) -> bool:
        """A second pass in the same direction in a row within the door's group."""
        return door.group is not None and self.last.get((person_id, door.group)) == door.direction

    def record(self, person_id: int, door: DoorConfig) -> None:
        if door.group is not None:
            self.last[(person_id, door.group)] = door.direction


def _person_checks(
    whitelist: Whitelist, person: WhitelistPerson, door: DoorConfig, now: datetime, passback: Passback | None
) -> DenyReason | None:
    reason = _window(person.valid_from, person.valid_until, now) or right_for(whitelist, person, door.name, now)
    if reason is None and passback is not None and passback.refuses(person.id, door):
        reason = "passback"
    return reason


def decide_card(
    whitelist: Whitelist, number: str, door: DoorConfig, now: datetime, passback: Passback | None = None
) -> Decision:
    """A card presented at `door`. Does not record the passage (see `commit`)."""
    masked = mask_card(card_key(number))
    found = whitelist.card(number)
    if found is None:
        return Decision(door.name, "card", False, "unknown_card", card=masked)
    person, card = found
    reason: DenyReason | None = "blocked" if card.blocked else _window(card.valid_from, card.valid_until, now)
    if reason is not None:
        return Decision(door.name, "card", False, reason, person_id=person.id, card=masked, detail="card")
    reason = _person_checks(whitelist, person, door, now, passback)
    return Decision(door.name, "card", reason is None, reason, person_id=person.id, card=masked)


def decide_face(
    whitelist: Whitelist,
    person_id: int | None,
    door: DoorConfig,
    now: datetime,
    passback: Passback | None = None,
) -> Decision:
    """A face the matcher identified as `person_id` (None: nobody within the threshold)."""
    person = whitelist.people.get(person_id) if person_id is not None else None
    if person is None:
        return Decision(door.name, "face", False, "not_recognised", person_id=person_id)
    reason = _person_checks(whitelist, person, door, now, passback)
    return Decision(door.name, "face", reason is None, reason, person_id=person.id)


def decide_secret(whitelist: Whitelist, method: AccessMethod, secret: str, door: DoorConfig, now: datetime) -> Decision:
    """A visitor's PIN (`method` "pin") or QR token ("qr"): the pass whose hash matches, its window,
    uses left and doors. Does not count the use down (see `commit`)."""
    assert method in ("pin", "qr")
    unknown: DenyReason = "unknown_pin" if method == "pin" else "unknown_qr"
    for visitor_pass in whitelist.passes.values():
        expected = visitor_pass.pin_hash if method == "pin" else visitor_pass.qr_hash
        if expected is None or hash_secret(visitor_pass.salt, secret) != expected:
            continue
        reason = _window(visitor_pass.valid_from, visitor_pass.valid_until, now)
        if reason is None and whitelist.uses_left(visitor_pass) <= 0:
            reason = "pass_used_up"
        if reason is None and door.name not in visitor_pass.doors:
            reason = "no_right"
        return Decision(
            door.name, method, reason is None, reason, pass_id=visitor_pass.id,
            detail=f"pass of person {visitor_pass.host_person_id}",
        )  # fmt: skip
    return Decision(door.name, method, False, unknown)
