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
    config: Path | None = Field(
        None,
        validation_alias=AliasChoices("COMMUNITY_EDGE_CONFIG", "EDGE_CONFIG"),
        description="The gateway config file (site, gateway, devices).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=AliasChoices("COMMUNITY_LOG_LEVEL", "LOG_LEVEL")
    )

    @field_validator("mqtt_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

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
