"""Door decisions as pure functions: cards, faces, visitor PINs and QR codes, time profiles, passback.

The clock is the test's: ManualClock starts on Monday 2026-01-05 08:00 UTC, 16:00 in Shanghai.
The builders here are used by the other access tests too.
"""

import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.access import (
    AccessRight,
    Card,
    TimeProfile,
    TimeSegment,
    WhitelistMessage,
    WhitelistPass,
    WhitelistPerson,
    hash_secret,
)
from contract.gateway_config import DoorConfig
from edge.access.decide import Passback, decide_card, decide_face, decide_secret, profile_matches
from edge.access.whitelist import Whitelist, WhitelistStore

MONDAY_4PM_SHANGHAI = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SALT = "00112233445566778899aabbccddeeff"
PASS_ID = uuid.UUID("0192a7a0-0000-7000-8000-000000000001")
QR_PASS_ID = uuid.UUID("0192a7a0-0000-7000-8000-000000000002")
OFFICE_HOURS = TimeProfile(id="office", weekdays=[1, 2, 3, 4, 5], segments=[TimeSegment(start=time(7), end=time(19))])
EVENINGS = TimeProfile(
    id="evenings", weekdays=[1, 2, 3, 4, 5, 6, 7], segments=[TimeSegment(start=time(18), end=time(0))]
)

LOBBY_IN = DoorConfig(name="lobby-in", relay="door-ctl", contact="door-ctl", group="lobby", direction="in")
LOBBY_OUT = DoorConfig(name="lobby-out", group="lobby", direction="out")
GARAGE = DoorConfig(name="garage")


def person(pid: int, *cards: Card, rights: list[AccessRight] | None = None, **extra: Any) -> WhitelistPerson:
    doors = ["lobby-in", "lobby-out"]
    return WhitelistPerson(
        id=pid, label=f"P{pid}", cards=list(cards), rights=rights if rights is not None else [AccessRight(doors=doors)],
        **extra,
    )  # fmt: skip


def full_whitelist(version: int = 1, at: datetime = MONDAY_4PM_SHANGHAI, **changes: Any) -> WhitelistMessage:
    """People 1 to 6 and two visitor passes, dates around `at`; see each line."""
    day = timedelta(days=1)
    fields: dict[str, Any] = {
        "ts": at,
        "version": version,
        "timezone": "Asia/Shanghai",
        "time_profiles": [OFFICE_HOURS, EVENINGS],
        "holidays": [],
        "people": [
            person(1, Card(number="04A3B2C1"), faces=[[0.1] * 128]),  # any time
            person(2, Card(number="11112222", blocked=True)),  # card reported lost
            person(3, Card(number="33334444", valid_until=at - day)),  # card expired
            person(4, Card(number="44445555"), valid_from=at + day),  # moves in tomorrow
            person(5, Card(number="55556666"), rights=[AccessRight(doors=["lobby-in"], time_profile="office")]),
            person(
                6, Card(number="66667777"), rights=[AccessRight(doors=["garage"])], faces=[[0.2] * 128, [0.3] * 128]
            ),
        ],
        "passes": [
            WhitelistPass(
                id=PASS_ID, host_person_id=1, salt=SALT, pin_hash=hash_secret(SALT, "4711"),
                valid_from=at - day, valid_until=at + day, uses=2,
                doors=["lobby-in"],
            ),
            WhitelistPass(
                id=QR_PASS_ID, host_person_id=5, salt=SALT, qr_hash=hash_secret(SALT, "qr-token-1"),
                valid_from=at + day, valid_until=at + 2 * day, uses=1,
                doors=["lobby-in"],
            ),
        ],
    }  # fmt: skip
    fields.update(changes)
    return WhitelistMessage(**fields)


@pytest.fixture
def wl() -> Whitelist:
    return Whitelist(full_whitelist())


def test_a_valid_card_is_granted_and_reported_masked(wl: Whitelist) -> None:
    d = decide_card(wl, "04a3b2c1", LOBBY_IN, MONDAY_4PM_SHANGHAI)  # readers differ in case
    assert (d.granted, d.reason, d.person_id, d.card, d.method) == (True, None, 1, "****B2C1", "card")


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("DEADBEEF", "unknown_card"),
        ("11112222", "blocked"),
        ("33334444", "expired"),
        ("44445555", "not_yet_valid"),  # the person, not the card
        ("66667777", "no_right"),  # garage only
    ],
)
def test_refused_cards_say_why(wl: Whitelist, number: str, reason: str) -> None:
    d = decide_card(wl, number, LOBBY_IN, MONDAY_4PM_SHANGHAI)
    assert (d.granted, d.reason) == (False, reason)


def test_card_dates_bound_it_on_both_sides(wl: Whitelist) -> None:
    start = MONDAY_4PM_SHANGHAI + timedelta(hours=1)
    card = Card(number="77778888", valid_from=start, valid_until=start + timedelta(hours=2))
    w = Whitelist(full_whitelist(people=[person(7, card)]))
    assert decide_card(w, "77778888", LOBBY_IN, start - timedelta(seconds=1)).reason == "not_yet_valid"
    assert decide_card(w, "77778888", LOBBY_IN, start).granted
    assert decide_card(w, "77778888", LOBBY_IN, start + timedelta(hours=2)).reason == "expired"


def test_time_profile_in_the_sites_time_zone(wl: Whitelist) -> None:
    # 16:00 in Shanghai on a Monday: office hours
    assert decide_card(wl, "55556666", LOBBY_IN, MONDAY_4PM_SHANGHAI).granted
    # 19:00 local is the segment's end, not in it; 06:59 local is before it
    assert decide_card(wl, "55556666", LOBBY_IN, MONDAY_4PM_SHANGHAI + timedelta(hours=3)).reason == (
        "outside_time_profile"
    )
    assert decide_card(wl, "55556666", LOBBY_IN, datetime(2026, 1, 5, 22, 59, tzinfo=UTC)).reason == (
        "outside_time_profile"
    )
    assert decide_card(wl, "55556666", LOBBY_IN, datetime(2026, 1, 5, 23, 0, tzinfo=UTC)).granted  # Tue 07:00
    # Saturday afternoon local
    assert decide_card(wl, "55556666", LOBBY_IN, datetime(2026, 1, 10, 8, 0, tzinfo=UTC)).reason == (
        "outside_time_profile"
    )


def test_holidays_close_a_profile_unless_it_says_on_holidays() -> None:
    holiday = MONDAY_4PM_SHANGHAI.date()
    closed = Whitelist(full_whitelist(holidays=[holiday]))
    assert decide_card(closed, "55556666", LOBBY_IN, MONDAY_4PM_SHANGHAI).reason == "outside_time_profile"
    open_on_holidays = OFFICE_HOURS.model_copy(update={"on_holidays": True})
    opened = Whitelist(full_whitelist(holidays=[holiday], time_profiles=[open_on_holidays]))
    assert decide_card(opened, "55556666", LOBBY_IN, MONDAY_4PM_SHANGHAI).granted
    # the holiday is the local date: 2026-01-04 23:00 UTC is already the 5th in Shanghai
    assert decide_card(closed, "55556666", LOBBY_IN, datetime(2026, 1, 4, 23, 0, tzinfo=UTC)).reason == (
        "outside_time_profile"
    )


def test_a_segment_ending_at_midnight_runs_to_the_days_end() -> None:
    local = datetime(2026, 1, 5, 23, 59, 59)
    assert profile_matches(EVENINGS, local, False)
    assert not profile_matches(EVENINGS, local.replace(hour=17), False)
    assert profile_matches(EVENINGS, local.replace(hour=18, minute=0, second=0), False)


def test_one_right_in_profile_is_enough() -> None:
    rights = [
        AccessRight(doors=["lobby-in"], time_profile="evenings"),
        AccessRight(doors=["lobby-in"], time_profile="office"),
    ]
    w = Whitelist(full_whitelist(people=[person(8, Card(number="88889999"), rights=rights)]))
    assert decide_card(w, "88889999", LOBBY_IN, MONDAY_4PM_SHANGHAI).granted  # office hours
    assert decide_card(w, "88889999", LOBBY_IN, MONDAY_4PM_SHANGHAI + timedelta(hours=4)).granted  # evening
    unknown_profile = [AccessRight(doors=["lobby-in"], time_profile="nope")]
    w = Whitelist(full_whitelist(people=[person(8, Card(number="88889999"), rights=unknown_profile)]))
    assert decide_card(w, "88889999", LOBBY_IN, MONDAY_4PM_SHANGHAI).reason == "outside_time_profile"


def test_passback_refuses_a_second_in_until_an_out(wl: Whitelist) -> None:
    pb = Passback()
    now = MONDAY_4PM_SHANGHAI
    first = decide_card(wl, "04A3B2C1", LOBBY_IN, now, pb)
    assert first.granted
    pb.record(1, LOBBY_IN)
    assert decide_card(wl, "04A3B2C1", LOBBY_IN, now, pb).reason == "passback"
    assert decide_face(wl, 1, LOBBY_IN, now, pb).reason == "passback"  # whatever the credential
    assert decide_card(wl, "04A3B2C1", LOBBY_IN, now).granted  # without anti-passback
    assert decide_card(wl, "04A3B2C1", LOBBY_OUT, now, pb).granted
    pb.record(1, LOBBY_OUT)
    assert decide_card(wl, "04A3B2C1", LOBBY_OUT, now, pb).reason == "passback"
    assert decide_card(wl, "04A3B2C1", LOBBY_IN, now, pb).granted
    # a door outside any group never refuses
    pb.record(6, GARAGE)
    assert decide_card(wl, "66667777", GARAGE, now, pb).granted


def test_faces(wl: Whitelist) -> None:
    now = MONDAY_4PM_SHANGHAI
    assert decide_face(wl, 1, LOBBY_IN, now).granted
    d = decide_face(wl, None, LOBBY_IN, now)
    assert (d.granted, d.reason, d.method) == (False, "not_recognised", "face")
    assert decide_face(wl, 99, LOBBY_IN, now).reason == "not_recognised"  # removed since the matcher was built
    assert decide_face(wl, 6, LOBBY_IN, now).reason == "no_right"
    assert decide_face(wl, 4, LOBBY_IN, now).reason == "not_yet_valid"


def test_visitor_pin_and_qr(wl: Whitelist) -> None:
    now = MONDAY_4PM_SHANGHAI
    d = decide_secret(wl, "pin", "4711", LOBBY_IN, now)
    assert (d.granted, d.pass_id, d.method) == (True, PASS_ID, "pin")
    assert decide_secret(wl, "pin", "4712", LOBBY_IN, now).reason == "unknown_pin"
    assert decide_secret(wl, "pin", "4711", GARAGE, now).reason == "no_right"
    assert decide_secret(wl, "pin", "4711", LOBBY_IN, now + timedelta(days=1)).reason == "expired"
    assert decide_secret(wl, "qr", "4711", LOBBY_IN, now).reason == "unknown_qr"  # a PIN is not a QR token
    assert decide_secret(wl, "qr", "qr-token-1", LOBBY_IN, now).reason == "not_yet_valid"
    assert decide_secret(wl, "qr", "qr-token-1", LOBBY_IN, now + timedelta(days=1)).granted


def test_a_pass_is_used_up_after_its_uses_and_that_survives_a_restart(tmp_path: Path) -> None:
    store = WhitelistStore(tmp_path / "wl.json")
    assert store.apply(full_whitelist())
    assert store.current is not None
    for left in (1, 0):
        assert decide_secret(store.current, "pin", "4711", LOBBY_IN, MONDAY_4PM_SHANGHAI).granted
        assert store.use_pass(PASS_ID) == left
    again = WhitelistStore(tmp_path / "wl.json")
    assert again.current is not None
    assert decide_secret(again.current, "pin", "4711", LOBBY_IN, MONDAY_4PM_SHANGHAI).reason == "pass_used_up"
