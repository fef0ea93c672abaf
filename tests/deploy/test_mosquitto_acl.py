"""The compose broker's password file and ACL, run for real on a private mosquitto.

The files are prepared exactly as the mosquitto service of docker-compose.yml prepares them: the
repository's plain password file is copied and hashed with `mosquitto_passwd -U`, the ACL is
copied beside it, both are made private to the user mosquitto drops to. The logins are the ones
docker-compose.yml gives the cloud, the edge and the simulator.
"""

import os
import pwd
import queue
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from community.broker import MosquittoProcess
from contract import topics
from contract.urls import MqttEndpoint, parse_mqtt_url
from tests.deploy import support

TIMEOUT = 10.0


class Client:
    """A paho client that records what it receives and what the broker answered."""

    def __init__(self, port: int, username: str | None, password: str | None, client_id: str) -> None:
        self.port = port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack = threading.Event()
        self.connect_failed = False
        self.connect_reason = ""
        self.subacks: dict[int, list[Any]] = {}
        self._suback = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.received.put((msg.topic, msg.payload))
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: mqtt.Client, _u: object, _flags: object, reason: Any, _p: object) -> None:
        self.connect_failed = reason.is_failure
        self.connect_reason = str(reason)
        self.connack.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, reasons: list[Any], _p: object) -> None:
        with self._suback:
            self.subacks[mid] = reasons
            self._suback.notify_all()

    def connect(self, *, will: tuple[str, bytes] | None = None) -> "Client":
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.reconnect_delay_set(30, 30)  # a refused login is reported once, not retried at once
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connack.wait(TIMEOUT), "no CONNACK from the broker"
        return self

    def subscribe(self, *filters: str) -> list[Any]:
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        with self._suback:
            assert self._suback.wait_for(lambda: mid in self.subacks, TIMEOUT), "no SUBACK"
            return self.subacks[mid]

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def messages_until(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including the first message carrying `payload`."""
        seen = []
        while True:
            try:
                item = self.received.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"{payload!r} never arrived; got {seen}") from None
            seen.append(item)
            if item[1] == payload:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _broker_user() -> pwd.struct_passwd | None:
    """Who mosquitto runs as after dropping root (it reads the password file and ACL as that user)."""
    if os.geteuid() != 0:
        return None
    for name in ("mosquitto", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@pytest.fixture(scope="module")
def logins() -> dict[str, MqttEndpoint]:
    services = support.load_compose()["services"]
    return {
        name: parse_mqtt_url(support.environment(services[name])["MQTT_URL"]) for name in ("cloud", "edge", "simulator")
    }


@pytest.fixture(scope="module")
def other_gateway() -> MqttEndpoint:
    """A second gateway, added to the password file for the test: gateway B."""
    return MqttEndpoint("127.0.0.1", 0, username="gw-other", password=uuid.uuid4().hex)


@pytest.fixture(scope="module")
def broker(mosquitto_factory: Any, other_gateway: MqttEndpoint) -> Iterator[MosquittoProcess]:
    """A private mosquitto with the repository's config and the compose password file and ACL."""
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        pytest.fail("mosquitto_passwd is not installed (it comes with mosquitto: apt-get install mosquitto)")
    # Not under pytest's tmp folders: mosquitto, dropped from root, must be able to reach the files.
    root = Path(tempfile.mkdtemp(prefix="community-acl-"))
    try:
        root.chmod(0o755)
        passwd, acl, data = root / "passwd", root / "acl", root / "data"
        data.mkdir()
        shutil.copyfile(support.MOSQUITTO_DIR / "passwd", passwd)
        with passwd.open("a") as f:
            f.write(f"{other_gateway.username}:{other_gateway.password}\n")
        result = subprocess.run([binary, "-U", str(passwd)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"mosquitto_passwd -U failed: {result.stderr}"
        hashed = passwd.read_text()
        assert all(pw not in hashed for pw in support.plain_passwords().values()), "passwords left in clear"
        shutil.copyfile(support.MOSQUITTO_DIR / "acl", acl)
        user = _broker_user()
        for path in (passwd, acl, data):
            if user is not None:
                os.chown(path, user.pw_uid, user.pw_gid)
        passwd.chmod(0o600)
        acl.chmod(0o600)
        proc = mosquitto_factory(
            auth_lines=["allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}"], data_dir=data
        )
        try:
            yield proc
        finally:
            proc.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _connect(broker: MosquittoProcess, endpoint: MqttEndpoint, client_id: str, **kw: Any) -> Client:
    client = Client(broker.port, endpoint.username, endpoint.password, client_id).connect(**kw)
    assert not client.connect_failed, f"{endpoint.username} was refused: {client.connect_reason}"
    return client


def _demo_site() -> dict[str, Any]:
    service = support.load_compose()["services"]["edge"]
    args = support.argv(service)
    host = support.host_path_of(service, args[args.index("--config") + 1])
    assert host is not None
    return yaml.safe_load(host.read_text())


def test_a_gateway_publishes_on_its_own_topics_and_cannot_forge_another(
    broker: MosquittoProcess, logins: dict[str, MqttEndpoint], other_gateway: MqttEndpoint
) -> None:
    site = _demo_site()["site"]["id"]
    gateway_a, gateway_b = logins["edge"].username, other_gateway.username
    assert gateway_a is not None and gateway_b is not None
    cloud = _connect(broker, logins["cloud"], f"cloud-{uuid.uuid4().hex[:6]}")
    # The cloud subscribes to exactly what the ingest subscribes to; every filter is granted.
    granted = cloud.subscribe(*topics.cloud_subscriptions())
    assert not any(code.is_failure for code in granted), f"the cloud's subscriptions were refused: {granted}"
    # The gateway logs in with its last will on its own status topic, as the edge agent does.
    will = (topics.topic(site, gateway_a, topics.Kind.STATUS), b'{"state": "offline"}')
    gw = _connect(broker, logins["edge"], gateway_a, will=will)
    try:
        forged = [topics.topic(site, gateway_b, kind) for kind in topics.UPLINK_KINDS]
        for topic in forged:
            gw.publish(topic, b"forged by A")
        own = topics.topic(site, gateway_a, topics.Kind.TELEMETRY)
        gw.publish(own, b"from A")
        # Messages from one publisher arrive in order: had a forged one passed, it would be here.
        got = cloud.messages_until(b"from A")
        assert (own, b"from A") in got
        assert not [t for t, p in got if p == b"forged by A"], f"the broker let A publish as B: {got}"
        for kind in topics.UPLINK_KINDS:  # and A may send every kind of message on its own topics
            gw.publish(topics.topic(site, gateway_a, kind), f"{kind} from A".encode())
            assert cloud.messages_until(f"{kind} from A".encode())[-1][0] == topics.topic(site, gateway_a, kind)

        # The cloud may command gateways but may not forge their data.
        cloud.publish(topics.topic(site, gateway_a, topics.Kind.TELEMETRY), b"forged by the cloud")
        gw.publish(own, b"again from A")
        assert b"forged by the cloud" not in [p for _, p in cloud.messages_until(b"again from A")]
    finally:
        gw.close()
        cloud.close()


def test_a_gateway_receives_its_own_commands_only(
    broker: MosquittoProcess, logins: dict[str, MqttEndpoint], other_gateway: MqttEndpoint
) -> None:
    site = _demo_site()["site"]["id"]
    gateway_a, gateway_b = logins["edge"].username, other_gateway.username
    assert gateway_a is not None and gateway_b is not None
    gw = _connect(broker, logins["edge"], gateway_a)
    cloud = _connect(broker, logins["cloud"], f"cloud-{uuid.uuid4().hex[:6]}")
    gw_b = _connect(broker, other_gateway, gateway_b)
    try:
        own, foreign = (
            topics.topic(site, gateway_a, topics.Kind.COMMAND),
            topics.topic(site, gateway_b, topics.Kind.COMMAND),
        )
        assert not gw.subscribe(own)[0].is_failure
        gw.subscribe(foreign)  # whatever the broker answers, nothing of B's may reach A
        gw.subscribe("community/v1/+/+/cmd")
        assert not gw_b.subscribe(foreign)[0].is_failure
        cloud.publish(foreign, b"for B")
        cloud.publish(own, b"for A")
        got_a = gw.messages_until(b"for A")
        assert b"for B" not in [p for _, p in got_a], f"A read B's command: {got_a}"
        assert gw_b.messages_until(b"for B")[-1] == (foreign, b"for B")
        # A gateway cannot command another one either.
        gw.publish(foreign, b"A commands B")
        cloud.publish(foreign, b"the cloud commands B")
        assert b"A commands B" not in [p for _, p in gw_b.messages_until(b"the cloud commands B")]
    finally:
        for client in (gw, cloud, gw_b):
            client.close()


def test_the_demo_sensor_reaches_the_demo_gateway(broker: MosquittoProcess, logins: dict[str, MqttEndpoint]) -> None:
    """In compose the simulated leak sensor publishes to this broker and the edge agent listens there."""
    sensors = [d["mqtt"]["topic"] for d in _demo_site()["devices"] if "mqtt" in d]
    assert sensors, "the demo site has no MQTT sensor"
    gw = _connect(broker, logins["edge"], f"{logins['edge'].username}-devices")
    sim = _connect(broker, logins["simulator"], "simulator-test")
    try:
        assert not any(code.is_failure for code in gw.subscribe(*sensors))
        for topic in sensors:
            sim.publish(topic, f"reading on {topic}".encode())
            assert gw.messages_until(f"reading on {topic}".encode())[-1][0] == topic
    finally:
        gw.close()
        sim.close()


@pytest.mark.parametrize(
    "who",
    ["unknown user", "wrong password", "anonymous", "empty password"],
)
def test_the_broker_refuses_who_is_not_in_the_password_file(
    broker: MosquittoProcess, logins: dict[str, MqttEndpoint], who: str
) -> None:
    cloud = logins["cloud"]
    username, password = {
        "unknown user": ("intruder", "intruder"),
        "wrong password": (cloud.username, "not-the-password"),
        "anonymous": (None, None),
        "empty password": (cloud.username, ""),
    }[who]
    client = Client(broker.port, username, password, f"refused-{uuid.uuid4().hex[:6]}").connect()
    try:
        assert client.connect_failed, f"{who}: the broker accepted the login"
    finally:
        client.close()


def test_a_known_login_is_accepted(broker: MosquittoProcess, logins: dict[str, MqttEndpoint]) -> None:
    """The counterpart of the refusals: the hashed password file does let the real users in."""
    for name, endpoint in logins.items():
        _connect(broker, endpoint, f"{name}-{uuid.uuid4().hex[:6]}").close()
