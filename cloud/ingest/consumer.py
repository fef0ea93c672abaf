"""The ingest's MQTT connection: a persistent session, manual acknowledgements.

Messages are acknowledged to the broker only after the writers have committed them. A message
received on an earlier connection is never acknowledged on a later one (its packet id may
mean something else there); the broker redelivers it, and the seen-id table drops the copy.
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from cloud.ingest.inbound import Inbound
from cloud.mqtt_link import make_client
from contract import topics
from contract.urls import parse_mqtt_url

log = logging.getLogger(__name__)


class Consumer:
    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        deliver: Callable[[Inbound], None],
        kinds: tuple[topics.Kind, ...] = topics.UPLINK_KINDS,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.endpoint = parse_mqtt_url(url)
        self._deliver = deliver
        self.kinds = kinds
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        #: set once the broker has confirmed every subscription of the current connection
        self.subscribed = threading.Event()
        self._stopping = False
        client = make_client(
            self.endpoint,
            client_id=client_id,
            username=username,
            password=password,
            ca_file=ca_file,
            clean_session=False,
            manual_ack=True,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def start(self) -> None:
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connection to %s:%s refused: %s", self.endpoint.host, self.endpoint.port, reason)
            return
        with self._lock:
            self._generation += 1
        self.subscribed.clear()
        # the session is persistent: drop what an earlier release may have subscribed for this id
        others = [topics.cloud_subscription(k) for k in topics.UPLINK_KINDS if k not in self.kinds]
        if others:
            client.unsubscribe(others)
        client.subscribe([(topics.cloud_subscription(k), 1) for k in self.kinds])
        self.connected.set()
        log.info("ingest connected to MQTT %s:%s", self.endpoint.host, self.endpoint.port)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int, reasons: list, _props: object) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.error("the broker refused ingest subscriptions: %s", failed)
            return
        self.subscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if self._stopping:
            log.info("ingest disconnected from MQTT")
        else:
            log.warning("ingest lost its MQTT connection (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        item = Inbound(
            topic=msg.topic,
            payload=msg.payload,
            mid=msg.mid,
            qos=msg.qos,
            generation=self._generation,
            parsed=topics.parse(msg.topic),
            acker=self.ack,
        )
        self._deliver(item)

    def ack(self, item: Inbound) -> None:
        if item.qos == 0:
            return
        if item.generation != self._generation:
            return  # delivered on an older connection: the broker sends it again
        self.client.ack(item.mid, item.qos)
