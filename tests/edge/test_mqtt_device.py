"""Devices that speak MQTT: metrics by dotted path, bad payloads skipped, silence means offline."""

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract.gateway_config import DeviceConfig, MqttAddress
from contract.profiles import MqttProfile, load_profiles, parse_profile
from contract.urls import parse_mqtt_url
from edge.drivers.mqtt_device.extract import PayloadReader, get_path
from edge.drivers.mqtt_device.listener import MqttDeviceListener
from tests.edge.conftest import PROFILES, RecordingSink

LEAK = load_profiles(PROFILES)["water-leak-sensor"]
assert isinstance(LEAK, MqttProfile)


def sensor_profile(**overrides: Any) -> MqttProfile:
    data: dict[str, Any] = {
        "name": "Probe",
        "protocol": "mqtt",
        "metrics": [
            {"name": "leak", "path": "leak", "type": "bool"},
            {"name": "battery", "path": "battery", "type": "integer"},
            {"name": "temperature", "path": "temp.c", "type": "number"},
            {"name": "second_probe", "path": "probes.1.c", "type": "number"},
            {"name": "tenths", "path": "raw", "type": "number", "scale": 0.1, "offset": -40},
            {"name": "firmware", "path": "fw", "type": "string"},
        ],
    } | overrides
    profile = parse_profile(data, profile_id="probe", source="probe.yaml")
    assert isinstance(profile, MqttProfile)
    return profile


def test_metrics_come_from_dotted_paths() -> None:
    reader = PayloadReader("leak-1", "sensors/leak-1", sensor_profile())
    payload = {
        "leak": True, "battery": 87, "temp": {"c": 21.5}, "probes": [{"c": 1.5}, {"c": 2.5}], "raw": 655,
        "fw": "1.4.2",
    }  # fmt: skip
    assert reader.read(json.dumps(payload).encode()) == {
        "leak": True, "battery": 87, "temperature": 21.5, "second_probe": 2.5, "tenths": 25.5, "firmware": "1.4.2",
    }  # fmt: skip


def test_get_path_indexes_lists_and_objects() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "0": "zero"}
    assert get_path(doc, "a.b.1.c") == 2
    assert get_path(doc, "0") == "zero"
    with pytest.raises(LookupError):
        get_path(doc, "a.b.2.c")
    with pytest.raises(LookupError):
        get_path(doc, "a.x")


def test_values_are_typed_as_the_profile_says() -> None:
    reader = PayloadReader("leak-1", "t", sensor_profile())
    got = reader.read(b'{"leak": "on", "battery": 87.0, "temp": {"c": "21.5"}, "fw": 3}')
    assert got == {"leak": True, "battery": 87, "temperature": 21.5, "firmware": "3"}
    assert isinstance(got["battery"], int)


def test_a_payload_that_is_not_json_is_skipped_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    reader = PayloadReader("leak-1", "sensors/leak-1", sensor_profile())
    with caplog.at_level(logging.WARNING):
        assert reader.read(b"leak=1") == {}
        assert reader.read(b'{"leak": NaN}') == {}  # NaN is not JSON, whatever Python's json says
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("leak-1" in line and "sensors/leak-1" in line and "not JSON" in line for line in lines)


def test_a_missing_path_gives_a_partial_reading_and_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    reader = PayloadReader("leak-1", "sensors/leak-1", sensor_profile())
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert reader.read(b'{"leak": false, "battery": 50, "temp": {}}') == {"leak": False, "battery": 50}
    lines = [r.getMessage() for r in caplog.records if "temp.c" in r.getMessage()]
    assert len(lines) == 1
    assert "leak-1" in lines[0] and "sensors/leak-1" in lines[0] and "temperature" in lines[0]


def test_wrongly_typed_values_are_skipped() -> None:
    reader = PayloadReader("leak-1", "t", sensor_profile())
    got = reader.read(b'{"leak": "maybe", "battery": 87.5, "temp": {"c": true}, "raw": 1e999, "fw": {"v": 1}}')
    assert got == {}
    assert reader.read(json.dumps({"leak": False, "fw": "x" * 1001}).encode()) == {"leak": False}


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.02)


def test_listener_reads_published_values_and_reports_silence(mqtt_url: str, unique_id: str) -> None:
    topic = f"sensors/{unique_id}/leak-b1"
    profile = LEAK.model_copy(update={"offline_after": 0.5})
    device = DeviceConfig(name="leak-b1", profile="water-leak-sensor", mqtt=MqttAddress(topic=topic))
    endpoint = parse_mqtt_url(mqtt_url)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}", protocol=mqtt.MQTTv311)
    publisher.connect(endpoint.host, endpoint.port)
    publisher.loop_start()

    async def run() -> RecordingSink:
        sink = RecordingSink()
        listener = MqttDeviceListener([(device, profile)], endpoint, f"{unique_id}-devices", sink)
        await listener.start()
        try:
            payload = json.dumps({"leak": False, "battery": 87, "temp": {"c": 21.5}, "link": {"rssi": -70}})
            # Until the listener's subscription is in place, messages go nowhere: publish until heard.
            for _ in range(100):
                publisher.publish(topic, payload, qos=1).wait_for_publish(5)
                await asyncio.sleep(0.1)
                if sink.readings:
                    break
            else:
                pytest.fail("the listener never received a message")
            await until(lambda: ("leak-b1", False) in [s[:2] for s in sink.states])
            publisher.publish(topic, json.dumps({"leak": True, "battery": 86}), qos=1)
            await until(lambda: [s[:2] for s in sink.states][-1] == ("leak-b1", True))
            await until(lambda: sink.values_of("leak-b1")[-1] == {"leak": True, "battery": 86})
        finally:
            await listener.stop()
        return sink

    try:
        sink = asyncio.run(run())
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    assert sink.values_of("leak-b1")[0] == {"leak": False, "battery": 87, "temperature": 21.5, "rssi": -70}
    assert [s[:2] for s in sink.states] == [("leak-b1", True), ("leak-b1", False), ("leak-b1", True)]
    assert "no message for 0.5 s" in sink.states[1][2]
