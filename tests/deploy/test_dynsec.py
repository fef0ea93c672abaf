"""Gateway logins managed by the cloud in Mosquitto's dynamic-security plugin, on a real broker.

The broker runs the repository's mosquitto.conf with the plugin instead of the compose password
file; its first dynamic-security.json (an admin client and the cloud's client) is written by
cloud.broker_admin.initial_config, as `python -m cloud.broker_admin init` does for operators.
Gateways get their login from POST /api/v1/gateways and are confined to their own topics.
"""

import json
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.broker_admin import initial_config
from community.broker import MosquittoProcess
from contract import messages, topics
from contract.urls import parse_mqtt_url
from tests.cloud.stack import api_client, count, running_ingest, settings_for, wait_for
from tests.cloud.test_commands_support import DOOR_COMMANDS, FieldGateway
from tests.deploy import support

PLUGINS = [  # the same places scripts/check_prereqs.py looks
    Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/mosquitto_dynamic_security.so"),
    Path("/usr/local/lib/mosquitto_dynamic_security.so"),
]
ADMIN, CLOUD = "cloud-admin", "cloud"


def plugin_path() -> Path:
    found = next((p for p in PLUGINS if p.exists()), None)
    if found is None:
        pytest.fail(f"mosquitto's dynamic-security plugin is not installed (looked at {', '.join(map(str, PLUGINS))})")
    return found


@dataclass
class DynsecBroker:
    proc: MosquittoProcess
    config_file: Path
    admin_password: str
    cloud_password: str

    @property
    def port(self) -> int:
        return self.proc.port

    def url(self, user: str | None = None, password: str | None = None) -> str:
        login = f"{user}:{password}@" if user else ""
        return f"mqtt://{login}127.0.0.1:{self.port}"


@pytest.fixture
def dynsec(tmp_path: Path) -> Iterator[DynsecBroker]:
    admin_password, cloud_password = uuid.uuid4().hex, uuid.uuid4().hex
    config_file = tmp_path / "dynamic-security.json"
    config_file.write_text(
        json.dumps(
            initial_config(
                admin_username=ADMIN,
                admin_password=admin_password,
                cloud_username=CLOUD,
                cloud_password=cloud_password,
            )
        )
    )
    auth = ["allow_anonymous false", f"plugin {plugin_path()}", f"plugin_opt_config_file {config_file}"]
    proc = MosquittoProcess(tmp_path / "broker", auth_lines=auth).start()
    try:
        yield DynsecBroker(proc, config_file, admin_password, cloud_password)
    finally:
        proc.stop()


class Listener:
    """A plain MQTT client that records what arrives (the cloud's view, or a nosy gateway's)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:6]}")
        self.client.username_pw_set(username, password)
        self.got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.on_message = lambda _c, _u, m: self.got.put((m.topic, m.payload))
        self.client.on_subscribe = lambda _c, _u, _m, reasons, _p: self.subacks.put(reasons)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10)

    def subscribe(self, *filters: str) -> list[bool]:
        """Subscribe; returns, per filter, whether the broker granted it."""
        self.client.subscribe([(f, 1) for f in filters])
        return [not r.is_failure for r in self.subacks.get(timeout=10)]

    def until(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including the first message containing `payload`."""
        seen = []
        while True:
            try:
                item = self.got.get(timeout=10)
            except queue.Empty:
                raise AssertionError(f"{payload!r} never arrived; got {seen}") from None
            seen.append(item)
            if payload in item[1]:
                return seen

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _settings(database_url: str, broker: DynsecBroker, unique_id: str, **overrides: Any):
    return settings_for(
        database_url,
        broker.url(CLOUD, broker.cloud_password),
        f"ingest-{unique_id}",
        broker_admin="dynsec",
        broker_admin_username=ADMIN,
        broker_admin_password=overrides.pop("admin_password", broker.admin_password),
        broker_admin_timeout_seconds=5,
        **overrides,
    )


def test_registered_gateways_are_confined_to_their_own_topics(dynsec: DynsecBroker, database_url, unique_id):
    settings = _settings(database_url, dynsec, unique_id)
    site = f"s{unique_id}"
    with running_ingest(settings), api_client(settings) as admin:
        assert admin.post("/api/v1/sites", json={"id": site, "name": "Dynsec estate"}).status_code == 201
        logins = {}
        for gw in ("gw-a", "gw-b"):
            resp = admin.post("/api/v1/gateways", json={"id": gw, "site": site, "name": f"gateway {gw}"})
            assert resp.status_code == 201, resp.text
            body = resp.json()
            assert body["credentials"]["username"] == gw and len(body["credentials"]["password"]) >= 32
            assert body["broker_admin"] == "dynsec" and body["registered_at"] and body["credentials_issued_at"]
            logins[gw] = body["credentials"]["password"]
        # the password is nowhere in the cloud's database or the audit log; the broker has a hash only
        assert (
            count(database_url, "SELECT count(*) FROM audit_log WHERE after::text LIKE %s", (f"%{logins['gw-a']}%",))
            == 0
        )
        assert logins["gw-a"] not in dynsec.config_file.read_text()

        a = FieldGateway(dynsec.url(), site, "gw-a", username="gw-a", password=logins["gw-a"])
        b = FieldGateway(dynsec.url(), site, "gw-b", username="gw-b", password=logins["gw-b"])
        cloud = Listener(dynsec.port, CLOUD, dynsec.cloud_password)
        nosy = Listener(dynsec.port, "gw-a", logins["gw-a"])
        try:
            assert not a.refused and not b.refused
            assert all(cloud.subscribe(*topics.cloud_subscriptions()))
            a.birth({"door-a1": DOOR_COMMANDS})
            b.birth({"door-b1": DOOR_COMMANDS})
            wait_for(lambda: len(admin.get("/api/v1/devices", params={"site": site}).json()) == 2)

            # A publishes its telemetry: it reaches the cloud and the database
            a.send(
                messages.TelemetryBatch(
                    ts=datetime.now(UTC),
                    readings=[messages.Reading(device="door-a1", ts=datetime.now(UTC), values={"pressure": 1.0})],
                )
            )
            wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 1)

            # A cannot publish into B's topics: the cloud receives none of it
            for kind in topics.UPLINK_KINDS:
                info = a.client.publish(topics.topic(site, "gw-b", kind), b"forged by A", qos=1)
                info.wait_for_publish(10)
            info = a.client.publish(topics.topic(site, "gw-a", topics.Kind.EVENT), b"from A", qos=1)
            info.wait_for_publish(10)
            got = cloud.until(b"from A")
            assert not [t for t, p in got if p == b"forged by A"], f"the broker let A publish as B: {got}"
            # ...nor into its own downlink topics, nor outside the tree
            for topic in (a.topic(topics.Kind.COMMAND), a.topic(topics.Kind.CONFIG), "elsewhere/x"):
                a.client.publish(topic, b"A writes where it must not", qos=1).wait_for_publish(10)

            # A can neither subscribe to B's commands and configuration nor to wildcards over them
            denied = nosy.subscribe(
                topics.topic(site, "gw-b", topics.Kind.COMMAND),
                topics.topic(site, "gw-b", topics.Kind.CONFIG),
                "community/v1/+/+/cmd",
                "community/v1/#",
                "#",
            )
            assert denied == [False] * 5, denied
            assert nosy.subscribe(a.topic(topics.Kind.COMMAND)) == [True]

            # the cloud commands B and pushes B a configuration: B gets both, A nothing of it
            door_b = next(
                d["id"] for d in admin.get("/api/v1/devices", params={"site": site}).json() if d["name"] == "door-b1"
            )
            command = admin.post(f"/api/v1/devices/{door_b}/commands", json={"command": "open_door"})
            assert command.status_code == 202, command.text
            cmd, _ = b.next_message(topics.Kind.COMMAND)
            assert str(cmd.id) == command.json()["id"]
            doc = {"devices": [{"name": "door-b1", "profile": "door-controller", "modbus": {"host": "10.0.0.9"}}]}
            assert admin.put("/api/v1/gateways/gw-b/config", json=doc).status_code == 200
            config, _ = b.next_message(topics.Kind.CONFIG)
            assert config.version == 1
            b.ack(cmd.id, "succeeded")
            wait_for(lambda: admin.get(f"/api/v1/commands/{cmd.id}").json()["state"] == "succeeded")
            # a command for A, last: everything for B was sent before it
            door_a = next(
                d["id"] for d in admin.get("/api/v1/devices", params={"site": site}).json() if d["name"] == "door-a1"
            )
            mine = admin.post(f"/api/v1/devices/{door_a}/commands", json={"command": "open_door"}).json()
            assert str(a.next_message(topics.Kind.COMMAND)[0].id) == mine["id"]
            seen = nosy.until(mine["id"].encode())
            assert all(t == a.topic(topics.Kind.COMMAND) for t, _ in seen), seen
            assert [t for t, _, _ in a.nothing_more(0.3)] == []
        finally:
            for client in (a, b, cloud, nosy):
                client.close()


def test_wrong_passwords_are_refused_and_a_new_login_replaces_the_old(dynsec: DynsecBroker, database_url, unique_id):
    settings = _settings(database_url, dynsec, unique_id)
    site = f"s{unique_id}"
    with api_client(settings) as admin:
        admin.post("/api/v1/sites", json={"id": site, "name": "Dynsec estate"})
        first = admin.post("/api/v1/gateways", json={"id": "gw-c", "site": site}).json()["credentials"]["password"]
        for user, password in (("gw-c", "not-the-password"), ("gw-c", ""), ("gw-unknown", first), (None, None)):
            gw = FieldGateway(dynsec.url(), site, "gw-c", username=user, password=password, subscribe=False)
            try:
                assert gw.refused, f"{user}/{password!r} was let in"
            finally:
                gw.close()
        holder = FieldGateway(dynsec.url(), site, "gw-c", username="gw-c", password=first)
        assert not holder.refused
        disconnected = threading.Event()
        holder.client.on_disconnect = lambda *_a: disconnected.set()
        holder.client.reconnect_delay_set(60, 60)

        again = admin.post("/api/v1/gateways", json={"id": "gw-c", "site": site})
        assert again.status_code == 409 and "credentials" in again.json()["error"]
        resp = admin.post("/api/v1/gateways/gw-c/credentials")
        assert resp.status_code == 200, resp.text
        second = resp.json()["credentials"]["password"]
        assert second != first
        assert disconnected.wait(10), "the gateway logged in with the old password stayed connected"
        holder.close()
        old = FieldGateway(dynsec.url(), site, "gw-c", username="gw-c", password=first, subscribe=False)
        new = FieldGateway(dynsec.url(), site, "gw-c", username="gw-c", password=second)
        try:
            assert old.refused and not new.refused
        finally:
            old.close()
            new.close()
        audit = admin.get("/api/v1/audit", params={"entity": "gateway", "entity_id": "gw-c"}).json()
        assert [a["action"] for a in audit] == ["issue_gateway_credentials", "register_gateway"]


def test_a_broker_that_refuses_the_admin_leaves_nothing_registered(dynsec: DynsecBroker, database_url, unique_id):
    settings = _settings(database_url, dynsec, unique_id, admin_password="wrong")
    site = f"s{unique_id}"
    with api_client(settings) as admin:
        admin.post("/api/v1/sites", json={"id": site, "name": "Dynsec estate"})
        resp = admin.post("/api/v1/gateways", json={"id": "gw-d", "site": site})
        assert resp.status_code == 503 and "refused the admin login" in resp.json()["error"]
        assert admin.get("/api/v1/gateways/gw-d").status_code == 404


def test_the_compose_acl_lets_the_cloud_push_configurations_and_gateways_read_their_own() -> None:
    """docker-compose keeps the password file and ACL (COMMUNITY_BROKER_ADMIN=none); it must carry configurations."""
    rules = support.acl_rules()
    cloud = parse_mqtt_url(support.environment(support.load_compose()["services"]["cloud"])["MQTT_URL"]).username
    assert cloud is not None
    assert support.acl_allows(rules, cloud, topics.topic("estate-a", "gw-a", topics.Kind.CONFIG), "write")
    for kind in (topics.Kind.HEALTH, topics.Kind.CONFIG_STATE):
        assert support.acl_allows(rules, cloud, topics.cloud_subscription(kind), "read")
    assert support.acl_allows(rules, "gw-a", topics.topic("estate-a", "gw-a", topics.Kind.CONFIG), "read")
    assert not support.acl_allows(rules, "gw-a", topics.topic("estate-a", "gw-b", topics.Kind.CONFIG), "read")
