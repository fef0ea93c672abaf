"""The gateway configuration: which site and gateway this is, and the devices it serves.

Loaded by the edge agent and the simulator; later pushed from the cloud, which is why it lives
in the contract. Errors name the file and the field, like profile errors.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from contract.common import (
    DeviceName,
    Identifier,
    Location,
    SiteInfo,
    Slug,
    Strict,
    Text,
    format_validation_errors,
)
from contract.messages import (
    DEFAULT_POINTS_PER_MESSAGE,
    MAX_POINTS_PER_MESSAGE,
    CommandInfo,
    CommandParamInfo,
    DeviceInfo,
    MetricInfo,
)
from contract.profiles import DeviceProfile, ModbusCommand, ProfileError, load_profiles, parse_profile, read_yaml


class ModbusAddress(Strict):
    """Where a Modbus device answers: TCP (`host`, `port`) or a serial line in RTU (`serial` and its framing).

    Devices with the same `host`:`port` or the same `serial` port share one connection (a bus):
    several unit ids behind one TCP gateway, or several devices daisy-chained on one RS-485 line.
    """

    host: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    serial: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    unit: Annotated[int, Field(ge=0, le=255)] = 1

    @model_validator(mode="after")
    def _one_link(self) -> "ModbusAddress":
        if (self.host is None) == (self.serial is None):
            raise ValueError("give exactly one of 'host' (Modbus TCP) or 'serial' (Modbus RTU, e.g. /dev/ttyUSB0)")
        return self

    @property
    def bus(self) -> str:
        """The connection this device shares with others on the same line or TCP gateway."""
        if self.serial is not None:
            return f"serial:{self.serial}"
        return f"tcp:{self.host}:{self.port}"


class MqttAddress(Strict):
    topic: Annotated[str, Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _plain_topic(self) -> "MqttAddress":
        if "+" in self.topic or "#" in self.topic:
            raise ValueError("a device's topic is one topic, without '+' or '#' wildcards")
        return self


class DeviceConfig(Strict):
    name: DeviceName
    profile: Slug
    modbus: ModbusAddress | None = None
    mqtt: MqttAddress | None = None
    location: Location = Location()
    poll_interval: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _one_address(self) -> "DeviceConfig":
        if (self.modbus is None) == (self.mqtt is None):
            raise ValueError("give exactly one address: 'modbus' (host and port, or serial; unit) or 'mqtt' (topic)")
        return self


class GatewayIdentity(Strict):
    id: Slug
    name: Text = ""


class TelemetryOptions(Strict):
    max_points: Annotated[int, Field(ge=1, le=MAX_POINTS_PER_MESSAGE)] = DEFAULT_POINTS_PER_MESSAGE
    max_delay: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0


class DoorConfig(Strict):
    """A door the gateway decides for: the lock it opens, the contact that says it is open."""

    name: DeviceName
    #: The door-controller device (Modbus) whose command opens the lock; None: no lock of ours.
    relay: DeviceName | None = None
    open_command: Identifier = "open_door"
    #: The device and metric reporting the door open (true) or closed; usually the same controller.
    contact: DeviceName | None = None
    contact_metric: Identifier = "door_open"
    #: Seconds after which an open door is "held open" (an alarm and a safety ticket).
    held_open_after: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] = 30.0
    #: Seconds after a grant during which opening the door is not "forced".
    grant_window: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] = 10.0
    #: Anti-passback group: doors whose `direction` in and out alternate for a person.
    group: Slug | None = None
    direction: Literal["in", "out"] = "in"
    location: Location = Location()


class ReaderInput(Strict):
    """Where a reader's input comes from, for door readers and patrol checkpoint readers alike.

    `mqtt`: a reader that publishes each read on the gateway's local broker (`topic`); `serial`: a
    reader on a serial line that sends what it read and a line end (`path`, `baudrate`);
    `keyboard`: a keyboard-wedge reader that types it and Enter into an input device or a pipe (`path`).
    """

    name: DeviceName
    kind: Literal["mqtt", "serial", "keyboard"]
    topic: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    path: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600

    @model_validator(mode="after")
    def _where(self) -> "ReaderInput":
        if self.kind == "mqtt" and self.topic is None:
            raise ValueError("an 'mqtt' reader needs 'topic'")
        if self.kind in ("serial", "keyboard") and self.path is None:
            raise ValueError(f"a '{self.kind}' reader needs 'path'")
        return self


class ReaderConfig(ReaderInput):
    """A door's reader of card numbers, PINs and QR codes (`mqtt`: JSON `{"card": "..."}` or
    `{"pin": "..."}`, or the bare number; `serial`, `keyboard`: the number and a line end)."""

    door: DeviceName


class CameraConfig(Strict):
    """A camera: face entry at a door (`door`), and video monitoring of an area."""

    name: DeviceName
    #: rtsp://… or http://… stream, a device index such as "0", or a video file.
    source: Annotated[str, Field(min_length=1, max_length=500)]
    door: DeviceName | None = None
    location: Location = Location()
    #: Frames a second run through face detection (when there is motion).
    detect_fps: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 5.0
    #: Fraction of the picture that must change between frames to count as motion (0: always).
    motion_threshold: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.01
    #: Largest face distance accepted as a match (dlib encodings: 0.6 is the usual threshold).
    match_threshold: Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)] = 0.6
    #: Seconds without a frame after which the camera is offline (an alarm).
    offline_after: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 10.0


class AccessConfig(Strict):
    doors: list[DoorConfig] = Field(default_factory=list)
    readers: list[ReaderConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)
    #: Refuse a second "in" (or "out") in a row for a person within a door group.
    antipassback: bool = False

    @model_validator(mode="after")
    def _references(self) -> "AccessConfig":
        doors = {d.name for d in self.doors}
        if len(doors) != len(self.doors):
            raise ValueError("doors: a door name is used twice")
        for kind, items in (("readers", self.readers), ("cameras", self.cameras)):
            for i, item in enumerate(items):
                door = getattr(item, "door", None)
                if door is not None and door not in doors:
                    raise ValueError(f"{kind}[{i}].door: no door named {door!r} (doors: {', '.join(sorted(doors))})")
        return self


class CheckpointReaderConfig(ReaderInput):
    """A patrol checkpoint reader (NFC or QR): every tag it reads is a `patrol_scan` event naming it.

    `mqtt`: JSON `{"tag": "04A1B2C3D4"}` or `{"tag": "...", "card": "..."}` (the guard's card, when
    the reader asks for one), or the bare tag; `serial`, `keyboard`: the same as a line.
    Announced in the birth as a device (protocol `reader`), where the cloud keeps its scans.
    """

    location: Location = Location()


class PatrolConfig(Strict):
    readers: list[CheckpointReaderConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_readers(self) -> "PatrolConfig":
        seen: set[str] = set()
        for i, reader in enumerate(self.readers):
            if reader.name in seen:
                raise ValueError(f"readers[{i}].name: {reader.name!r} is used twice")
            seen.add(reader.name)
        return self


class RemoteConfig(Strict):
    """What the cloud may change in a gateway's configuration (pushed as a ConfigMessage).

    The site and gateway identity stay those of the local file. `profiles` carries profile
    documents by id; a device may also name a profile from the gateway's own profile directory.
    """

    telemetry: TelemetryOptions = TelemetryOptions()
    local_mqtt_url: str | None = None
    devices: list[DeviceConfig] = Field(default_factory=list)
    profiles: dict[Slug, dict[str, Any]] = Field(default_factory=dict)
    access: AccessConfig | None = None
    patrol: PatrolConfig | None = None


class GatewayConfig(Strict):
    site: SiteInfo
    gateway: GatewayIdentity
    #: Directory of device profiles, relative to this file.
    profiles_dir: str = "../device_profiles"
    #: Broker that MQTT-speaking devices publish to; empty means the uplink broker.
    local_mqtt_url: str | None = None
    telemetry: TelemetryOptions = TelemetryOptions()
    devices: list[DeviceConfig] = Field(default_factory=list)
    #: Doors, card readers and cameras (face and card entry); None: this gateway has no doors.
    access: AccessConfig | None = None
    #: Patrol checkpoint readers; None: no checkpoint at this gateway.
    patrol: PatrolConfig | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> "GatewayConfig":
        seen: set[str] = set()
        for i, dev in enumerate(self.devices):
            if dev.name in seen:
                raise ValueError(f"devices[{i}].name: {dev.name!r} is used twice")
            seen.add(dev.name)
        for i, camera in enumerate(self.access.cameras if self.access else []):
            if camera.name in seen:  # cameras are announced as devices too (alarms name them)
                raise ValueError(f"access.cameras[{i}].name: {camera.name!r} is also a device name")
            seen.add(camera.name)
        for i, reader in enumerate(self.patrol.readers if self.patrol else []):
            if reader.name in seen:  # a scan's `device` is the reader: it must not pass for another device
                raise ValueError(f"patrol.readers[{i}].name: {reader.name!r} is also a device or camera name")
        return self


@dataclass(frozen=True)
class LoadedGatewayConfig:
    config: GatewayConfig
    profiles: dict[str, DeviceProfile]
    path: Path
    #: The cloud-pushed version this config came from; None for the local file alone.
    version: int | None = None

    def profile_of(self, device: DeviceConfig) -> DeviceProfile:
        return self.profiles[device.profile]

    def device_infos(self) -> list[DeviceInfo]:
        """The devices as the birth message announces them."""
        infos = []
        for dev in self.config.devices:
            profile = self.profiles[dev.profile]
            infos.append(
                DeviceInfo(
                    name=dev.name,
                    profile=dev.profile,
                    protocol=profile.protocol,
                    model=" ".join(p for p in (profile.manufacturer, profile.model) if p) or profile.name,
                    location=dev.location,
                    metrics=[MetricInfo(name=m.name, unit=m.unit, type=m.value_type) for m in profile.metrics],
                    commands=[_command_info(c) for c in getattr(profile, "commands", [])],
                )
            )
        for camera in self.config.access.cameras if self.config.access else []:
            infos.append(
                DeviceInfo(
                    name=camera.name,
                    profile="camera",
                    protocol="camera",
                    model="Camera",
                    location=camera.location,
                    metrics=[],
                )
            )
        for reader in self.config.patrol.readers if self.config.patrol else []:
            infos.append(
                DeviceInfo(
                    name=reader.name,
                    profile="checkpoint-reader",
                    protocol="reader",
                    model="Patrol checkpoint reader",
                    location=reader.location,
                    metrics=[],
                )
            )
        return infos


def _command_info(command: ModbusCommand) -> CommandInfo:
    params = []
    if command.param is not None:
        p = command.param
        params.append(CommandParamInfo(name=p.name, type=command.param_type, min=p.min, max=p.max, unit=p.unit))
    return CommandInfo(name=command.name, description=command.description, params=params, roles=command.roles)


def _check_doors(config: GatewayConfig, source: str) -> None:
    """A door's relay and contact must be devices of this gateway."""
    if config.access is None:
        return
    names = {d.name for d in config.devices}
    for i, door in enumerate(config.access.doors):
        for field in ("relay", "contact"):
            device = getattr(door, field)
            if device is not None and device not in names:
                raise ProfileError(f"{source}: access.doors[{i}].{field}: no device named {device!r} in devices")


def _check_devices(config: GatewayConfig, profiles: dict[str, DeviceProfile], source: str, where: str) -> None:
    for i, dev in enumerate(config.devices):
        profile = profiles.get(dev.profile)
        if profile is None:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(
                f"{source}: devices[{i}].profile: no profile {dev.profile!r} in {where} (known: {known})"
            )
        if profile.protocol == "modbus" and dev.modbus is None:
            raise ProfileError(
                f"{source}: devices[{i}].modbus: profile {dev.profile!r} speaks Modbus; give host/port/unit or serial"
            )
        if profile.protocol == "mqtt" and dev.mqtt is None:
            raise ProfileError(f"{source}: devices[{i}].mqtt: profile {dev.profile!r} speaks MQTT; give its topic")
    _check_doors(config, source)


def parse_gateway_config(data: object, *, source: str, base_dir: Path) -> LoadedGatewayConfig:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: (document): a gateway config is a mapping, got {type(data).__name__}")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {format_validation_errors(exc.errors(include_url=False))}") from None
    profiles_dir = (base_dir / config.profiles_dir).resolve()
    try:
        profiles = load_profiles(profiles_dir)
    except ProfileError as exc:
        raise ProfileError(f"{source}: profiles_dir: cannot load profiles:\n{exc}") from None
    _check_devices(config, profiles, source, str(profiles_dir))
    return LoadedGatewayConfig(config=config, profiles=profiles, path=Path(source))


def apply_remote_config(local: LoadedGatewayConfig, data: object, *, version: int) -> LoadedGatewayConfig:
    """The local config with the cloud's devices, profiles and options at `version`.

    Raises ProfileError naming the field of the first mistake; the caller keeps what it runs.
    """
    source = f"remote config v{version}"
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: (document): a configuration is a mapping, got {type(data).__name__}")
    try:
        remote = RemoteConfig.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {format_validation_errors(exc.errors(include_url=False))}") from None
    profiles = dict(local.profiles)
    for profile_id, document in remote.profiles.items():
        profiles[profile_id] = parse_profile(document, profile_id=profile_id, source=f"{source}: profiles.{profile_id}")
    try:
        config = GatewayConfig(
            site=local.config.site,
            gateway=local.config.gateway,
            profiles_dir=local.config.profiles_dir,
            local_mqtt_url=remote.local_mqtt_url if "local_mqtt_url" in data else local.config.local_mqtt_url,
            telemetry=remote.telemetry,
            devices=remote.devices,
            access=remote.access if "access" in data else local.config.access,
            patrol=remote.patrol if "patrol" in data else local.config.patrol,
        )
    except ValidationError as exc:
        raise ProfileError(f"{source}: {format_validation_errors(exc.errors(include_url=False))}") from None
    _check_devices(config, profiles, source, "the pushed profiles or the gateway's profile directory")
    return LoadedGatewayConfig(config=config, profiles=profiles, path=local.path, version=version)


def load_gateway_config(path: str | Path) -> LoadedGatewayConfig:
    path = Path(path)
    return parse_gateway_config(read_yaml(path), source=str(path), base_dir=path.resolve().parent)
