"""The gateway's one MQTT connection to the cloud's broker.

Client id = gateway id with a persistent session (clean_session=False), so commands sent while
the gateway is away wait for it at the broker, and QoS 1 messages not yet acknowledged are sent
again after a reconnect (paho keeps them and re-sends them itself; the outbox must not). The
outbox (edge/outbox.py) decides what is handed to paho and when, so paho's queue stays within the
outbox's window; `on_ack`, `on_connected` and `on_disconnected` tell it what happens on the wire.
The last will is a retained `offline` status, so the cloud sees a dead
gateway; every (re)connect publishes the retained birth and `online` status. paho runs the
network in its own thread and reconnects by itself with backoff; `publish` is safe from any thread.
"""

import logging
import random
import threading
from collections.abc import Callable
from importlib import metadata

import paho.mqtt.client as mqtt

from contract.clock import Clock
from contract.messages import BirthMessage, StatusMessage, encode
from contract.topics import Kind, topic
from edge.mqtt_client import make_client
from edge.settings import MqttEndpoint, where

log = logging.getLogger(__name__)

QOS = 1
#: Seconds between pings; the broker declares the gateway dead (and sends its will) after 1.5x.
KEEPALIVE = 20
#: QoS 1 messages on the wire before their acknowledgement (paho's default is 20), when the
#: caller does not say. The agent passes its outbox's lanes' windows plus room for birth and
#: status, so that paho never holds a message back in its own queue. After an outage the
#: backlog drains at about window / round-trip time: 100 over a 100 ms WAN link is 1,000
#: messages (50,000 points) a second, which the cloud can take.
MAX_INFLIGHT = 100
#: Reconnect backoff (paho doubles the delay from the first to the second figure).
RECONNECT_DELAY = (1, 30)


def edge_version() -> str:
    try:
        return metadata.version("smart-community")
    except metadata.PackageNotFoundError:
        return ""


class Uplink:
    """Connects, announces the gateway, carries messages up and commands down."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        site: str,
        gateway: str,
        *,
        birth: Callable[[], BirthMessage],
        on_command: Callable[[bytes], None],
        clock: Clock,
        max_inflight: int = MAX_INFLIGHT,
        reconnect_max_delay: float = RECONNECT_DELAY[1],
        on_config: Callable[[bytes], None] | None = None,
        on_whitelist: Callable[[bytes], None] | None = None,
        ca_file: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self._birth = birth
        self._on_command = on_command
        self._on_config = on_config
        self._on_whitelist = on_whitelist
        self.client = make_client(gateway, endpoint, clean_session=False, ca_file=ca_file)
        self.client.max_inflight_messages_set(max_inflight)
        # 0 = no limit: paho would otherwise refuse messages once its queue is full. Its queue is
        # bounded by the outbox's window instead (plus birth and status of each connect).
        self.client.max_queued_messages_set(0)
        #: Called on paho's thread: the broker acknowledged message `mid`; connected (after birth
        #: and status went out); the connection is gone.
        self.on_ack: Callable[[int], None] | None = None
        self.on_connected: Callable[[], None] | None = None
        self.on_disconnected: Callable[[], None] | None = None
        # paho doubles the delay after each failed attempt but adds no jitter; a first delay drawn
        # per gateway (0.5x to 1.5x) puts each gateway on its own schedule, so a fleet does not
        # reconnect in step after a broker restart.
        self.reconnect_delays = (
            RECONNECT_DELAY[0] * (rng or random.Random()).uniform(0.5, 1.5),
            max(float(RECONNECT_DELAY[0]), reconnect_max_delay),
        )
        self.client.reconnect_delay_set(*self.reconnect_delays)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.message_callback_add(self.topic(Kind.COMMAND), self._on_command_message)
        if on_config is not None:
            self.client.message_callback_add(self.topic(Kind.CONFIG), self._on_config_message)
        if on_whitelist is not None:
            self.client.message_callback_add(self.topic(Kind.ACCESS_WHITELIST), self._on_whitelist_message)
        self._set_will()
        self.connected = threading.Event()
        self.connections = 0
        self._stopping = False
        # Message ids sent and not yet acknowledged; paho may report the ack before publish()
        # returns, hence the second set. Never held while calling into paho (its callbacks
        # run under paho's own locks).
        self._lock = threading.Condition()
        self._unacked: set[int] = set()
        self._acked_early: set[int] = set()

    def topic(self, kind: Kind) -> str:
        return topic(self.site, self.gateway, kind)

    def start(self) -> None:
        """Connect in the background; retries until the broker answers."""
        log.info("uplink: connecting to %s as %s", where(self.endpoint), self.gateway)
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=KEEPALIVE)
        self.client.loop_start()

    def publish(self, kind: Kind, payload: bytes, *, retain: bool = False) -> int | None:
        """Queue a message (QoS 1); paho sends it now or after the next connect. Its MQTT message id,
        which `on_ack` reports when the broker has it; None when paho refused it."""
        info = self.client.publish(self.topic(kind), payload, qos=QOS, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # cannot happen with an unlimited queue; say so if it does
            log.error("uplink: paho refused a %s message: queue full", kind.value)
            return None
        with self._lock:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._unacked.add(info.mid)
        return info.mid

    def publish_volatile(self, kind: Kind, payload: bytes) -> bool:
        """Send at QoS 0 now if connected, else drop: for what the next message replaces (camera frames).

        Not tracked and not kept in paho's queue while offline, so a broker outage costs no memory.
        """
        if not self.connected.is_set():
            return False
        info = self.client.publish(self.topic(kind), payload, qos=0)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def unacked(self) -> int:
        """Messages handed to paho and not yet acknowledged by the broker."""
        with self._lock:
            return len(self._unacked)

    def wait_delivered(self, timeout: float) -> bool:
        """Block until the broker has acknowledged everything published so far, or `timeout`."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._unacked, timeout)

    def stop(self, reason: str = "shutdown", timeout: float = 5.0) -> None:
        """Say `offline` (retained), wait for acknowledgements, disconnect (which discards the will)."""
        self._stopping = True
        status = StatusMessage(ts=self.clock.now(), state="offline", reason=reason)
        self.publish(Kind.STATUS, encode(status), retain=True)
        if self.connected.is_set() and not self.wait_delivered(timeout):
            log.warning("uplink: %d message(s) not acknowledged at shutdown; the outbox keeps them", self.unacked())
        elif not self.connected.is_set() and self.unacked():
            log.warning("uplink: broker unreachable at shutdown; the outbox keeps %d message(s)", self.unacked())
        # loop first, then disconnect from this thread (see MqttDeviceListener._disconnect)
        self.client.loop_stop()
        self.client.disconnect()

    # -- paho's network thread -----------------------------------------------------------------

    def _set_will(self) -> None:
        """The will is made when (re)connecting, so its id and time are those of this connection."""
        will = StatusMessage(ts=self.clock.now(), state="offline", reason="connection lost")
        self.client.will_set(self.topic(Kind.STATUS), encode(will), qos=QOS, retain=True)

    def _on_connect(self, client: mqtt.Client, _u: object, flags: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("uplink: %s refused the connection: %s", where(self.endpoint), reason)
            return
        self.connections += 1
        log.info(
            "uplink: connected to %s (session %s)",
            where(self.endpoint), "resumed" if getattr(flags, "session_present", False) else "new",
        )  # fmt: skip
        self.publish(Kind.BIRTH, encode(self._birth()), retain=True)
        self.publish(Kind.STATUS, encode(StatusMessage(ts=self.clock.now(), state="online")), retain=True)
        client.subscribe(self.topic(Kind.COMMAND), qos=QOS)
        if self._on_config is not None:  # retained: the broker sends the current version at once
            client.subscribe(self.topic(Kind.CONFIG), qos=QOS)
        if self._on_whitelist is not None:  # door access: full whitelists and deltas
            client.subscribe(self.topic(Kind.ACCESS_WHITELIST), qos=QOS)
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _flags: object, reason: object, _p: object) -> None:
        self.connected.clear()
        if self.on_disconnected is not None:
            self.on_disconnected()
        if self._stopping:
            return
        log.warning("uplink: disconnected from %s (%s); reconnecting", where(self.endpoint), reason)
        self._set_will()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, _reason: object, _p: object) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
                if not self._unacked:
                    self._lock.notify_all()
            else:
                self._acked_early.add(mid)
        if self.on_ack is not None:
            self.on_ack(mid)

    def _on_command_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self._on_command(bytes(message.payload))

    def _on_config_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if self._on_config is not None:
            self._on_config(bytes(message.payload))

    def _on_whitelist_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if self._on_whitelist is not None:
            self._on_whitelist(bytes(message.payload))

    def announce(self) -> None:
        """Send the birth again (the devices changed); when not connected, the next connect sends it."""
        if self.connected.is_set():
            self.publish(Kind.BIRTH, encode(self._birth()), retain=True)
