"""Listen to the devices that publish to a broker themselves, and notice when they fall silent.

One paho client (its own network thread) subscribes to every MQTT device's topic; messages are
handed to the asyncio loop, where values are read and reported. Such a device has no request to
time out, so silence is the only sign it is gone: `offline_after` seconds of it.
"""

import asyncio
import logging

import paho.mqtt.client as mqtt

from contract.clock import Clock, SystemClock
from contract.gateway_config import DeviceConfig
from contract.messages import Reading
from contract.profiles import MqttProfile
from edge.drivers.mqtt_device.extract import PayloadReader
from edge.drivers.sink import DeviceSink
from edge.mqtt_client import make_client
from edge.settings import MqttEndpoint, where

log = logging.getLogger(__name__)


class _Device:
    def __init__(self, config: DeviceConfig, profile: MqttProfile, started: float) -> None:
        assert config.mqtt is not None
        self.name = config.name
        self.profile = profile
        self.reader = PayloadReader(config.name, config.mqtt.topic, profile)
        self.online: bool | None = None
        self.last_seen = started


class MqttDeviceListener:
    """Subscribes to the devices' topics on `endpoint`; `start()` returns at once, connecting in the background."""

    def __init__(
        self,
        devices: list[tuple[DeviceConfig, MqttProfile]],
        endpoint: MqttEndpoint,
        client_id: str,
        sink: DeviceSink,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.clock = clock or SystemClock()
        started = self.clock.monotonic()
        self._by_topic: dict[str, list[_Device]] = {}
        for config, profile in devices:
            assert config.mqtt is not None
            self._by_topic.setdefault(config.mqtt.topic, []).append(_Device(config, profile, started))
        self._client = make_client(client_id, endpoint, clean_session=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.messages = 0

    @property
    def devices(self) -> list[_Device]:
        return [d for devices in self._by_topic.values() for d in devices]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self._client.loop_start()
        if any(d.profile.offline_after > 0 for d in self.devices):
            self._watchdog = asyncio.create_task(self._watch(), name="mqtt-devices-watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        await asyncio.to_thread(self._disconnect)

    def _disconnect(self) -> None:
        # Stop paho's network thread first, then disconnect from this thread: with no loop
        # running, the DISCONNECT is written at once and no thread polls a closing socket (which
        # made paho log an error at every shutdown).
        self._client.loop_stop()
        self._client.disconnect()

    # -- paho's network thread ---------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("device broker %s refused the connection: %s", where(self.endpoint), reason)
            return
        log.info("listening for %d MQTT device(s) on %s", len(self.devices), where(self.endpoint))
        client.subscribe([(topic, 1) for topic in self._by_topic])

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle, message.topic, bytes(message.payload))

    # -- the asyncio loop ----------------------------------------------------------------------

    def _handle(self, topic: str, payload: bytes) -> None:
        self.messages += 1
        ts = self.clock.now()
        for device in self._by_topic.get(topic, []):
            values = device.reader.read(payload)
            if not values:
                continue
            device.last_seen = self.clock.monotonic()
            if device.online is not True:
                device.online = True
                log.info("device %s: online (message on %s)", device.name, topic)
                self.sink.state(device.name, True, f"message on {topic}")
            self.sink.reading(Reading(device=device.name, ts=ts, values=values))

    def check_silence(self) -> None:
        """Report devices silent for longer than their profile's `offline_after` as offline."""
        now = self.clock.monotonic()
        for device in self.devices:
            limit = device.profile.offline_after
            if limit > 0 and device.online is not False and now - device.last_seen > limit:
                device.online = False
                reason = f"no message for {limit:g} s"
                log.warning("device %s: offline: %s", device.name, reason)
                self.sink.state(device.name, False, reason)

    async def _watch(self) -> None:
        shortest = min(d.profile.offline_after for d in self.devices if d.profile.offline_after > 0)
        while True:
            await asyncio.sleep(min(1.0, shortest / 4))
            self.check_silence()
