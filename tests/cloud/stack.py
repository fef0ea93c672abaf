"""The cloud as tests run it: a real ingest worker on a real broker and database, and the API."""

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.ingest.worker import IngestWorker
from cloud.security.passwords import hash_password
from cloud.settings import CloudSettings
from cloud.storage.db import connect
from contract import messages, topics
from contract.clock import Clock
from contract.common import Location, SiteInfo
from contract.urls import parse_mqtt_url


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until the predicate returns something truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


#: keys for the tests, so that no run writes a secrets file into the working tree
TEST_KEYS = {"jwt_secret": "cloud-tests-" + "k" * 40, "data_key": base64.b64encode(bytes(range(32))).decode()}


def settings_for(
    database_url: str, mqtt_url: str = "mqtt://127.0.0.1:1", client_id: str = "unused", **overrides: Any
) -> CloudSettings:
    return CloudSettings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        mqtt_client_id=client_id,
        last_values_flush_seconds=0.2,
        watchdog_interval_seconds=0.2,
        scheduler_enabled=False,
        **{**TEST_KEYS, **overrides},
    )


@contextmanager
def running_ingest(
    settings: CloudSettings, clock: Clock | None = None, *, connect_timeout: float = 10
) -> Iterator[IngestWorker]:
    worker = IngestWorker(settings, clock=clock, apply_migrations=False).start()
    try:
        wait_for(lambda: worker.subscribed, timeout=connect_timeout)  # fails: the ingest did not connect and subscribe
        yield worker
    finally:
        worker.stop()


@contextmanager
def api_client(settings: CloudSettings, clock: Clock | None = None, *, role: str = "admin") -> Iterator[TestClient]:
    """The API, logged in as a user of the given role (made on the spot, with every site in reach)."""
    username = f"cloud-test-{role}"
    with connect(settings.require_database_url()) as conn:
        if conn.execute("SELECT 1 FROM users WHERE username = %s", (username,)).fetchone() is None:
            person = conn.execute(
                "INSERT INTO people (kind, full_name) VALUES ('staff', %s) RETURNING id", (username,)
            ).fetchone()
            conn.execute(
                "INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, %s, %s)",
                (username, hash_password("cloud-test-pass"), role, person["id"]),
            )
            conn.commit()
    with TestClient(create_app(settings, clock=clock, apply_migrations=False)) as client:
        token = client.post("/api/v1/auth/token", data={"username": username, "password": "cloud-test-pass"})
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


class Gateway:
    """A stand-in gateway for cloud tests: publishes contract messages as an edge agent would."""

    def __init__(self, mqtt_url: str, site: str, gateway: str, timezone: str = "UTC") -> None:
        self.site, self.gateway, self.timezone = site, gateway, timezone
        endpoint = parse_mqtt_url(mqtt_url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{gateway}-test-{uuid.uuid4().hex[:6]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self._connected = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()
        assert self._connected.wait(10), "test gateway could not connect"

    def topic(self, kind: topics.Kind) -> str:
        return topics.topic(self.site, self.gateway, kind)

    def publish_raw(self, kind: topics.Kind, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(self.topic(kind), payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def send(self, message: messages.Envelope, *, retain: bool = False) -> None:
        kind = next(k for k, model in messages.MODEL_FOR_KIND.items() if isinstance(message, model))
        self.publish_raw(kind, messages.encode(message), retain=retain)

    def birth(self, devices: list[tuple[str, str, str | None]]) -> messages.BirthMessage:
        """devices: (name, profile, building)"""
        msg = messages.BirthMessage(
            ts=datetime.now(UTC),
            site=SiteInfo(id=self.site, name=f"Site {self.site}", timezone=self.timezone),
            gateway=messages.GatewayInfo(id=self.gateway, name="test gateway", version="test"),
            devices=[
                messages.DeviceInfo(
                    name=name,
                    profile=profile,
                    protocol="modbus",
                    location=Location(building=building, floor="1"),
                    metrics=[messages.MetricInfo(name="pressure", unit="bar"), messages.MetricInfo(name="fault_code")],
                )
                for name, profile, building in devices
            ],
        )
        self.send(msg)
        return msg

    def telemetry(self, device: str, values: dict[str, Any], ts: datetime | None = None) -> messages.TelemetryBatch:
        msg = messages.TelemetryBatch(
            ts=datetime.now(UTC),
            readings=[messages.Reading(device=device, ts=ts or datetime.now(UTC), values=values)],
        )
        self.send(msg)
        return msg

    def alarm(self, device: str, rule: str, action: str, **kw: Any) -> messages.AlarmMessage:
        msg = messages.AlarmMessage(
            ts=kw.pop("ts", datetime.now(UTC)),
            device=device,
            rule=rule,
            action=action,  # type: ignore[arg-type]
            severity=kw.pop("severity", "critical"),
            ticket=kw.pop("ticket", "repair"),
            **kw,
        )
        self.send(msg)
        return msg

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def count(database_url: str, query: str, params: tuple = ()) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0
