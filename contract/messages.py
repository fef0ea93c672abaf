"""Payload schemas for every MQTT message, used by the edge to build and the cloud to validate.

Every payload is JSON with `v` (schema version), `id` (a UUIDv7 made when the message is created
at the edge, kept on every resend) and `ts` (when it was made, UTC).
"""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, TypeAdapter, ValidationError, model_validator

from contract import SCHEMA_VERSION
from contract.access import AccessEvent, WhitelistMessage, WhitelistRequest
from contract.common import (
    Category,
    DeviceName,
    FiniteFloat,
    Identifier,
    Location,
    Severity,
    SiteInfo,
    Slug,
    Strict,
    Text,
    TicketKind,
    Value,
    format_validation_errors,
)
from contract.envelope import Envelope
from contract.topics import Kind

#: The edge puts at most this many points in one telemetry message (the issue's "about 50").
DEFAULT_POINTS_PER_MESSAGE = 50
#: The cloud refuses a telemetry message with more points than this.
MAX_POINTS_PER_MESSAGE = 1000


class Reading(Strict):
    """One poll of one device: the values of its metrics at one instant."""

    device: DeviceName
    ts: AwareDatetime
    values: dict[Identifier, Value] = Field(min_length=1, max_length=MAX_POINTS_PER_MESSAGE)


class TelemetryBatch(Envelope):
    readings: list[Reading] = Field(min_length=1, max_length=MAX_POINTS_PER_MESSAGE)

    @model_validator(mode="after")
    def _bounded(self) -> "TelemetryBatch":
        points = sum(len(r.values) for r in self.readings)
        if points > MAX_POINTS_PER_MESSAGE:
            raise ValueError(f"{points} points in one message, at most {MAX_POINTS_PER_MESSAGE} allowed")
        return self

    @property
    def points(self) -> int:
        return sum(len(r.values) for r in self.readings)


class AlarmMessage(Envelope):
    """An alarm rule's condition began (`raise`) or ended (`clear`) on a device."""

    device: DeviceName
    rule: Identifier
    action: Literal["raise", "clear"]
    severity: Severity
    ticket: TicketKind = TicketKind.NONE
    category: Category | None = None
    value: Value | None = None
    message: Text = ""


EventKindName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class EventMessage(Envelope):
    """Something that happened, not a measurement: `device_online`, `device_offline`, later door events."""

    device: DeviceName | None = None
    kind: EventKindName
    detail: Text | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class MetricInfo(Strict):
    name: Identifier
    unit: Annotated[str, StringConstraints(max_length=20)] | None = None
    type: Literal["number", "integer", "bool", "string"] = "number"


class CommandParamInfo(Strict):
    """The one value a command takes, and the limits the cloud checks before sending it."""

    name: Identifier
    type: Literal["number", "integer", "bool"] = "number"
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    unit: Annotated[str, StringConstraints(max_length=20)] | None = None


class CommandInfo(Strict):
    """A command the device's profile defines, as the birth message announces it."""

    name: Identifier
    description: Text = ""
    params: list[CommandParamInfo] = Field(default_factory=list, max_length=10)
    #: The cloud roles allowed to send it.
    roles: list[Identifier] = Field(default_factory=list, max_length=10)


class DeviceInfo(Strict):
    name: DeviceName
    profile: Slug
    #: "camera": a camera of the access config; "reader": a patrol checkpoint reader
    protocol: Literal["modbus", "mqtt", "camera", "reader"]
    model: Text | None = None
    location: Location = Location()
    metrics: list[MetricInfo] = Field(default_factory=list)
    commands: list[CommandInfo] = Field(default_factory=list)


class GatewayInfo(Strict):
    id: Slug
    name: Text
    version: Text = ""


class BirthMessage(Envelope):
    """Sent (retained) on every connect: who the gateway is, its site, and the devices it serves."""

    site: SiteInfo
    gateway: GatewayInfo
    devices: list[DeviceInfo] = Field(max_length=10_000)
    #: The version of the cloud-pushed configuration the agent runs; None while it runs its local file.
    config_version: int | None = None


class StatusMessage(Envelope):
    """Retained gateway state. The `offline` one is the MQTT last will, made at connect time."""

    state: Literal["online", "offline"]
    reason: Text | None = None


class CommandMessage(Envelope):
    """Cloud to edge: run a command that the device's profile defines."""

    device: DeviceName
    command: Identifier
    params: dict[Identifier, Value] = Field(default_factory=dict)
    expires_at: AwareDatetime | None = None


class CommandAck(Envelope):
    """Edge to cloud: what became of a command."""

    command_id: UUID
    status: Literal["succeeded", "failed", "rejected"]
    reason: Text | None = None
    result: dict[str, Value] = Field(default_factory=dict)


class OutboxHealth(Strict):
    """The gateway's durable outbox: what waits for the broker, and what had to be dropped."""

    depth: Annotated[int, Field(ge=0)]
    bytes: Annotated[int, Field(ge=0)] = 0
    oldest_age_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    dropped_messages: Annotated[int, Field(ge=0)] = 0
    dropped_points: Annotated[int, Field(ge=0)] = 0


class DeviceHealth(Strict):
    """How polling one device goes, since the agent started."""

    device: DeviceName
    online: bool | None = None
    polls_ok: Annotated[int, Field(ge=0)] = 0
    polls_failed: Annotated[int, Field(ge=0)] = 0
    success_rate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    latency_ms_mean: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    latency_ms_max: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    last_error: Text | None = None


class HealthMessage(Envelope):
    """The agent's own health, sent every health interval."""

    uptime_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    config_version: int | None = None
    outbox: OutboxHealth
    devices: list[DeviceHealth] = Field(default_factory=list, max_length=10_000)


class ConfigMessage(Envelope):
    """Cloud to edge (retained): the gateway's configuration at `version`.

    `config` follows `contract.gateway_config.RemoteConfig` (devices, profiles, telemetry options);
    the agent validates it and answers with a ConfigState.
    """

    version: Annotated[int, Field(ge=1)]
    config: dict[str, Any]


class ConfigState(Envelope):
    """Edge to cloud: the configuration version the agent applied, or one it refused and why."""

    version: Annotated[int, Field(ge=1)]
    status: Literal["applied", "refused"]
    #: The version the agent keeps running (the last good one), None for its local file.
    running_version: int | None = None
    reason: Annotated[str, StringConstraints(max_length=4000)] | None = None


Message = (
    TelemetryBatch
    | AlarmMessage
    | EventMessage
    | BirthMessage
    | StatusMessage
    | CommandMessage
    | CommandAck
    | HealthMessage
    | ConfigMessage
    | ConfigState
    | WhitelistMessage
    | WhitelistRequest
    | AccessEvent
)

#: the largest camera frame (base64 of a JPEG of about 400 KiB); frames are for a screen, not evidence
MAX_FRAME_BASE64 = 560_000


class CameraFrame(Envelope):
    """Edge to cloud (`…/camera/frame`, QoS 0, not queued while offline): a camera's latest frame.

    Sent at most once a second per camera; the cloud keeps only the latest of each, for the guard
    console. A lost frame is replaced by the next one, so nothing is retried.
    """

    camera: DeviceName
    #: the JPEG, base64
    jpeg: Annotated[str, StringConstraints(min_length=4, max_length=MAX_FRAME_BASE64)]


MODEL_FOR_KIND: dict[Kind, type[Envelope]] = {
    Kind.TELEMETRY: TelemetryBatch,
    Kind.ALARM: AlarmMessage,
    Kind.EVENT: EventMessage,
    Kind.BIRTH: BirthMessage,
    Kind.STATUS: StatusMessage,
    Kind.COMMAND: CommandMessage,
    Kind.COMMAND_ACK: CommandAck,
    Kind.HEALTH: HealthMessage,
    Kind.CONFIG: ConfigMessage,
    Kind.CONFIG_STATE: ConfigState,
    Kind.ACCESS_WHITELIST: WhitelistMessage,
    Kind.ACCESS_REQUEST: WhitelistRequest,
    Kind.ACCESS_EVENT: AccessEvent,
    Kind.CAMERA_FRAME: CameraFrame,
}


class InvalidMessage(ValueError):
    """A payload that does not follow the contract; `reason` says which field and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_version_adapter = TypeAdapter(dict[str, Any])


def decode(kind: Kind, payload: bytes) -> Envelope:
    """Validate a payload for its topic kind, or raise InvalidMessage naming the field."""
    model = MODEL_FOR_KIND[kind]
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(tuple(e.get("loc", ())) == ("v",) for e in errors):
            try:
                version = _version_adapter.validate_json(payload).get("v")
            except ValidationError:
                version = None
            if version is not None and version != SCHEMA_VERSION:
                raise InvalidMessage(
                    f"unsupported schema version {version!r} (this side speaks {SCHEMA_VERSION})"
                ) from None
        if errors and errors[0].get("type") == "json_invalid":
            raise InvalidMessage(f"not valid JSON: {errors[0].get('msg')}") from None
        raise InvalidMessage(f"{kind.value} message: {format_validation_errors(errors)}") from None


def encode(message: Envelope) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def utc_iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
