"""The agent's settings: environment names, defaults, and the login precedence."""

import pytest
from pydantic import ValidationError

from edge.settings import DEFAULT_MQTT_URL, EdgeSettings, where


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MQTT_URL", "COMMUNITY_MQTT_URL", "COMMUNITY_EDGE_CONFIG", "EDGE_CONFIG", "MQTT_USERNAME",
                 "COMMUNITY_MQTT_USERNAME", "MQTT_PASSWORD", "COMMUNITY_MQTT_PASSWORD", "LOG_LEVEL",
                 "COMMUNITY_LOG_LEVEL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = EdgeSettings()
    assert settings.mqtt_url == DEFAULT_MQTT_URL
    assert settings.config is None
    assert settings.log_level == "INFO"


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_URL", "mqtt://broker.example:1884")
    assert EdgeSettings().mqtt_url == "mqtt://broker.example:1884"
    monkeypatch.setenv("COMMUNITY_MQTT_URL", "mqtt://cloud.example:1885")
    assert EdgeSettings().mqtt_url == "mqtt://cloud.example:1885"  # the specific name wins
    monkeypatch.setenv("COMMUNITY_EDGE_CONFIG", "/etc/community/gateway.yaml")
    monkeypatch.setenv("COMMUNITY_LOG_LEVEL", "debug")
    settings = EdgeSettings()
    assert str(settings.config) == "/etc/community/gateway.yaml"
    assert settings.log_level == "DEBUG"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNITY_MQTT_URL", "mqtt://cloud.example:1885")
    assert EdgeSettings(mqtt_url="mqtt://127.0.0.1:2000").mqtt_url == "mqtt://127.0.0.1:2000"


def test_a_bad_url_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="http://broker"):
        EdgeSettings(mqtt_url="http://broker:1883")


def test_login_from_settings_wins_over_the_url_and_never_shows_in_logs() -> None:
    settings = EdgeSettings(
        mqtt_url="mqtts://gw:url-secret@cloud.example", mqtt_username="gw-7", mqtt_password="s3cret"
    )
    endpoint = settings.uplink_endpoint()
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("cloud.example", 8883, True)
    assert (endpoint.username, endpoint.password) == ("gw-7", "s3cret")
    assert where(endpoint) == "mqtts://cloud.example:8883"
    assert "s3cret" not in repr(settings)
    from_url = EdgeSettings(mqtt_url="mqtt://gw:url-secret@cloud.example:1883").uplink_endpoint()
    assert (from_url.username, from_url.password) == ("gw", "url-secret")
