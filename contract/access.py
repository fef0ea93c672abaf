"""Door access: what the cloud tells a gateway about who may enter, and what the gateway reports back.

The cloud builds each gateway a **whitelist** for its doors: people with their cards, face
encodings and rights (which doors, at which times), visitor passes, time profiles and holidays.
It is versioned. A full whitelist has `base_version` None; a delta names the version it applies to
and carries only what changed (upserts by id, and removals). A gateway that holds another version
than a delta's base asks for a full one (`WhitelistRequest`). The gateway keeps the whitelist on
disk and decides at the door by itself, with or without the cloud, then reports every decision as
an `AccessEvent` (through its durable outbox, so events decided offline arrive when the link is back).

Times of day in time profiles are local to the site's time zone (`timezone` of the whitelist).
Secrets never travel in clear: a visitor PIN or QR token is sent as `hash_secret(salt, secret)`.
"""

import hashlib
from datetime import date, time
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from contract.common import DeviceName, FiniteFloat, Identifier, Strict, Text, TimeZoneName
from contract.envelope import Envelope

#: Length of a face encoding (dlib's ResNet model, as face_recognition computes it).
FACE_DIMENSIONS = 128
#: A card number as a reader gives it: decimal or hexadecimal digits.
CardNumber = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{4,32}$")]
FaceEncoding = Annotated[list[FiniteFloat], Field(min_length=FACE_DIMENSIONS, max_length=FACE_DIMENSIONS)]
SecretHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Salt = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,64}$")]


def hash_secret(salt: str, secret: str) -> str:
    """The form in which a PIN or QR token travels and is kept at the gateway (SHA-256, hex)."""
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


class TimeSegment(Strict):
    """From `start` up to (not including) `end`, local time; `end` 00:00 means midnight at the day's end."""

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> "TimeSegment":
        if self.end != time(0, 0) and self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self


class TimeProfile(Strict):
    """When a right applies: on these weekdays (1 = Monday ... 7 = Sunday), within these segments.

    On a holiday of the whitelist, a profile applies only when `on_holidays` says so.
    """

    id: Identifier
    name: Text = ""
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1, max_length=7)
    segments: list[TimeSegment] = Field(min_length=1, max_length=12)
    on_holidays: bool = False


class AccessRight(Strict):
    """These doors, at the times of `time_profile` (None: at any time)."""

    doors: list[DeviceName] = Field(min_length=1, max_length=1000)
    time_profile: Identifier | None = None


class Card(Strict):
    number: CardNumber
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    #: Reported lost or blocked by the office: refused at once.
    blocked: bool = False


class WhitelistPerson(Strict):
    """Someone who may enter some doors of this gateway, with the credentials to do it."""

    id: int
    #: For the guard's screen and the event log at the door: a display name, not the legal one.
    label: Text = ""
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    cards: list[Card] = Field(default_factory=list, max_length=20)
    #: Only for people who consented to face entry; empty otherwise.
    faces: list[FaceEncoding] = Field(default_factory=list, max_length=10)
    rights: list[AccessRight] = Field(default_factory=list, max_length=50)


class WhitelistPass(Strict):
    """A visitor pass a resident made: a PIN and/or a QR token, a time window, a number of uses."""

    id: UUID
    host_person_id: int
    label: Text = ""
    salt: Salt
    pin_hash: SecretHash | None = None
    qr_hash: SecretHash | None = None
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    #: Uses left when the cloud built this entry; the gateway counts down from it.
    uses: Annotated[int, Field(ge=0, le=1000)]
    doors: list[DeviceName] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _a_secret(self) -> "WhitelistPass":
        if self.pin_hash is None and self.qr_hash is None:
            raise ValueError("a pass needs a PIN or a QR token (pin_hash or qr_hash)")
        return self


class WhitelistMessage(Envelope):
    """Cloud to edge (`…/access/whitelist`): the whitelist at `version`, whole or as a delta."""

    version: Annotated[int, Field(ge=1)]
    #: None: a full whitelist that replaces everything; else the version this delta applies to.
    base_version: Annotated[int, Field(ge=1)] | None = None
    timezone: TimeZoneName
    #: Full: all of them. Delta: only when they changed (then the whole list again).
    time_profiles: list[TimeProfile] | None = None
    holidays: list[date] | None = None
    people: list[WhitelistPerson] = Field(default_factory=list)
    passes: list[WhitelistPass] = Field(default_factory=list)
    removed_people: list[int] = Field(default_factory=list)
    removed_passes: list[UUID] = Field(default_factory=list)

    @model_validator(mode="after")
    def _full_is_whole(self) -> "WhitelistMessage":
        if self.base_version is None:
            if self.removed_people or self.removed_passes:
                raise ValueError("a full whitelist removes nothing: it replaces everything")
            if self.time_profiles is None or self.holidays is None:
                raise ValueError("a full whitelist carries time_profiles and holidays (empty lists if none)")
        elif self.base_version >= self.version:
            raise ValueError(f"a delta to version {self.version} must apply to an older one, not {self.base_version}")
        return self


class WhitelistRequest(Envelope):
    """Edge to cloud (`…/access/request`): send me the full whitelist; I hold `have_version`."""

    have_version: int | None = None
    reason: Text = ""


AccessMethod = Literal["card", "face", "pin", "qr", "remote"]
DenyReason = Literal[
    "unknown_card",
    "unknown_pin",
    "unknown_qr",
    "not_recognised",
    "not_yet_valid",
    "expired",
    "blocked",
    "no_right",
    "outside_time_profile",
    "passback",
    "pass_used_up",
]


class AccessEvent(Envelope):
    """Edge to cloud (`…/access/event`): one decision at a door, granted or denied, and why."""

    door: DeviceName
    method: AccessMethod
    granted: bool
    #: Why it was denied; None when granted.
    reason: DenyReason | None = None
    person_id: int | None = None
    pass_id: UUID | None = None
    #: The card number with all but the last four characters masked, e.g. "****1A2B".
    card: Annotated[str, StringConstraints(max_length=40)] | None = None
    #: For faces: the distance to the nearest enrolled encoding (lower is closer).
    distance: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    #: A JPEG of the camera frame the decision was made on, base64.
    snapshot_jpeg: Annotated[str, StringConstraints(max_length=700_000)] | None = None
    #: Decided while the gateway had no connection to the broker.
    offline: bool = False
    whitelist_version: int | None = None
    #: The reader or camera that saw it.
    source: Annotated[str, StringConstraints(max_length=64)] | None = None
    detail: Text | None = None

    @model_validator(mode="after")
    def _reason_when_denied(self) -> "AccessEvent":
        if self.granted and self.reason is not None:
            raise ValueError("a granted decision has no deny reason")
        if not self.granted and self.reason is None:
            raise ValueError("a denied decision says why (reason)")
        return self


def mask_card(number: str) -> str:
    """What events and logs show of a card number."""
    return "*" * max(0, len(number) - 4) + number[-4:]
