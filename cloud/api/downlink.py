"""The API process's MQTT publisher: sends gateways their commands, configurations and whitelists.

The database is the queue. A request stores a command (or a configuration version) and wakes
this thread; the thread publishes what the broker has not yet acknowledged (QoS 1;
configurations retained) and notes the acknowledgement on the row. While the broker is away,
commands stay `pending` and go out when it returns, unless they expire first; the thread
retries every `downlink_retry_seconds`. Requests never wait for the broker.

Door-access whitelists work the same way: a change marks gateways `dirty` in the database (from
any process: the ingest does when a gateway asks for its full whitelist or a pass is used); on
each pass this thread rebuilds the dirty ones (cloud/domain/whitelist.py) and publishes the
queued whitelist messages in order, QoS 1, not retained.

Delivery is at least once: a publish whose acknowledgement was lost is sent again, with the
same message id (the command's id), which is how the gateway knows a repeat.
"""

import logging
import threading
import uuid

import paho.mqtt.client as mqtt
from psycopg_pool import ConnectionPool

from cloud.domain import commands, remote_config, whitelist
from cloud.mqtt_link import make_client
from cloud.security.biometric import FaceCipher
from cloud.settings import CloudSettings
from contract import messages, topics
from contract.clock import Clock
from contract.urls import parse_mqtt_url

log = logging.getLogger(__name__)


class Downlink(threading.Thread):
    def __init__(
        self, pool: ConnectionPool, settings: CloudSettings, clock: Clock, face_cipher: FaceCipher | None = None
    ) -> None:
        super().__init__(name="downlink", daemon=True)
        self.pool = pool
        self.face_cipher = face_cipher
        self.clock = clock
        self.retry_seconds = settings.downlink_retry_seconds
        self.publish_timeout = max(5.0, settings.downlink_retry_seconds)
        self.endpoint = parse_mqtt_url(settings.mqtt_url)
        self.client = make_client(
            self.endpoint,
            client_id=f"{settings.mqtt_client_id}-api-{uuid.uuid4().hex[:8]}",
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            ca_file=settings.mqtt_ca_file,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(settings.downlink_retry_seconds * 4)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        #: messages the broker acknowledged, since start (for tests and logs)
        self.published = 0
        self._network = False

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connection to %s:%s refused: %s", self.endpoint.host, self.endpoint.port, reason)
            return
        log.info("API publisher connected to MQTT %s:%s", self.endpoint.host, self.endpoint.port)
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if self.connected.is_set():
            log.warning("API publisher lost its MQTT connection (%s); reconnecting", reason)
        self.connected.clear()

    def _first_connection(self) -> bool:
        """Connect once from this thread; from then on paho's network thread reconnects by itself.

        Until the broker has answered once there is no network thread, so an API that never
        reaches its broker (or stops before it does) stops at once.
        """
        try:
            self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        except OSError as exc:
            log.debug("API publisher cannot reach MQTT %s:%s yet: %s", self.endpoint.host, self.endpoint.port, exc)
            return False
        self.client.loop_start()
        self._network = True
        return True

    def wake(self) -> None:
        """Something new to send: look now rather than at the next retry."""
        self._wake.set()

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()
        self.join(15)
        if self._network:
            self.connected.clear()
            self.client.disconnect()
            self.client.loop_stop()

    def run(self) -> None:
        while not self._stop_event.is_set() and not self._first_connection():
            self._stop_event.wait(self.retry_seconds)
        while not self._stop_event.is_set():
            self._wake.wait(self.retry_seconds)
            self._wake.clear()
            if self._stop_event.is_set() or not self.connected.is_set():
                continue
            try:
                self.flush()
            except Exception:
                log.exception("publishing commands and configurations failed; trying again shortly")

    def _publish(self, topic: str, message: messages.Envelope, *, retain: bool) -> bool:
        info = self.client.publish(topic, messages.encode(message), qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(self.publish_timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def rebuild_whitelists(self) -> int:
        """Rebuild the whitelists of gateways marked dirty; returns the messages queued."""
        if self.face_cipher is None:
            return 0
        with self.pool.connection() as conn:
            return whitelist.rebuild_dirty(conn, self.clock.now(), self.face_cipher)

    def flush(self) -> int:
        """Publish every command, configuration and whitelist not yet acknowledged; returns how many it took."""
        sent = 0
        now = self.clock.now()
        self.rebuild_whitelists()
        with self.pool.connection() as conn:
            pending = commands.unpublished(conn, now)
            configs = remote_config.unpublished(conn)
            lists = whitelist.unpublished(conn) if self.face_cipher is not None else []
        for row in configs:
            topic = topics.topic(row["site_id"], row["gateway_id"], topics.Kind.CONFIG)
            if not self._publish(topic, remote_config.message_of(row), retain=True):
                return sent
            with self.pool.connection() as conn:
                remote_config.mark_published(conn, row["gateway_id"], row["version"], self.clock.now())
            sent += 1
            self.published += 1
        for row in pending:
            topic = topics.topic(row["site_id"], row["gateway_id"], topics.Kind.COMMAND)
            if not self._publish(topic, commands.message_of(row), retain=False):
                return sent
            with self.pool.connection() as conn:
                commands.mark_published(conn, row["id"], self.clock.now())
            sent += 1
            self.published += 1
        for row in lists:
            assert self.face_cipher is not None
            topic = topics.topic(row["site_id"], row["gateway_id"], topics.Kind.ACCESS_WHITELIST)
            if not self._publish(topic, whitelist.message_of(row, self.face_cipher), retain=False):
                return sent
            with self.pool.connection() as conn:
                whitelist.mark_published(conn, row["id"], self.clock.now())
            sent += 1
            self.published += 1
        if sent:
            log.info("published %d commands, configurations and whitelists", sent)
        return sent
