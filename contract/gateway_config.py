"""The gateway configuration: which site and gateway this is, and the devices it serves.

Loaded by the edge agent and the simulator; later pushed from the cloud, which is why it lives
in the contract. Errors name the file and the field, like profile errors.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from contract.common import DeviceName, Location, SiteInfo, Slug, Strict, Text, format_validation_errors
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


class RemoteConfig(Strict):
    """What the cloud may change in a gateway's configuration (pushed as a ConfigMessage).

    The site and gateway identity stay those of the local file. `profiles` carries profile
    documents by id; a device may also name a profile from the gateway's own profile directory.
    """

    telemetry: TelemetryOptions = TelemetryOptions()
    local_mqtt_url: str | None = None
    devices: list[DeviceConfig] = Field(default_factory=list)
    profiles: dict[Slug, dict[str, Any]] = Field(default_factory=dict)


class GatewayConfig(Strict):
    site: SiteInfo
    gateway: GatewayIdentity
    #: Directory of device profiles, relative to this file.
    profiles_dir: str = "../device_profiles"
    #: Broker that MQTT-speaking devices publish to; empty means the uplink broker.
    local_mqtt_url: str | None = None
    telemetry: TelemetryOptions = TelemetryOptions()
    devices: list[DeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> "GatewayConfig":
        seen: set[str] = set()
        for i, dev in enumerate(self.devices):
            if dev.name in seen:
                raise ValueError(f"devices[{i}].name: {dev.name!r} is used twice")
            seen.add(dev.name)
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
        return infos


def _command_info(command: ModbusCommand) -> CommandInfo:
    params = []
    if command.param is not None:
        p = command.param
        params.append(CommandParamInfo(name=p.name, type=command.param_type, min=p.min, max=p.max, unit=p.unit))
    return CommandInfo(name=command.name, description=command.description, params=params, roles=command.roles)


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
        )
    except ValidationError as exc:
        raise ProfileError(f"{source}: {format_validation_errors(exc.errors(include_url=False))}") from None
    _check_devices(config, profiles, source, "the pushed profiles or the gateway's profile directory")
    return LoadedGatewayConfig(config=config, profiles=profiles, path=local.path, version=version)


def load_gateway_config(path: str | Path) -> LoadedGatewayConfig:
    path = Path(path)
    return parse_gateway_config(read_yaml(path), source=str(path), base_dir=path.resolve().parent)
