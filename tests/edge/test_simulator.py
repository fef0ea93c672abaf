"""The simulator: scenario files, metric behaviours, client writes, MQTT payloads, the demo's promise."""

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient

from community.broker import free_port
from contract.clock import ManualClock
from contract.profiles import MqttProfile, load_profiles
from edge.drivers.mqtt_device.extract import PayloadReader
from edge.rules import DeviceRules
from simulator.behaviours import DeviceScript
from simulator.mqtt_devices import SimulatedMqttDevice, set_path
from simulator.run import Simulation
from simulator.scenario import DeviceScenario, ScenarioError, load_scenario
from tests.edge.conftest import PROFILES, REPO, modbus_device, write_gateway_config

DEMO = REPO / "examples" / "demo-simulation.yaml"


def scenario_file(tmp_path: Path, devices: dict[str, Any], port: int | None = None, **extra: Any) -> Path:
    gateway = write_gateway_config(
        tmp_path,
        [
            modbus_device("pump-1", "water-pump", port or free_port()),
            {"name": "leak-1", "profile": "water-leak-sensor", "mqtt": {"topic": "sensors/leak-1"}},
        ],
    )
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"gateway_config": gateway.name, "devices": devices} | extra))
    return path


# -- the scenario file ---------------------------------------------------------------------------


def test_the_demo_scenario_loads() -> None:
    loaded = load_scenario(DEMO)
    assert loaded.gateway.config.site.id == "demo-estate"
    assert set(loaded.scenario.devices) == {d.name for d in loaded.gateway.config.devices}


@pytest.mark.parametrize(
    ("devices", "extra", "expected"),
    [
        ({"pump-9": {}}, {}, r"devices\.pump-9: no device 'pump-9'"),
        ({"pump-1": {"events": [{"at": 1, "set": {"fault_cod": 3}}]}}, {},
         r"devices\.pump-1\.events\[0\]\.set\.fault_cod: no metric 'fault_cod' in profile water-pump"),
        ({"pump-1": {"metrics": {"running": {"sine": {"min": 0, "max": 1, "period": 5}}}}}, {},
         r"devices\.pump-1\.metrics\.running: sine, random_walk and counter need a numeric metric"),
        ({"pump-1": {"events": [{"at": 1, "set": {"running": "yes"}}]}}, {},
         r"events\[0\]\.set\.running: running is a flag"),
        ({"pump-1": {"metrics": {"outlet_pressure": {"constant": 1, "counter": {"rate": 1}}}}}, {},
         r"devices\.pump-1\.metrics\.outlet_pressure: .*exactly one of constant, sine, random_walk, counter"),
        ({"pump-1": {"down": [{"at": 5, "every": 10}]}}, {}, r"devices\.pump-1\.down\[0\]: .*'every' needs 'for'"),
        ({"pump-1": {"down": [{"at": 5, "for": 10, "every": 10}]}}, {}, r"'for' \(10\) must be shorter"),
        ({"pump-1": {"metrics": {"outlet_pressure": {"sine": {"min": 5, "max": 1, "period": 5}}}}}, {},
         r"min 5.0 is above max 1.0"),
        ({"pump-1": {"events": [{"at": 1, "set": {"fault_code": -1}}]}}, {},
         r"events\[0\]\.set\.fault_code: -1 does not fit a uint16"),
        ({}, {"tick": 0}, r"tick: Input should be greater than or equal to 0.05"),
        ({}, {"speed": 2}, r"speed: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_broken_scenario_is_refused_naming_file_and_field(
    tmp_path: Path, devices: dict[str, Any], extra: dict[str, Any], expected: str
) -> None:
    path = scenario_file(tmp_path, devices, **extra)
    with pytest.raises(ScenarioError, match=expected) as info:
        load_scenario(path)
    assert str(info.value).startswith(str(path))


def test_a_missing_gateway_config_and_bad_yaml_are_named(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("gateway_config: nowhere.yaml\n")
    with pytest.raises(ScenarioError, match=r"scenario\.yaml: gateway_config: no file .*nowhere\.yaml"):
        load_scenario(path)
    path.write_text("gateway_config: x.yaml\ndevices:\n  pump-1: [\n")
    with pytest.raises(ValueError, match=r"scenario\.yaml: not valid YAML at line \d+"):
        load_scenario(path)


# -- behaviours ----------------------------------------------------------------------------------


def script(spec: dict[str, Any]) -> DeviceScript:
    return DeviceScript("pump-1", DeviceScenario.model_validate(spec), random.Random(1))


def test_behaviours_move_within_their_bounds() -> None:
    s = script(
        {
            "metrics": {
                "outlet_pressure": {"sine": {"min": 3.9, "max": 4.5, "period": 60}},
                "motor_current": {"random_walk": {"start": 14, "step": 0.5, "min": 13, "max": 15}},
                "run_hours": {"counter": {"start": 100, "rate": 2}},
                "running": True,
            }
        }
    )
    steps = [s.step(t / 2, lambda _m: 0) for t in range(400)]
    assert all(3.9 <= v["outlet_pressure"] <= 4.5 for v in steps)
    assert max(v["outlet_pressure"] for v in steps) == pytest.approx(4.5, abs=1e-3)
    assert all(13 <= v["motor_current"] <= 15 for v in steps)
    assert len({v["motor_current"] for v in steps}) > 10
    assert steps[10]["run_hours"] == 110
    assert all(v["running"] is True for v in steps)


def test_events_override_and_then_restore() -> None:
    s = script({"events": [{"at": 20, "for": 30, "set": {"fault_code": 3}}]})
    current = {"fault_code": 7}

    def at(t: float) -> dict[str, Any]:
        values = s.step(t, current.__getitem__)
        current.update(values)
        return values

    assert at(0) == {}
    assert at(20) == {"fault_code": 3}
    assert at(49.9) == {"fault_code": 3}
    assert at(50) == {"fault_code": 7}  # the value from before the event
    assert at(60) == {}


def test_repeating_windows_and_down_time() -> None:
    s = script({"down": [{"at": 10, "for": 5, "every": 60}], "events": [{"at": 0, "set": {"fault_code": 1}}]})
    assert [s.down(t) for t in (0, 9.9, 10, 14.9, 15, 69.9, 70, 75)] == [
        False, False, True, True, False, False, True, False,
    ]  # fmt: skip
    assert s.step(1000, lambda _m: 0) == {"fault_code": 1}  # no 'for': it stays


def test_the_demo_raises_a_ticket_alarm_within_the_first_minute() -> None:
    """What the demo promises: a pump fault (repair ticket) within a minute, a leak a bit later."""
    loaded = load_scenario(DEMO)
    sim = Simulation(loaded, "mqtt://127.0.0.1:1")  # never started: ticks only, no servers, no broker
    clock = ManualClock()
    rules = {
        d.name: DeviceRules(d.name, loaded.gateway.profile_of(d).alarms, clock) for d in loaded.gateway.config.devices
    }
    raised: dict[str, float] = {}
    for step in range(0, 121):
        t = step * 0.5
        sim.tick(t)
        for device in loaded.gateway.config.devices:
            values = {m.name: sim.get(device.name, m.name) for m in loaded.gateway.profile_of(device).metrics}
            for transition in rules[device.name].evaluate(values):
                if transition.action == "raise" and transition.rule.ticket != "none":
                    raised.setdefault(f"{device.name}/{transition.rule.id}", t)
        clock.advance(0.5)
    assert "pump-1/pump_fault" in raised and raised["pump-1/pump_fault"] < 60
    assert "leak-b1-pump-room/water_leak" in raised
    assert raised["leak-b1-pump-room/water_leak"] > raised["pump-1/pump_fault"]
    assert set(raised) == {"pump-1/pump_fault", "leak-b1-pump-room/water_leak"}  # nothing else by accident


# -- Modbus writes -------------------------------------------------------------------------------


def test_client_writes_land_in_the_simulated_registers_and_stay(tmp_path: Path) -> None:
    port = free_port()
    path = scenario_file(
        tmp_path, {"pump-1": {"metrics": {"pressure_setpoint": 4.2, "auto_mode": True}}}, port, tick=0.05
    )
    loaded = load_scenario(path)

    async def run() -> tuple[Any, Any]:
        async with Simulation(loaded, "mqtt://127.0.0.1:1") as sim:
            client = AsyncModbusTcpClient("127.0.0.1", port=port)
            await client.connect()
            try:
                assert sim.get("pump-1", "pressure_setpoint") == 4.2
                # pressure_setpoint is a uint16 in hundredths of a bar
                assert not (await client.write_register(100, 550, device_id=1)).isError()
                assert not (await client.write_coil(1, False, device_id=1)).isError()
                await asyncio.sleep(0.3)  # several ticks: the scenario must not write its value back
                read = await client.read_holding_registers(100, count=1, device_id=1)
                return sim.get("pump-1", "pressure_setpoint"), (sim.get("pump-1", "auto_mode"), read.registers)
            finally:
                client.close()

    setpoint, (auto_mode, read_back) = asyncio.run(run())
    assert setpoint == 5.5
    assert auto_mode is False
    assert read_back == [550]


# -- MQTT devices --------------------------------------------------------------------------------


def test_mqtt_payload_follows_the_profile_paths_and_reads_back() -> None:
    profile = load_profiles(PROFILES)["water-leak-sensor"]
    assert isinstance(profile, MqttProfile)
    device = SimulatedMqttDevice("leak-1", "sensors/leak-1", profile)
    device.set("leak", True)
    device.set("battery", 86.6)  # an integer metric: sent as a whole number
    device.set("temperature", 21.5)
    device.set("rssi", -71)
    assert yaml.safe_load(device.payload()) == {"leak": True, "battery": 87, "temp": {"c": 21.5}, "link": {"rssi": -71}}
    read = PayloadReader("leak-1", "sensors/leak-1", profile).read(device.payload())
    assert read == {"leak": True, "battery": 87, "temperature": 21.5, "rssi": -71}


def test_set_path_builds_objects_and_lists() -> None:
    doc: dict[str, Any] = {}
    set_path(doc, "a.b", 1)
    set_path(doc, "a.c", 2)
    set_path(doc, "probes.1.c", 3.5)
    assert doc == {"a": {"b": 1, "c": 2}, "probes": [None, {"c": 3.5}]}
