"""The edge agent's settings: one typed object, read from arguments and the environment."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.urls import MqttEndpoint, parse_mqtt_url

__all__ = ["DEFAULT_MQTT_URL", "EdgeSettings", "MqttEndpoint", "parse_mqtt_url", "where"]

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


def where(endpoint: MqttEndpoint) -> str:
    """An endpoint for log lines: scheme, host and port, never the password."""
    return f"{'mqtts' if endpoint.tls else 'mqtt'}://{endpoint.host}:{endpoint.port}"


class EdgeSettings(BaseSettings):
    """Everything the agent needs to start; the rest is in the gateway config file."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    mqtt_url: str = Field(
        DEFAULT_MQTT_URL,
        validation_alias=AliasChoices("COMMUNITY_MQTT_URL", "MQTT_URL"),
        description="The uplink broker (the cloud's), mqtt://host:port or mqtts://host:port.",
    )
    mqtt_username: str | None = Field(None, validation_alias=AliasChoices("COMMUNITY_MQTT_USERNAME", "MQTT_USERNAME"))
    mqtt_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("COMMUNITY_MQTT_PASSWORD", "MQTT_PASSWORD")
    )
    mqtt_ca_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("COMMUNITY_MQTT_CA_FILE", "MQTT_CA_FILE"),
        description="CA certificate (PEM) that signed the broker's certificate, for mqtts:// with a private CA; "
        "unset: the system's trusted CAs.",
    )
    config: Path | None = Field(
        None,
        validation_alias=AliasChoices("COMMUNITY_EDGE_CONFIG", "EDGE_CONFIG"),
        description="The gateway config file (site, gateway, devices).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=AliasChoices("COMMUNITY_LOG_LEVEL", "LOG_LEVEL")
    )
    state_dir: Path = Field(
        Path("var/edge"),
        validation_alias=AliasChoices("COMMUNITY_EDGE_STATE_DIR", "EDGE_STATE_DIR"),
        description="Where the agent keeps what must survive a restart "
        "(the outbox, the last good pushed configuration, the door whitelist).",
    )
    outbox_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("COMMUNITY_OUTBOX_PATH", "OUTBOX_PATH"),
        description="The outbox's SQLite file; unset: `state_dir/outbox-<gateway id>.sqlite3`.",
    )
    outbox_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        validation_alias=AliasChoices("COMMUNITY_OUTBOX_MAX_BYTES", "OUTBOX_MAX_BYTES"),
        description="Payload bytes the outbox may hold; past it the oldest telemetry is dropped (and counted).",
    )
    outbox_max_age: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        validation_alias=AliasChoices("COMMUNITY_OUTBOX_MAX_AGE", "OUTBOX_MAX_AGE"),
        description="Seconds a message may wait for the broker before it is dropped (and counted).",
    )
    outbox_drain_rate: float = Field(
        200.0,
        ge=0,
        validation_alias=AliasChoices("COMMUNITY_OUTBOX_DRAIN_RATE", "OUTBOX_DRAIN_RATE"),
        description="Backlog telemetry messages a second sent after a reconnect, beside live data; 0: no limit.",
    )
    outbox_window: int = Field(
        100,
        ge=1,
        le=10_000,
        validation_alias=AliasChoices("COMMUNITY_OUTBOX_WINDOW", "OUTBOX_WINDOW"),
        description="Messages per lane handed to the MQTT client and not yet acknowledged (bounds its memory).",
    )
    reconnect_max_delay: float = Field(
        30.0,
        ge=1,
        le=3600,
        validation_alias=AliasChoices("COMMUNITY_RECONNECT_MAX_DELAY", "RECONNECT_MAX_DELAY"),
        description="Seconds at most between reconnection attempts, to the broker and to each Modbus device.",
    )
    camera_frame_seconds: float = Field(
        1.0,
        validation_alias=AliasChoices("COMMUNITY_CAMERA_FRAME_SECONDS", "CAMERA_FRAME_SECONDS"),
        description="Seconds between two frames a camera sends to the cloud for the guard console "
        "(at least 1; 0: send none). Only a new frame is sent, at QoS 0, and none while offline.",
    )
    health_interval: float = Field(
        60.0,
        gt=0,
        validation_alias=AliasChoices("COMMUNITY_HEALTH_INTERVAL", "HEALTH_INTERVAL"),
        description="Seconds between the agent's health messages.",
    )

    @field_validator("mqtt_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("camera_frame_seconds")
    @classmethod
    def _frames_at_most_once_a_second(cls, value: float) -> float:
        if value != 0 and value < 1:
            raise ValueError("at least 1 second between frames, or 0 for none")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def outbox_file(self, gateway: str) -> Path:
        """The outbox of `gateway`: the set path, or one per gateway id under the state folder."""
        return self.outbox_path or self.state_dir / f"outbox-{gateway}.sqlite3"

    def config_store_file(self, gateway: str) -> Path:
        """Where the last good configuration pushed by the cloud is kept (docs/mqtt.md, remote configuration)."""
        return self.state_dir / f"config-{gateway}.json"

    def uplink_endpoint(self) -> MqttEndpoint:
        """The uplink broker, with the login from the settings taking precedence over one in the URL."""
        endpoint = parse_mqtt_url(self.mqtt_url)
        return MqttEndpoint(
            host=endpoint.host,
            port=endpoint.port,
            tls=endpoint.tls,
            username=self.mqtt_username or endpoint.username,
            password=self.mqtt_password.get_secret_value() if self.mqtt_password else endpoint.password,
        )
