"""Device profiles: the shipped ones load; broken ones are refused naming the file and the field."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.profiles import ModbusProfile, MqttProfile, ProfileError, load_profile, load_profiles

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "device_profiles"

GOOD: dict[str, Any] = {
    "name": "Test pump",
    "protocol": "modbus",
    "metrics": [
        {"name": "pressure", "table": "input_register", "address": 0, "type": "float32", "unit": "bar"},
        {"name": "fault_code", "table": "input_register", "address": 2, "type": "uint16"},
    ],
    "alarms": [{"id": "fault", "metric": "fault_code", "not_equals": 0, "severity": "critical", "ticket": "repair"}],
}


def write(directory: Path, name: str, data: Any) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_shipped_profile_loads() -> None:
    profiles = load_profiles(SHIPPED)
    assert {"water-pump", "elevator", "fire-panel", "water-leak-sensor", "electricity-meter"} <= set(profiles)
    for profile_id, profile in profiles.items():
        assert profile.id == profile_id
        assert profile.alarms, f"{profile_id} has no alarm rules"
    assert isinstance(profiles["water-leak-sensor"], MqttProfile)
    meter = profiles["electricity-meter"]
    assert isinstance(meter, ModbusProfile) and meter.word_order == "little"
    kwh = next(m for m in meter.metrics if m.name == "energy_import")
    assert (kwh.type, kwh.unit) == ("float32", "kWh")


def test_the_shipped_profiles_cover_what_the_brief_asks() -> None:
    profiles = load_profiles(SHIPPED)

    def rule(profile_id: str, rule_id: str) -> Any:
        return next(r for r in profiles[profile_id].alarms if r.id == rule_id)

    assert (rule("water-pump", "pump_fault").severity, rule("water-pump", "pump_fault").ticket) == (
        "critical",
        "repair",
    )
    low = rule("water-pump", "low_outlet_pressure")
    assert low.below is not None and low.hysteresis > 0 and low.hold > 0 and low.ticket == "repair"
    trapped = rule("elevator", "passenger_trapped")
    assert (trapped.equals, trapped.severity, trapped.ticket) == (True, "critical", "safety")
    zones = [r for r in profiles["fire-panel"].alarms if r.id.endswith("_fire")]
    assert len(zones) == 8 and all(r.ticket == "safety" and r.severity == "critical" for r in zones)
    assert any(r.bit_set is not None and r.ticket == "repair" for r in profiles["fire-panel"].alarms)
    assert rule("water-leak-sensor", "low_battery").ticket == "none"


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda d: d["metrics"][0].update(type="float"), "metrics[0].type", "Input should be 'int16'"),
        (lambda d: d["metrics"][1].update(adress=4), "metrics[1].adress", "Extra inputs are not permitted"),
        (lambda d: d.update(pol_interval=3), "pol_interval", "Extra inputs are not permitted"),
        (lambda d: d["alarms"][0].update(metric="fault"), "alarms[0].metric", "no metric named 'fault'"),
        (lambda d: d["metrics"][0].update(type="string"), "metrics[0]", "type 'string' needs 'count'"),
        (lambda d: d["alarms"][0].update(above=3), "alarms[0]", "give exactly one condition"),
        (lambda d: d["alarms"][0].update(severity="huge"), "alarms[0].severity", "'critical', 'major'"),
        (lambda d: d["alarms"][0].update(ticket="call-mum"), "alarms[0].ticket", "'repair', 'safety'"),
        (lambda d: d["metrics"][1].update(table="coil"), "metrics[1]", "a coil holds single bits"),
        (lambda d: d["metrics"][1].update(type="bit"), "metrics[1]", "type 'bit' needs 'bit'"),
        (lambda d: d["metrics"][1].update(table="register"), "metrics[1].table", "Input should be"),
        (lambda d: d.pop("protocol"), "protocol", "missing"),
        (lambda d: d.update(protocol="bacnet"), "protocol", "not one of 'modbus', 'mqtt'"),
        (lambda d: d["metrics"].append(dict(d["metrics"][0])), "metrics: ", "metric name 'pressure' is used twice"),
        (lambda d: d["alarms"][0].update(not_equals=None, above=1, hysteresis=-1), "alarms[0].hysteresis", "greater"),
    ],
)  # fmt: skip
def test_a_broken_profile_is_refused_naming_file_and_field(tmp_path: Path, change: Any, field: str, says: str) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    path = write(tmp_path, "broken-pump", data)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert field in message and says in message, message


def test_bad_yaml_is_refused_with_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pump", "name: Pump\nprotocol: modbus\nmetrics:\n  - {name: a, table: coil\n")
    with pytest.raises(ProfileError, match=rf"^{path}: not valid YAML at line \d+, column \d+"):
        load_profile(path)


def test_a_file_name_that_is_not_a_slug_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "Water Pump", GOOD)
    with pytest.raises(ProfileError, match=r"file name: .*not a slug"):
        load_profile(path)


def test_an_mqtt_profile_checks_its_paths(tmp_path: Path) -> None:
    data = {"name": "Leak", "protocol": "mqtt", "metrics": [{"name": "leak", "path": ".leak", "type": "bool"}]}
    with pytest.raises(ProfileError, match=r"metrics\[0\]\.path"):
        load_profile(write(tmp_path, "leak", data))
    data["metrics"][0]["path"] = "leak"
    data["metrics"][0]["table"] = "coil"  # a Modbus field in an MQTT profile
    with pytest.raises(ProfileError, match=r"metrics\[0\]\.table: Extra inputs are not permitted"):
        load_profile(write(tmp_path, "leak", data))


def test_all_broken_files_of_a_directory_are_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "good", GOOD)
    first = write(tmp_path, "first", {**GOOD, "timeout": "soon"})
    second = write(tmp_path, "second", {**GOOD, "name": ""} | {"metrics": []})
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    lines = str(info.value).splitlines()
    assert any(line.startswith(f"{first}: timeout") for line in lines)
    assert any(line.startswith(f"{second}: ") and "metrics" in line for line in lines)
    assert not any("good.yaml" in line for line in lines)
