"""Face and card entry: consent, faces, cards, doors, time profiles, holidays, rights, visitor passes,
access events and gateway whitelists. How it fits together: docs/entry.md.

Face encodings are never returned by any endpoint; visitor PINs and QR tokens only once, in the
answer that creates the pass.
"""

import threading
import uuid
from datetime import date, datetime, time
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.domain import access_events, attachments, door_access, faces, passes, people, whitelist
from cloud.domain.access import MANAGEMENT, OFFICE, STAFF, Principal, Role
from contract.access import CardNumber, TimeSegment
from contract.common import DeviceName, Slug

router = APIRouter(prefix="/api/v1", tags=["entry"])
Office = Annotated[Principal, Depends(allow(*OFFICE))]
Management = Annotated[Principal, Depends(allow(*MANAGEMENT))]
OfficeOrSelf = Annotated[Principal, Depends(allow(*OFFICE, Role.RESIDENT))]
#: at most this many face encodings computed at once per API process (each takes a core for about a second)
_ENCODERS = threading.BoundedSemaphore(2)


def _person(conn: psycopg.Connection, who: Principal, person_id: int) -> dict[str, Any]:
    """A person within reach; a resident reaches only themselves."""
    if who.role == Role.RESIDENT and person_id != who.person_id:
        raise ApiError(404, f"person {person_id} does not exist")
    row = people.get(conn, who, person_id)
    if row is None:
        raise ApiError(404, f"person {person_id} does not exist")
    return row


def _limits(request: Request) -> faces.FaceLimits:
    s = request.app.state.settings
    return faces.FaceLimits(s.face_photo_max_bytes, s.face_photo_max_pixels, s.face_min_pixels, s.face_match_threshold)


# --- consent and faces ---------------------------------------------------------------------------


class ConsentIn(BaseModel):
    #: how the consent was given: a signed paper form, in the app, or in person at the office
    method: Literal["paper_form", "app", "in_person"]
    note: Annotated[str, Field(max_length=500)] = ""


class ConsentOut(BaseModel):
    person_id: int
    method: str
    note: str
    given_at: datetime
    recorded_by: str


class FaceOut(BaseModel):
    id: int
    person_id: int
    created_at: datetime
    created_by: str
    photo_kept: bool


@router.post("/people/{person_id}/face-consent", response_model=ConsentOut, status_code=201)
def record_consent(person_id: int, body: ConsentIn, conn: Conn, clock: ClockDep, who: Office) -> dict[str, Any]:
    """Record that the person consents to face entry: how, and (from the login) who recorded it and when."""
    _person(conn, who, person_id)
    return faces.record_consent(conn, person_id, method=body.method, note=body.note, who=who, now=clock.now())


@router.get("/people/{person_id}/face-consent", response_model=ConsentOut)
def get_consent(person_id: int, conn: Conn, who: OfficeOrSelf) -> dict[str, Any]:
    _person(conn, who, person_id)
    row = faces.consent(conn, person_id)
    if row is None:
        raise ApiError(404, f"person {person_id} has not consented to face entry")
    return row


@router.delete("/people/{person_id}/face-consent", status_code=204)
def withdraw_consent(person_id: int, request: Request, conn: Conn, clock: ClockDep, who: OfficeOrSelf) -> None:
    """Withdraw consent (the office, or the person): every face encoding and kept photo is deleted now,
    and the gateways drop them with the next whitelist update."""
    _person(conn, who, person_id)
    removed = faces.withdraw_consent(
        conn, person_id, who=who, now=clock.now(), faces_dir=request.app.state.settings.faces_dir
    )
    if removed is None:
        raise ApiError(404, f"person {person_id} has not consented to face entry")
    conn.commit()
    request.app.state.downlink.wake()


@router.post("/people/{person_id}/faces", response_model=FaceOut, status_code=201)
def enrol_face(
    person_id: int,
    request: Request,
    conn: Conn,
    clock: ClockDep,
    who: Office,
    photo: Annotated[UploadFile, File(description="a JPEG or PNG photo showing exactly one face")],
) -> dict[str, Any]:
    """Enrol a face from a photo: 409 without consent or a card, or when it is another person's face;
    422 when the photo cannot be used (no face, several faces, face too small, unreadable, too large)."""
    _person(conn, who, person_id)
    missing = faces.available()
    if missing is not None:
        raise ApiError(503, missing)
    limits = _limits(request)
    settings = request.app.state.settings
    faces.check_can_enrol(conn, person_id, clock.now())
    data = photo.file.read(limits.max_bytes + 1)
    image = faces.load_photo(data, limits)
    with _ENCODERS:  # this handler runs in a worker thread, never on the event loop
        encoding = faces.encode_one_face(image, limits)
    row = faces.enrol(
        conn,
        request.app.state.face_cipher,
        person_id,
        encoding,
        limits=limits,
        photo=data if settings.face_keep_photos else None,
        faces_dir=settings.faces_dir,
        who=who,
        now=clock.now(),
    )
    conn.commit()
    request.app.state.downlink.wake()
    return {**row, "photo_kept": row["photo_id"] is not None}


@router.get("/people/{person_id}/faces", response_model=list[FaceOut])
def list_faces(person_id: int, conn: Conn, who: OfficeOrSelf) -> list[dict[str, Any]]:
    """The person's enrolled faces: when and by whom (never the encodings)."""
    _person(conn, who, person_id)
    return faces.list_faces(conn, person_id)


@router.delete("/people/{person_id}/faces/{face_id}", status_code=204)
def delete_face(person_id: int, face_id: int, request: Request, conn: Conn, clock: ClockDep, who: OfficeOrSelf) -> None:
    _person(conn, who, person_id)
    done = faces.delete_face(
        conn, person_id, face_id, who=who, now=clock.now(), faces_dir=request.app.state.settings.faces_dir
    )
    if not done:
        raise ApiError(404, f"face {face_id} of person {person_id} does not exist")
    conn.commit()
    request.app.state.downlink.wake()


# --- cards ---------------------------------------------------------------------------------------


class CardIn(BaseModel):
    number: CardNumber
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class CardOut(BaseModel):
    id: int
    person_id: int
    number: str
    valid_from: datetime | None
    valid_until: datetime | None
    lost_at: datetime | None
    created_at: datetime
    created_by: str
    #: valid, not_yet_valid, expired or lost
    state: str


@router.post("/people/{person_id}/cards", response_model=CardOut, status_code=201)
def add_card(person_id: int, body: CardIn, request: Request, conn: Conn, clock: ClockDep, who: Office) -> dict:
    _person(conn, who, person_id)
    now = clock.now()
    row = door_access.add_card(
        conn,
        person_id,
        number=body.number,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        who=who,
        now=now,
    )
    conn.commit()
    request.app.state.downlink.wake()
    return door_access.card_view(row, now)


@router.get("/people/{person_id}/cards", response_model=list[CardOut])
def list_cards(person_id: int, conn: Conn, clock: ClockDep, who: OfficeOrSelf) -> list[dict]:
    _person(conn, who, person_id)
    now = clock.now()
    return [door_access.card_view(r, now) for r in door_access.cards_of(conn, person_id)]


def _card(conn: psycopg.Connection, who: Principal, card_id: int) -> dict[str, Any]:
    row = door_access.card(conn, card_id)
    if row is None:
        raise ApiError(404, f"card {card_id} does not exist")
    try:
        _person(conn, who, row["person_id"])
    except ApiError:
        raise ApiError(404, f"card {card_id} does not exist") from None
    return row


@router.post("/cards/{card_id}/lost", response_model=CardOut)
def report_lost(
    card_id: int,
    request: Request,
    conn: Conn,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*OFFICE, Role.GUARD, Role.RESIDENT))],
) -> dict:
    """Block a lost card at once (the office, a guard, or its holder): the whitelist delta goes out now."""
    _card(conn, who, card_id)
    now = clock.now()
    row = door_access.report_lost(conn, card_id, who=who, now=now)
    conn.commit()
    request.app.state.downlink.wake()
    return door_access.card_view(row, now)


@router.delete("/cards/{card_id}", status_code=204)
def delete_card(card_id: int, request: Request, conn: Conn, clock: ClockDep, who: Office) -> None:
    _card(conn, who, card_id)
    door_access.delete_card(conn, card_id, who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()


# --- doors, time profiles, holidays, rights ---------------------------------------------------------


class DoorOut(BaseModel):
    gateway_id: str
    name: str
    site_id: str
    building: str | None
    floor: str | None
    room: str | None


class DoorRef(BaseModel):
    gateway_id: Slug
    door: DeviceName


@router.get("/doors", response_model=list[DoorOut])
def list_doors(conn: Conn, who: Annotated[Principal, Depends(allow(*STAFF))]) -> list[dict]:
    """Doors as the gateways' pushed configurations name them (`access.doors`)."""
    return door_access.doors(conn, who.site_list())


class TimeProfileIn(BaseModel):
    site_id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1, max_length=7)
    segments: list[TimeSegment] = Field(min_length=1, max_length=12)
    on_holidays: bool = False


class TimeProfileOut(BaseModel):
    id: int
    site_id: str
    name: str
    weekdays: list[int]
    segments: list[dict[str, time]]
    on_holidays: bool


def _site(who: Principal, site_id: str) -> None:
    if not who.reaches_site(site_id):
        raise ApiError(404, f"site {site_id} does not exist")


@router.get("/time-profiles", response_model=list[TimeProfileOut])
def list_time_profiles(conn: Conn, who: Office) -> list[dict]:
    sites = who.site_list()
    return conn.execute(
        "SELECT * FROM time_profiles WHERE %(all)s OR site_id = ANY(%(sites)s) ORDER BY id",
        {"all": sites is None, "sites": sites or []},
    ).fetchall()


@router.post("/time-profiles", response_model=TimeProfileOut, status_code=201)
def add_time_profile(body: TimeProfileIn, request: Request, conn: Conn, clock: ClockDep, who: Management) -> dict:
    """Weekdays (1 = Monday) and time segments, local time of the site; `on_holidays`: also on holidays."""
    _site(who, body.site_id)
    if not conn.execute("SELECT 1 FROM sites WHERE id = %s", (body.site_id,)).fetchone():
        raise ApiError(404, f"site {body.site_id} does not exist")
    values = body.model_dump(mode="json")
    values["weekdays"] = sorted(set(body.weekdays))
    row = door_access.add_time_profile(conn, values, who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()
    return row


@router.delete("/time-profiles/{profile_id}", status_code=204)
def delete_time_profile(profile_id: int, request: Request, conn: Conn, clock: ClockDep, who: Management) -> None:
    row = conn.execute("SELECT site_id FROM time_profiles WHERE id = %s", (profile_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"time profile {profile_id} does not exist")
    door_access.delete_time_profile(conn, profile_id, who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()


class HolidayIn(BaseModel):
    site_id: Slug
    day: date
    name: Annotated[str, Field(max_length=200)] = ""


class HolidayOut(BaseModel):
    site_id: str
    day: date
    name: str


@router.get("/holidays", response_model=list[HolidayOut])
def list_holidays(conn: Conn, who: Office) -> list[dict]:
    sites = who.site_list()
    return conn.execute(
        "SELECT * FROM holidays WHERE %(all)s OR site_id = ANY(%(sites)s) ORDER BY site_id, day",
        {"all": sites is None, "sites": sites or []},
    ).fetchall()


@router.post("/holidays", response_model=HolidayOut, status_code=201)
def add_holiday(body: HolidayIn, request: Request, conn: Conn, clock: ClockDep, who: Management) -> dict:
    _site(who, body.site_id)
    if not conn.execute("SELECT 1 FROM sites WHERE id = %s", (body.site_id,)).fetchone():
        raise ApiError(404, f"site {body.site_id} does not exist")
    row = door_access.set_holiday(conn, body.site_id, body.day, body.name, who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()
    return row


@router.delete("/holidays/{site_id}/{day}", status_code=204)
def delete_holiday(site_id: str, day: date, request: Request, conn: Conn, clock: ClockDep, who: Management) -> None:
    _site(who, site_id)
    if not door_access.delete_holiday(conn, site_id, day, who=who, now=clock.now()):
        raise ApiError(404, f"no holiday on {day} at site {site_id}")
    conn.commit()
    request.app.state.downlink.wake()


class RightIn(BaseModel):
    site_id: Slug
    #: exactly one of: one person, every resident of one building, every resident of the site
    person_id: int | None = None
    building_id: int | None = None
    site_residents: bool = False
    #: with building_id: each resident gets only the named doors on their own unit's floor
    own_floor: bool = False
    doors: list[DoorRef] = Field(min_length=1, max_length=1000)
    #: None: at any time
    time_profile_id: int | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> "RightIn":
        if [self.person_id is not None, self.building_id is not None, self.site_residents].count(True) != 1:
            raise ValueError(
                "give exactly one of person_id (one person), building_id (its residents) "
                "or site_residents: true (every resident of the site, for common areas)"
            )
        return self


class RightOut(BaseModel):
    id: int
    site_id: str
    person_id: int | None
    building_id: int | None
    site_residents: bool
    own_floor: bool
    doors: list[dict[str, str]]
    time_profile_id: int | None
    created_at: datetime
    created_by: str


@router.get("/access-rights", response_model=list[RightOut])
def list_rights(conn: Conn, who: Office, person_id: int | None = None) -> list[dict]:
    sites = who.site_list()
    return conn.execute(
        """SELECT * FROM access_rights WHERE (%(all)s OR site_id = ANY(%(sites)s))
             AND (%(p)s::bigint IS NULL OR person_id = %(p)s) ORDER BY id""",
        {"all": sites is None, "sites": sites or [], "p": person_id},
    ).fetchall()


@router.post("/access-rights", response_model=RightOut, status_code=201)
def add_right(body: RightIn, request: Request, conn: Conn, clock: ClockDep, who: Office) -> dict:
    """Grant doors (gateway + door name) at the times of a time profile to a person, a building's residents
    (with `own_floor`: each only the doors on their unit's floor) or the site's residents."""
    _site(who, body.site_id)
    if body.person_id is not None:
        _person(conn, who, body.person_id)
    row = door_access.add_right(conn, body.model_dump(), who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()
    return row


@router.delete("/access-rights/{right_id}", status_code=204)
def delete_right(right_id: int, request: Request, conn: Conn, clock: ClockDep, who: Office) -> None:
    row = conn.execute("SELECT site_id FROM access_rights WHERE id = %s", (right_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"access right {right_id} does not exist")
    door_access.delete_right(conn, right_id, who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()


# --- visitor passes ------------------------------------------------------------------------------


class PassIn(BaseModel):
    guest_name: Annotated[str, Field(min_length=1, max_length=200)]
    #: the doors, or "my_building_entrances": the doors of the buildings the host lives in
    doors: list[DoorRef] | Literal["my_building_entrances"] = "my_building_entrances"
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    uses: Annotated[int, Field(ge=1, le=100)] = 1
    #: the office only: the resident the pass is made for (a resident's pass is their own)
    host_person_id: int | None = None
    #: needed only by someone with homes at several sites
    site_id: Slug | None = None


class PassOut(BaseModel):
    id: uuid.UUID
    site_id: str
    host_person_id: int
    guest_name: str
    doors: list[dict[str, str]]
    valid_from: datetime
    valid_until: datetime
    uses_total: int
    uses_left: int
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class PassCreated(PassOut):
    #: shown once: give it to the guest (keypad)
    pin: str
    #: shown once: encode it as a QR code for the guest (a camera at the door reads it)
    qr_token: str


PassMakers = Annotated[Principal, Depends(allow(*OFFICE, Role.RESIDENT))]


@router.post("/passes", response_model=PassCreated, status_code=201)
def create_pass(body: PassIn, request: Request, conn: Conn, clock: ClockDep, who: PassMakers) -> dict:
    """A visitor pass: the answer shows its PIN and QR token once; only their salted hashes are kept."""
    if who.role == Role.RESIDENT:
        host = who.person_id
    else:
        if body.host_person_id is None:
            raise ApiError(422, "host_person_id: the office names the resident the pass is for")
        host = body.host_person_id
        _person(conn, who, host)
    site = body.site_id
    if site is None:
        if isinstance(body.doors, list):
            row = conn.execute("SELECT site_id FROM gateways WHERE id = %s", (body.doors[0].gateway_id,)).fetchone()
            site = row["site_id"] if row else None
        elif who.site_ids is not None and len(who.site_ids) == 1:
            site = next(iter(who.site_ids))
    if site is None:
        raise ApiError(422, "site_id: say at which site the pass is")
    _site(who, site)
    doors = [d.model_dump() for d in body.doors] if isinstance(body.doors, list) else None
    row = passes.create(
        conn,
        site_id=site,
        host_person_id=host,
        guest_name=body.guest_name,
        doors=doors,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        uses=body.uses,
        max_days=request.app.state.settings.pass_max_days,
        restrict_to_host_doors=who.role == Role.RESIDENT,
        who=who,
        now=clock.now(),
    )
    conn.commit()
    request.app.state.downlink.wake()
    return row


@router.get("/passes", response_model=list[PassOut])
def list_passes(conn: Conn, who: PassMakers) -> list[dict]:
    """A resident's own passes; the office sees its sites' passes."""
    sites = who.site_list()
    return conn.execute(
        """SELECT * FROM visitor_passes WHERE (%(all)s OR site_id = ANY(%(sites)s))
             AND (NOT %(mine)s OR host_person_id = %(me)s) ORDER BY created_at DESC LIMIT 500""",
        {"all": sites is None, "sites": sites or [], "mine": who.role == Role.RESIDENT, "me": who.person_id},
    ).fetchall()


@router.delete("/passes/{pass_id}", status_code=204)
def revoke_pass(pass_id: uuid.UUID, request: Request, conn: Conn, clock: ClockDep, who: PassMakers) -> None:
    row = conn.execute("SELECT site_id, host_person_id FROM visitor_passes WHERE id = %s", (pass_id,)).fetchone()
    if (
        row is None
        or not who.reaches_site(row["site_id"])
        or (who.role == Role.RESIDENT and row["host_person_id"] != who.person_id)
    ):
        raise ApiError(404, f"pass {pass_id} does not exist")
    passes.revoke(conn, pass_id, who=who, now=clock.now())
    conn.commit()
    request.app.state.downlink.wake()


# --- access events, whitelists -----------------------------------------------------------------------


class AccessEventOut(BaseModel):
    id: uuid.UUID
    at: datetime
    received_at: datetime
    site_id: str
    gateway_id: str
    door: str
    method: str
    granted: bool
    reason: str | None
    person_id: int | None
    pass_id: uuid.UUID | None
    host_person_id: int | None
    card: str | None
    distance: float | None
    offline: bool
    whitelist_version: int | None
    source: str | None
    detail: str | None
    has_snapshot: bool


EventReaders = Annotated[Principal, Depends(allow(*OFFICE, Role.GUARD, Role.RESIDENT))]


@router.get("/access-events", response_model=list[AccessEventOut])
def list_access_events(
    conn: Conn,
    who: EventReaders,
    door: Annotated[str | None, Query(max_length=64)] = None,
    gateway_id: Annotated[str | None, Query(max_length=63)] = None,
    person_id: int | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Decisions at doors, newest first. Guards and the office see their sites'; a resident their own
    and those of the passes they made (`person_id` also matches a pass's host)."""
    return access_events.search(
        conn,
        who,
        gateway_id=gateway_id,
        door=door,
        person_id=person_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


@router.get("/access-events/{event_id}/snapshot", response_class=FileResponse)
def access_event_snapshot(event_id: uuid.UUID, request: Request, conn: Conn, who: EventReaders) -> FileResponse:
    """The JPEG the camera decided on (404 when the event has none or is out of reach)."""
    snapshot = access_events.snapshot_of(conn, who, event_id)
    if snapshot is None:
        raise ApiError(404, f"access event {event_id} has no snapshot")
    path = attachments.path_of(request.app.state.settings.attachments_dir, snapshot)
    if not path.exists():
        raise ApiError(404, f"the snapshot of access event {event_id} is no longer kept")
    return FileResponse(path, media_type="image/jpeg")


class WhitelistOut(BaseModel):
    gateway_id: str
    version: int
    pending_rebuild: bool
    built_at: datetime | None
    doors: list[dict[str, Any]]
    #: the last 20 messages: version, base (None: full), counts, when made and published
    messages: list[dict[str, Any]]


@router.get("/gateways/{gateway_id}/whitelist", response_model=WhitelistOut)
def whitelist_status(
    gateway_id: str, conn: Conn, who: Annotated[Principal, Depends(allow(Role.ADMIN, Role.MANAGER))]
) -> dict:
    """The gateway's whitelist version, its doors and the messages sent (counts only, no contents)."""
    row = conn.execute("SELECT site_id FROM gateways WHERE id = %s", (gateway_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"gateway {gateway_id} does not exist")
    return whitelist.status(conn, gateway_id)
