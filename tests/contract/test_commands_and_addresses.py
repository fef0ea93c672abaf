"""The contract's device commands, serial addresses and remote configuration documents."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.gateway_config import ModbusAddress, apply_remote_config, load_gateway_config
from contract.profiles import ProfileError, parse_profile

BASE: dict[str, Any] = {
    "name": "Pump",
    "protocol": "modbus",
    "metrics": [{"name": "pressure", "table": "holding_register", "address": 0, "type": "uint16", "scale": 0.01}],
}


def _profile(*commands: dict[str, Any]) -> Any:
    return parse_profile({**BASE, "commands": list(commands)}, profile_id="pump", source="pump.yaml")


def test_the_three_kinds_of_command_load() -> None:
    profile = _profile(
        {"name": "open_door", "action": "pulse_coil", "address": 0, "pulse": 2, "roles": ["guard", "admin"]},
        {"name": "reset_fault", "action": "write_register", "address": 10, "value": 1},
        {
            "name": "set_pressure",
            "action": "write_register",
            "address": 20,
            "scale": 0.01,
            "param": {"name": "bar", "min": 1.5, "max": 6, "unit": "bar"},
        },
        {"name": "run", "action": "write_coil", "address": 1, "param": {"name": "on"}},
    )
    by_name = {c.name: c for c in profile.commands}
    assert by_name["open_door"].roles == ["guard", "admin"] and by_name["open_door"].pulse == 2
    assert by_name["reset_fault"].roles == ["admin"]  # only the administrator unless the profile says more
    assert by_name["set_pressure"].param_type == "number"
    assert by_name["reset_fault"].param_type == "integer"
    assert by_name["run"].param_type == "bool"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ({"name": "x", "action": "write_register", "address": 1}, "exactly one of 'value'"),
        ({"name": "x", "action": "write_register", "address": 1, "value": 1, "param": {"name": "p"}}, "exactly one"),
        ({"name": "x", "action": "write_register", "address": 1, "param": {"name": "p", "min": 0}}, "param.max"),
        ({"name": "x", "action": "write_register", "address": 1, "value": True}, "must be a number"),
        ({"name": "x", "action": "write_register", "address": 1, "param": {"name": "p", "min": 5, "max": 1}}, "above"),
        ({"name": "x", "action": "write_coil", "address": 1, "value": 3}, "true or false"),
        ({"name": "x", "action": "pulse_coil", "address": 1, "value": 1}, "no 'value'"),
        ({"name": "x", "action": "pulse_coil", "address": 1, "pulse": 0}, "pulse"),
        ({"name": "x", "action": "write_register", "address": 65535, "type": "float32", "value": 1}, "past register"),
        ({"name": "x", "action": "explode", "address": 1}, "action"),
    ],
)
def test_a_broken_command_is_refused_naming_it(command: dict[str, Any], says: str) -> None:
    with pytest.raises(ProfileError) as err:
        _profile(command)
    assert "pump.yaml: commands[0]" in str(err.value) and says in str(err.value)


def test_a_command_defined_twice_is_refused() -> None:
    with pytest.raises(ProfileError, match="'reset' is defined twice"):
        _profile(*[{"name": "reset", "action": "write_register", "address": 1, "value": 1}] * 2)


def test_an_address_is_tcp_or_serial_and_names_its_bus() -> None:
    assert ModbusAddress(host="10.0.0.5", unit=3).bus == "tcp:10.0.0.5:502"
    serial = ModbusAddress(serial="/dev/ttyUSB0", baudrate=19200, parity="E", unit=7)
    assert serial.bus == "serial:/dev/ttyUSB0" and serial.stopbits == 1
    with pytest.raises(ValueError, match="exactly one of 'host'"):
        ModbusAddress(unit=1)
    with pytest.raises(ValueError, match="exactly one of 'host'"):
        ModbusAddress(host="a", serial="/dev/ttyS0")
    with pytest.raises(ValueError, match="baudrate"):
        ModbusAddress(serial="/dev/ttyS0", baudrate=12345)


def test_births_announce_commands_and_remote_config_keeps_identity(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    pump = {**BASE, "commands": [{"name": "reset_fault", "action": "write_register", "address": 9, "value": 1}]}
    (profiles / "pump.yaml").write_text(yaml.safe_dump(pump))
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "site": {"id": "s", "name": "S", "timezone": "UTC"},
                "gateway": {"id": "gw", "name": "G"},
                "profiles_dir": "profiles",
                "local_mqtt_url": "mqtt://127.0.0.1:1884",
                "devices": [{"name": "p1", "profile": "pump", "modbus": {"serial": "/dev/ttyS1", "unit": 2}}],
            }
        )
    )
    local = load_gateway_config(path)
    (info,) = local.device_infos()
    assert [c.name for c in info.commands] == ["reset_fault"] and info.commands[0].roles == ["admin"]

    remote = apply_remote_config(local, {"devices": [], "telemetry": {"max_delay": 2}}, version=4)
    assert remote.version == 4 and remote.config.gateway.id == "gw" and remote.config.devices == []
    assert remote.config.local_mqtt_url == "mqtt://127.0.0.1:1884"  # not named in the push: kept
    cleared = apply_remote_config(local, {"local_mqtt_url": None}, version=5)
    assert cleared.config.local_mqtt_url is None
    with pytest.raises(ProfileError, match=r"remote config v6: devices\[0\]: give exactly one address"):
        apply_remote_config(local, {"devices": [{"name": "p", "profile": "pump"}]}, version=6)
