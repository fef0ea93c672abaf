"""Messages: what the edge encodes the cloud decodes, and what is wrong is said precisely."""

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from contract.common import Location, SiteInfo
from contract.messages import (
    MAX_POINTS_PER_MESSAGE,
    AlarmMessage,
    BirthMessage,
    CommandAck,
    CommandMessage,
    DeviceInfo,
    Envelope,
    EventMessage,
    GatewayInfo,
    InvalidMessage,
    MetricInfo,
    Reading,
    StatusMessage,
    TelemetryBatch,
    decode,
    encode,
)
from contract.topics import Kind, parse, topic

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

EXAMPLES: dict[Kind, Envelope] = {
    Kind.TELEMETRY: TelemetryBatch(
        ts=NOW,
        readings=[Reading(device="pump-1", ts=NOW, values={"p": 4.2, "run": True, "code": 3, "name": "BP-3"})],
    ),
    Kind.ALARM: AlarmMessage(
        ts=NOW, device="pump-1", rule="pump_fault", action="raise", severity="critical", ticket="repair",
        category="facility", value=3, message="Pump pump-1 reports fault code 3",
    ),
    Kind.EVENT: EventMessage(ts=NOW, device="pump-1", kind="device_offline", detail="no answer within 1 s"),
    Kind.BIRTH: BirthMessage(
        ts=NOW,
        site=SiteInfo(id="sunny", name="Sunny Gardens", timezone="Asia/Shanghai"),
        gateway=GatewayInfo(id="gw-1", name="Plant room", version="0.1.0"),
        devices=[
            DeviceInfo(
                name="pump-1", profile="water-pump", protocol="modbus", location=Location(building="B1", floor="-1"),
                metrics=[MetricInfo(name="p", unit="bar", type="number")],
            )
        ],
    ),
    Kind.STATUS: StatusMessage(ts=NOW, state="offline", reason="connection lost"),
    Kind.COMMAND: CommandMessage(ts=NOW, device="pump-1", command="start", expires_at=NOW + timedelta(minutes=1)),
    Kind.COMMAND_ACK: CommandAck(ts=NOW, command_id=UUID(int=7), status="rejected", reason="unknown device"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_encode_then_decode_gives_the_same_message(kind: Kind) -> None:
    message = EXAMPLES[kind]
    payload = encode(message)
    decoded = decode(kind, payload)
    assert decoded == message
    assert decoded.id == message.id  # the id made at creation travels with the message
    assert json.loads(payload)["v"] == 1


def test_ids_are_time_ordered_uuid7() -> None:
    first, second = StatusMessage(ts=NOW, state="online"), StatusMessage(ts=NOW, state="online")
    assert first.id.version == 7 and second.id.version == 7
    assert first.id != second.id


def test_bad_json_is_named() -> None:
    with pytest.raises(InvalidMessage, match=r"^not valid JSON"):
        decode(Kind.ALARM, b"{not json")


def test_an_unknown_schema_version_is_named() -> None:
    payload = json.loads(encode(EXAMPLES[Kind.STATUS]))
    payload["v"] = 2
    with pytest.raises(InvalidMessage, match=r"unsupported schema version 2 \(this side speaks 1\)"):
        decode(Kind.STATUS, json.dumps(payload).encode())


def test_a_missing_field_is_named() -> None:
    payload = json.loads(encode(EXAMPLES[Kind.ALARM]))
    del payload["rule"]
    with pytest.raises(InvalidMessage, match=r"^alarm message: rule: Field required"):
        decode(Kind.ALARM, json.dumps(payload).encode())


def test_a_wrong_field_is_named_with_its_path() -> None:
    payload = json.loads(encode(EXAMPLES[Kind.TELEMETRY]))
    payload["readings"][0]["device"] = "pump 1/#"
    with pytest.raises(InvalidMessage, match=r"telemetry message: readings\[0\]\.device"):
        decode(Kind.TELEMETRY, json.dumps(payload).encode())


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValidationError):
        Reading(device="pump-1", ts=NOW, values={"p": float("nan")})
    payload = encode(EXAMPLES[Kind.TELEMETRY]).replace(b"4.2", b"Infinity")
    with pytest.raises(InvalidMessage):
        decode(Kind.TELEMETRY, payload)


def test_a_telemetry_message_has_a_ceiling() -> None:
    values = {f"m{i}": float(i) for i in range(MAX_POINTS_PER_MESSAGE)}
    with pytest.raises(ValidationError, match="points in one message"):
        TelemetryBatch(ts=NOW, readings=[Reading(device=f"d{i}", ts=NOW, values=values) for i in range(2)])


def test_a_timestamp_without_zone_is_refused() -> None:
    payload = json.loads(encode(EXAMPLES[Kind.EVENT]))
    payload["ts"] = "2026-01-05T08:00:00"
    with pytest.raises(InvalidMessage, match="ts"):
        decode(Kind.EVENT, json.dumps(payload).encode())


def test_topics_round_trip() -> None:
    name = topic("sunny", "gw-1", Kind.COMMAND_ACK)
    assert name == "community/v1/sunny/gw-1/cmd/ack"
    parsed = parse(name)
    assert parsed is not None and (parsed.site, parsed.gateway, parsed.kind) == ("sunny", "gw-1", Kind.COMMAND_ACK)
    assert parse("community/v1/sunny/gw-1/unknown") is None
    with pytest.raises(ValueError):
        topic("Sunny Gardens", "gw-1", Kind.ALARM)
