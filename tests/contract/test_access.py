"""The door-access contract: whitelists (full and delta), access events, door and reader config."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contract.access import AccessEvent, WhitelistMessage, WhitelistPass, hash_secret, mask_card
from contract.gateway_config import AccessConfig, ReaderConfig
from contract.messages import InvalidMessage, decode, encode
from contract.topics import Kind

TS = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_a_full_whitelist_round_trips_and_a_delta_names_an_older_base() -> None:
    full = WhitelistMessage(
        ts=TS,
        version=3,
        timezone="Asia/Shanghai",
        time_profiles=[{"id": "office", "weekdays": [1, 2, 3, 4, 5], "segments": [{"start": "08:00", "end": "00:00"}]}],
        holidays=["2026-10-01"],
        people=[{"id": 7, "cards": [{"number": "00A1B2C3"}], "faces": [[0.01] * 128], "rights": [{"doors": ["d1"]}]}],
    )
    again = decode(Kind.ACCESS_WHITELIST, encode(full))
    assert again == full
    WhitelistMessage(ts=TS, version=4, base_version=3, timezone="UTC", removed_people=[7])
    with pytest.raises(ValidationError, match="older one"):
        WhitelistMessage(ts=TS, version=4, base_version=4, timezone="UTC")
    with pytest.raises(ValidationError, match="removes nothing"):
        WhitelistMessage(ts=TS, version=4, timezone="UTC", time_profiles=[], holidays=[], removed_people=[1])
    with pytest.raises(ValidationError, match="time_profiles and holidays"):
        WhitelistMessage(ts=TS, version=4, timezone="UTC")


def test_bad_whitelist_entries_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidMessage, match="faces"):
        decode(
            Kind.ACCESS_WHITELIST,
            b'{"v":1,"ts":"2026-11-27T08:00:00Z","version":1,"timezone":"UTC","time_profiles":[],"holidays":[],'
            b'"people":[{"id":1,"faces":[[0.1,0.2]]}]}',
        )
    with pytest.raises(ValidationError, match="not after start"):
        WhitelistMessage(
            ts=TS,
            version=1,
            timezone="UTC",
            holidays=[],
            time_profiles=[{"id": "x", "weekdays": [1], "segments": [{"start": "18:00", "end": "08:00"}]}],
        )
    with pytest.raises(ValidationError, match="PIN or a QR"):
        WhitelistPass(id=uuid4(), host_person_id=1, salt="ab" * 8, valid_from=TS, valid_until=TS, uses=1, doors=["d1"])


def test_an_event_says_why_when_denied_and_secrets_are_hashed_and_cards_masked() -> None:
    AccessEvent(ts=TS, door="d1", method="card", granted=True, person_id=7, card=mask_card("00A1B2C3"))
    with pytest.raises(ValidationError, match="says why"):
        AccessEvent(ts=TS, door="d1", method="card", granted=False)
    with pytest.raises(ValidationError, match="no deny reason"):
        AccessEvent(ts=TS, door="d1", method="face", granted=True, reason="expired")
    assert mask_card("00A1B2C3") == "****B2C3"
    digest = hash_secret("ab" * 8, "123456")
    assert len(digest) == 64 and digest != hash_secret("cd" * 8, "123456")


def test_readers_and_cameras_name_doors_that_exist() -> None:
    with pytest.raises(ValidationError, match=r"readers\[0\]\.door: no door named 'back'"):
        AccessConfig(doors=[{"name": "front"}], readers=[{"name": "r1", "door": "back", "kind": "mqtt", "topic": "t"}])
    with pytest.raises(ValidationError, match="needs 'path'"):
        ReaderConfig(name="r1", door="front", kind="serial")
