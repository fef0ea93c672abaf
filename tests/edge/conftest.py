"""Helpers for the edge tests: gateway configs on free ports, a recording MQTT subscriber."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from community.broker import free_port
from contract.messages import Reading
from contract.urls import parse_mqtt_url

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "device_profiles"


def write_gateway_config(
    directory: Path,
    devices: list[dict[str, Any]],
    *,
    site: str = "test-site",
    gateway: str = "gw-test",
    profiles_dir: Path = PROFILES,
    telemetry: dict[str, Any] | None = None,
) -> Path:
    """A gateway config file in `directory` naming `devices`."""
    path = directory / "gateway.yaml"
    document: dict[str, Any] = {
        "site": {"id": site, "name": "Test site", "timezone": "Asia/Shanghai"},
        "gateway": {"id": gateway, "name": "Test gateway"},
        "profiles_dir": str(profiles_dir),
        "devices": devices,
    }
    if telemetry:
        document["telemetry"] = telemetry
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def modbus_device(name: str, profile: str, port: int, unit: int = 1, poll_interval: float = 0.1) -> dict[str, Any]:
    return {
        "name": name,
        "profile": profile,
        "modbus": {"host": "127.0.0.1", "port": port, "unit": unit},
        "poll_interval": poll_interval,
        "location": {"building": "B1", "floor": "1"},
    }


@pytest.fixture
def port() -> int:
    return free_port()


class RecordingSink:
    """A DeviceSink that keeps what the drivers report."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.states: list[tuple[str, bool, str]] = []

    def reading(self, reading: Reading) -> None:
        self.readings.append(reading)

    def state(self, device: str, online: bool, reason: str) -> None:
        self.states.append((device, online, reason))

    def values_of(self, device: str) -> list[dict[str, Any]]:
        return [r.values for r in self.readings if r.device == device]


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def kind(self) -> str:
        return self.topic.split("/", 4)[4]

    def json(self) -> dict[str, Any]:
        return json.loads(self.payload)


class MqttRecorder:
    """Subscribes to topics on the test broker and keeps every message, thread-safely."""

    def __init__(self, url: str, client_id: str, *, clean_session: bool = True) -> None:
        endpoint = parse_mqtt_url(url)
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_args: done.set()
        self.client.subscribe(topic_filter, qos=1)
        assert done.wait(10), f"no SUBACK for {topic_filter}"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def of_kind(self, kind: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.kind == kind]

    def wait_for(self, predicate: Callable[["MqttRecorder"], Any], timeout: float = 20.0) -> Any:
        """Block until `predicate(self)` is truthy (and return it); fail the test after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kinds = [m.kind for m in self.messages]
                    pytest.fail(f"condition not met within {timeout:g} s; received kinds: {kinds}")
                self._cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_recorder(mqtt_url: str, unique_id: str) -> Iterator[MqttRecorder]:
    recorder = MqttRecorder(mqtt_url, f"recorder-{unique_id}")
    yield recorder
    recorder.close()
