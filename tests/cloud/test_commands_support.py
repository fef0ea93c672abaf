"""A stand-in gateway for the command, configuration and gateway tests (no tests here).

It speaks the contract as an edge agent does: announces devices with their commands, listens on
its own `cmd` and `config` topics, and answers with CommandAck, ConfigState and HealthMessage.
"""

import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import messages, topics
from contract.common import Location, SiteInfo
from contract.urls import parse_mqtt_url
from tests.cloud.stack import connect

TIMEOUT = 10.0

DOOR_COMMANDS = [
    messages.CommandInfo(name="open_door", description="pulse the door relay", roles=["admin", "guard"]),
    messages.CommandInfo(
        name="set_pressure",
        params=[messages.CommandParamInfo(name="pressure", type="number", min=1.0, max=6.0, unit="bar")],
        roles=["technician"],
    ),
    messages.CommandInfo(
        name="set_speed", params=[messages.CommandParamInfo(name="rpm", type="integer", min=0, max=3000)]
    ),
    messages.CommandInfo(name="enable", params=[messages.CommandParamInfo(name="on", type="bool")]),
]


class FieldGateway:
    """One gateway's MQTT session: what it receives on its downlink topics is queued in `received`."""

    def __init__(
        self,
        mqtt_url: str,
        site: str,
        gateway: str,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        clean_session: bool = True,
        subscribe: bool = True,
        tls_ca: str | None = None,
    ) -> None:
        self.site, self.gateway = site, gateway
        endpoint = parse_mqtt_url(mqtt_url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{gateway}-{uuid.uuid4().hex[:6]}",
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if endpoint.tls:
            self.client.tls_set(ca_certs=tls_ca)
        self.received: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.connect_reason: Any = None
        self._connack = threading.Event()
        self._subscribed = threading.Event()
        self._subscribe = subscribe
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.received.put((msg.topic, msg.payload, bool(msg.retain)))
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(endpoint.host, endpoint.port, keepalive=30)
        self.client.loop_start()
        assert self._connack.wait(TIMEOUT), "no CONNACK"
        if subscribe and not self.refused:
            assert self._subscribed.wait(TIMEOUT), "no SUBACK"

    @property
    def refused(self) -> bool:
        return bool(getattr(self.connect_reason, "is_failure", False))

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        self.connect_reason = reason
        self._connack.set()
        if self._subscribe and not getattr(reason, "is_failure", False):
            client.subscribe([(self.topic(topics.Kind.COMMAND), 1), (self.topic(topics.Kind.CONFIG), 1)])

    def topic(self, kind: topics.Kind) -> str:
        return topics.topic(self.site, self.gateway, kind)

    def send(self, message: messages.Envelope, *, retain: bool = False) -> None:
        kind = next(k for k, model in messages.MODEL_FOR_KIND.items() if isinstance(message, model))
        info = self.client.publish(self.topic(kind), messages.encode(message), qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)

    def birth(self, devices: dict[str, list[messages.CommandInfo]], config_version: int | None = None) -> None:
        self.send(birth_message(self.site, self.gateway, devices, config_version), retain=True)

    def ack(self, command_id: uuid.UUID, status: str, reason: str | None = None, **result: Any) -> None:
        self.send(
            messages.CommandAck(
                ts=datetime.now(UTC),
                command_id=command_id,
                status=status,  # type: ignore[arg-type]
                reason=reason,
                result=result,
            )
        )

    def next_message(self, kind: topics.Kind, timeout: float = TIMEOUT) -> tuple[messages.Envelope, bool]:
        """The next message received on the given downlink topic (others are skipped), and its retain flag."""
        while True:
            try:
                topic, payload, retained = self.received.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"nothing arrived on {self.topic(kind)} within {timeout}s") from None
            if topic == self.topic(kind):
                return messages.decode(kind, payload), retained

    def nothing_more(self, timeout: float = 0.5) -> list[tuple[str, bytes, bool]]:
        got = []
        try:
            while True:
                got.append(self.received.get(timeout=timeout))
        except queue.Empty:
            return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def birth_message(
    site: str, gateway: str, devices: dict[str, list[messages.CommandInfo]], config_version: int | None = None
) -> messages.BirthMessage:
    return messages.BirthMessage(
        ts=datetime.now(UTC),
        site=SiteInfo(id=site, name=f"Site {site}"),
        gateway=messages.GatewayInfo(id=gateway, name="stand-in gateway", version="test"),
        devices=[
            messages.DeviceInfo(
                name=name,
                profile="door-controller",
                protocol="modbus",
                location=Location(building="A"),
                metrics=[messages.MetricInfo(name="pressure", unit="bar")],
                commands=commands,
            )
            for name, commands in devices.items()
        ],
        config_version=config_version,
    )


def give_sites(database_url: str, username: str, sites: list[str]) -> None:
    """Make the user a member of staff at these sites (the API's test users start with none)."""
    with connect(database_url) as conn:
        person = conn.execute("SELECT person_id FROM users WHERE username = %s", (username,)).fetchone()
        assert person is not None, username
        conn.execute("INSERT INTO staff (person_id) VALUES (%s) ON CONFLICT DO NOTHING", (person["person_id"],))
        for site in sites:
            conn.execute(
                "INSERT INTO staff_sites (person_id, site_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (person["person_id"], site),
            )
        conn.commit()


def device_id(client: Any, site: str, name: str) -> int:
    devices = client.get("/api/v1/devices", params={"site": site}).json()
    return next(d["id"] for d in devices if d["name"] == name)


def until(predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    from tests.cloud.stack import wait_for

    return wait_for(predicate, timeout=timeout)
