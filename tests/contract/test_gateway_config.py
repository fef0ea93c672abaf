"""Gateway configs: the demo's loads; mistakes are refused naming the file and the field."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.gateway_config import load_gateway_config
from contract.profiles import ProfileError

REPO = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "site": {"id": "sunny", "name": "Sunny Gardens", "timezone": "Asia/Shanghai"},
    "gateway": {"id": "gw-1"},
    "profiles_dir": str(REPO / "device_profiles"),
    "devices": [
        {"name": "pump-1", "profile": "water-pump", "modbus": {"host": "10.0.0.5", "unit": 3}},
        {"name": "leak-1", "profile": "water-leak-sensor", "mqtt": {"topic": "sensors/leak-1"}},
    ],
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_demo_site_loads() -> None:
    loaded = load_gateway_config(REPO / "examples" / "demo-site.yaml")
    config = loaded.config
    assert (config.site.id, config.site.name, config.site.timezone) == ("demo-estate", "Sunny Gardens", "Asia/Shanghai")
    assert config.gateway.id == "gw-demo-1"
    profiles = {d.profile for d in config.devices}
    assert {"water-pump", "elevator", "fire-panel", "electricity-meter", "water-leak-sensor"} <= profiles
    for device in config.devices:
        if device.modbus is not None:
            assert device.modbus.host == "127.0.0.1" and 15020 <= device.modbus.port <= 15029
        assert device.location.building
    infos = loaded.device_infos()
    assert [i.name for i in infos] == [d.name for d in config.devices]


def test_defaults_fill_in(tmp_path: Path) -> None:
    loaded = load_gateway_config(write(tmp_path, GOOD))
    pump = loaded.config.devices[0]
    assert pump.modbus is not None and pump.modbus.port == 502
    assert loaded.config.telemetry.max_points == 50


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda d: d["devices"][0].update(profile="water-pmp"), "devices[0].profile", "no profile 'water-pmp'"),
        (lambda d: d["devices"][1].update(profile="water-pump"), "devices[1].modbus", "speaks Modbus"),
        (lambda d: d["devices"][0].update(profile="water-leak-sensor"), "devices[0].mqtt", "speaks MQTT"),
        (lambda d: d["devices"][0].update(mqtt={"topic": "x"}), "devices[0]", "give exactly one address"),
        (lambda d: d["devices"][1]["mqtt"].update(topic="sensors/+"), "devices[1].mqtt", "without '+' or '#'"),
        (lambda d: d["devices"][0]["modbus"].update(port=70000), "devices[0].modbus.port", "less than or equal"),
        (lambda d: d["devices"][1].update(name="pump-1"), "devices[1].name", "'pump-1' is used twice"),
        (lambda d: d["site"].update(timezone="Mars/Olympus"), "site.timezone", "unknown time zone"),
        (lambda d: d["site"].update(id="Sunny Gardens"), "site.id", "should match pattern"),
        (lambda d: d.update(telemtry={}), "telemtry", "Extra inputs are not permitted"),
        (lambda d: d.update(profiles_dir="/nowhere"), "profiles_dir", "does not exist"),
    ],
)  # fmt: skip
def test_a_broken_gateway_config_is_refused_naming_file_and_field(
    tmp_path: Path, change: Any, field: str, says: str
) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ProfileError) as info:
        load_gateway_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert field in message and says in message, message


def test_a_broken_profile_is_reported_through_the_gateway_config(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "pump.yaml").write_text("name: Pump\nprotocol: modbus\nmetrics: []\n")
    path = write(tmp_path, GOOD | {"profiles_dir": "profiles", "devices": []})
    with pytest.raises(
        ProfileError, match=r"gateway\.yaml: profiles_dir: cannot load profiles:\n.*pump\.yaml: metrics"
    ):
        load_gateway_config(path)
