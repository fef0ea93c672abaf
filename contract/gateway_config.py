"""The gateway configuration: which site and gateway this is, and the devices it serves.

Loaded by the edge agent and the simulator; later pushed from the cloud, which is why it lives
in the contract. Errors name the file and the field, like profile errors.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from contract.common import DeviceName, Location, SiteInfo, Slug, Strict, Text, format_validation_errors
from contract.messages import DEFAULT_POINTS_PER_MESSAGE, MAX_POINTS_PER_MESSAGE, DeviceInfo, MetricInfo
from contract.profiles import DeviceProfile, ProfileError, load_profiles, read_yaml


class ModbusAddress(Strict):
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit: Annotated[int, Field(ge=0, le=255)] = 1


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
            raise ValueError("give exactly one address: 'modbus' (host, port, unit) or 'mqtt' (topic)")
        return self


class GatewayIdentity(Strict):
    id: Slug
    name: Text = ""


class TelemetryOptions(Strict):
    max_points: Annotated[int, Field(ge=1, le=MAX_POINTS_PER_MESSAGE)] = DEFAULT_POINTS_PER_MESSAGE
    max_delay: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0


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
                )
            )
        return infos


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
    for i, dev in enumerate(config.devices):
        profile = profiles.get(dev.profile)
        if profile is None:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(
                f"{source}: devices[{i}].profile: no profile {dev.profile!r} in {profiles_dir} (known: {known})"
            )
        if profile.protocol == "modbus" and dev.modbus is None:
            raise ProfileError(
                f"{source}: devices[{i}].modbus: profile {dev.profile!r} speaks Modbus; give host/port/unit"
            )
        if profile.protocol == "mqtt" and dev.mqtt is None:
            raise ProfileError(f"{source}: devices[{i}].mqtt: profile {dev.profile!r} speaks MQTT; give its topic")
    return LoadedGatewayConfig(config=config, profiles=profiles, path=Path(source))


def load_gateway_config(path: str | Path) -> LoadedGatewayConfig:
    path = Path(path)
    return parse_gateway_config(read_yaml(path), source=str(path), base_dir=path.resolve().parent)
