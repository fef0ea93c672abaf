"""Simulated devices that speak MQTT: they publish JSON, shaped by their profile's paths.

A metric at path `temp.c` becomes `{"temp": {"c": 21.5}}`, scaled back to what the device would
send, so the edge's extraction reads exactly what the profile promises.
"""

import asyncio
import json
import logging
from typing import Any

from contract.common import Value
from contract.gateway_config import LoadedGatewayConfig
from contract.profiles import MqttMetric, MqttProfile
from edge.mqtt_client import make_client
from edge.settings import MqttEndpoint, where

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, Value] = {"number": 0.0, "integer": 0, "bool": False, "string": ""}


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at a dotted path, making objects (and lists, for digit parts) on the way."""
    parts = path.split(".")
    node: Any = document
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        empty: Any = None if following is None else ([] if following.isdigit() else {})
        if isinstance(node, list):
            index = int(part)
            node.extend([None] * (index + 1 - len(node)))
            if following is None:
                node[index] = value
            elif node[index] is None:
                node[index] = empty
            node = node[index]
        else:
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, empty)


def raw_value(metric: MqttMetric, value: Value) -> Value:
    """What the device sends for a metric value: scale and offset undone, whole numbers for integers."""
    if metric.type in ("bool", "string") or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    raw = (value - metric.offset) / metric.scale
    return round(raw) if metric.type == "integer" else raw


class SimulatedMqttDevice:
    def __init__(self, name: str, topic: str, profile: MqttProfile) -> None:
        self.name = name
        self.topic = topic
        self.profile = profile
        self.values: dict[str, Value] = {m.name: _DEFAULTS[m.type] for m in profile.metrics}
        self.answering = True

    def set(self, metric: str, value: Value) -> None:
        if metric not in self.values:
            raise KeyError(f"device {self.name}: no metric {metric!r} in profile {self.profile.id}")
        self.values[metric] = value

    def get(self, metric: str) -> Value:
        return self.values[metric]

    def payload(self) -> bytes:
        document: dict[str, Any] = {}
        for metric in self.profile.metrics:
            set_path(document, metric.path, raw_value(metric, self.values[metric.name]))
        return json.dumps(document).encode()


class MqttDevicePublisher:
    """One paho client publishing for every simulated MQTT device."""

    def __init__(self, gateway: LoadedGatewayConfig, endpoint: MqttEndpoint, client_id: str) -> None:
        self.devices: dict[str, SimulatedMqttDevice] = {}
        for config in gateway.config.devices:
            profile = gateway.profile_of(config)
            if config.mqtt is not None and isinstance(profile, MqttProfile):
                self.devices[config.name] = SimulatedMqttDevice(config.name, config.mqtt.topic, profile)
        self.endpoint = endpoint
        self._client = make_client(client_id, endpoint, clean_session=True)
        self._client.reconnect_delay_set(1, 30)
        self.published = 0

    def device(self, name: str) -> SimulatedMqttDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no simulated MQTT device {name!r} (simulated: {', '.join(self.devices)})") from None

    async def start(self) -> None:
        self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self._client.loop_start()
        log.info("simulated MQTT devices publish to %s: %s", where(self.endpoint), ", ".join(self.devices))

    async def stop(self) -> None:
        await asyncio.to_thread(self._disconnect)

    def _disconnect(self) -> None:
        # loop first, then disconnect from this thread (see edge's MqttDeviceListener._disconnect)
        self._client.loop_stop()
        self._client.disconnect()

    def publish(self, name: str) -> None:
        """Send the device's current values (QoS 1; queued by paho while the broker is away)."""
        device = self.device(name)
        if not device.answering:
            return
        self._client.publish(device.topic, device.payload(), qos=1)
        self.published += 1
