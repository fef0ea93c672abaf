"""Remote configuration: versions stored and checked by the API, pushed retained, answered by the gateway."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract import messages, topics
from contract.gateway_config import apply_remote_config, load_gateway_config
from contract.ids import uuid7
from tests.cloud.stack import api_client, running_ingest, settings_for, wait_for
from tests.cloud.test_commands_support import DOOR_COMMANDS, FieldGateway

REPO = Path(__file__).resolve().parents[2]

#: a profile pushed with the configuration (not in the gateway's profile directory)
BOOSTER = {
    "name": "Booster pump v2",
    "protocol": "modbus",
    "metrics": [{"name": "outlet_pressure", "table": "input_register", "address": 0, "type": "uint16", "scale": 0.01}],
    "commands": [
        {
            "name": "set_pressure",
            "action": "write_register",
            "address": 20,
            "param": {"name": "pressure", "min": 1, "max": 6, "unit": "bar"},
            "scale": 0.01,
            "roles": ["technician"],
        }
    ],
}


def config(*devices: dict, profiles: dict | None = None) -> dict:
    return {"telemetry": {"max_points": 20}, "devices": list(devices), "profiles": profiles or {}}


DOOR = {"name": "door-a1", "profile": "door-controller", "modbus": {"host": "10.0.0.5", "unit": 3}}
PUMP = {"name": "pump-9", "profile": "booster-v2", "modbus": {"serial": "/dev/ttyUSB0", "unit": 1}}


@pytest.fixture
def site(database_url, mqtt_url, unique_id):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    gw = FieldGateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}")
    with running_ingest(settings), api_client(settings) as admin:
        gw.birth({"door-a1": DOOR_COMMANDS})  # a door-controller: the gateway has that profile
        wait_for(lambda: admin.get(f"/api/v1/gateways/{gw.gateway}").status_code == 200)
        wait_for(lambda: admin.get("/api/v1/devices", params={"site": gw.site}).json())
        yield settings, gw, admin
    gw.close()


def test_a_configuration_is_pushed_retained_and_the_gateway_reports_it_applied(site, mqtt_url):
    _settings, gw, admin = site
    resp = admin.put(f"/api/v1/gateways/{gw.gateway}/config", json=config(DOOR, PUMP, profiles={"booster-v2": BOOSTER}))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["desired"]["version"] == 1 and body["desired"]["created_by"] == "cloud-test-admin"
    assert body["running_version"] is None and body["reported"]["status"] is None

    msg, retained = gw.next_message(topics.Kind.CONFIG)
    assert isinstance(msg, messages.ConfigMessage) and msg.version == 1 and retained is False  # live delivery
    # what arrives is what the edge applies: the demo gateway's own file plus this document
    local = load_gateway_config(REPO / "examples" / "demo-site.yaml")
    applied = apply_remote_config(local, msg.config, version=msg.version)
    assert [d.name for d in applied.config.devices] == ["door-a1", "pump-9"]
    assert applied.config.telemetry.max_points == 20 and "booster-v2" in applied.profiles

    # a gateway connecting later finds it retained
    late = FieldGateway(mqtt_url, site=gw.site, gateway=gw.gateway)
    try:
        again, retained = late.next_message(topics.Kind.CONFIG)
        assert retained and again.id == msg.id and again.version == 1
    finally:
        late.close()
    wait_for(lambda: admin.get(f"/api/v1/gateways/{gw.gateway}/config").json()["desired"]["published_at"])

    gw.send(messages.ConfigState(ts=datetime.now(UTC), version=1, status="applied", running_version=1))
    got = wait_for(lambda: (c := admin.get(f"/api/v1/gateways/{gw.gateway}/config").json())["reported"]["status"] and c)
    assert got["running_version"] == 1 and got["reported"]["version"] == 1 and got["reported"]["status"] == "applied"
    listed = admin.get("/api/v1/gateways", params={"site": gw.site}).json()[0]
    assert (listed["config_desired_version"], listed["config_running_version"]) == (1, 1)


def test_a_refused_configuration_shows_the_reason_and_the_version_kept(site):
    _settings, gw, admin = site
    for _ in range(2):
        assert admin.put(f"/api/v1/gateways/{gw.gateway}/config", json=config(DOOR)).status_code == 200
    first, _ = gw.next_message(topics.Kind.CONFIG)
    second, _ = gw.next_message(topics.Kind.CONFIG)
    assert (first.version, second.version) == (1, 2)
    now = datetime.now(UTC)
    gw.send(messages.ConfigState(ts=now, version=1, status="applied", running_version=1))
    gw.send(
        messages.ConfigState(
            ts=now + timedelta(seconds=1),
            version=2,
            status="refused",
            running_version=1,
            reason="devices[0].modbus: cannot open /dev/ttyUSB0",
        )
    )
    got = wait_for(
        lambda: (
            (c := admin.get(f"/api/v1/gateways/{gw.gateway}/config").json())["reported"]["status"] == "refused" and c
        )
    )
    assert got["desired"]["version"] == 2 and got["running_version"] == 1
    assert got["reported"] == {**got["reported"], "version": 2, "reason": "devices[0].modbus: cannot open /dev/ttyUSB0"}
    gateway = admin.get(f"/api/v1/gateways/{gw.gateway}").json()
    assert (gateway["config_desired_version"], gateway["config_running_version"]) == (2, 1)
    assert gateway["config_reported_status"] == "refused"


def test_births_and_health_report_the_running_version_and_health_is_kept(site):
    _settings, gw, admin = site
    gw.birth({"door-a1": DOOR_COMMANDS}, config_version=4)
    wait_for(lambda: admin.get(f"/api/v1/gateways/{gw.gateway}").json()["config_running_version"] == 4)
    health = messages.HealthMessage(
        ts=datetime.now(UTC),
        uptime_s=120.5,
        config_version=5,
        outbox=messages.OutboxHealth(depth=3, oldest_age_s=1.5, dropped_messages=2),
        devices=[messages.DeviceHealth(device="door-a1", online=True, polls_ok=10, success_rate=1.0)],
    )
    gw.send(health)
    detail = wait_for(lambda: (g := admin.get(f"/api/v1/gateways/{gw.gateway}").json())["health"] and g)
    assert detail["health"]["uptime_s"] == 120.5 and detail["health"]["outbox"]["depth"] == 3
    assert detail["health"]["outbox"]["dropped_messages"] == 2
    assert detail["health"]["devices"][0]["device"] == "door-a1" and detail["config_running_version"] == 5
    assert detail["health_at"] is not None
    listed = admin.get("/api/v1/gateways", params={"site": gw.site}).json()[0]
    assert listed["health"]["uptime_s"] == 120.5 and "devices" not in listed["health"]
    # an older report arriving late changes nothing
    gw.send(health.model_copy(update={"id": uuid7(), "ts": health.ts - timedelta(minutes=5), "uptime_s": 1}))
    gw.send(health.model_copy(update={"id": uuid7(), "ts": health.ts + timedelta(seconds=1), "uptime_s": 200}))
    wait_for(lambda: admin.get(f"/api/v1/gateways/{gw.gateway}").json()["health"]["uptime_s"] == 200)


@pytest.mark.parametrize(
    ("document", "names"),
    [
        (config({**DOOR, "profile": "unheard-of"}), ["devices[0].profile", "unheard-of", "door-controller"]),
        (config({**DOOR, "modbus": {"host": "10.0.0.5", "unit": 300}}), ["devices[0].modbus.unit"]),
        (config(DOOR, DOOR), ["devices[1].name", "used twice"]),
        (
            config(PUMP, profiles={"booster-v2": {**BOOSTER, "poll_interval": -1}}),
            ["profiles.booster-v2", "poll_interval"],
        ),
        (config(PUMP, profiles={"Bad Id": BOOSTER}), ["profiles"]),
        (config({"name": "leak-1", "profile": "door-controller", "mqtt": {"topic": "x/y"}}), ["devices[0].modbus"]),
        ({"devices": [], "colour": "blue"}, ["colour"]),
    ],
)
def test_a_configuration_the_gateway_would_refuse_is_refused_here_naming_the_field(site, document, names):
    _settings, gw, admin = site
    resp = admin.put(f"/api/v1/gateways/{gw.gateway}/config", json=document)
    assert resp.status_code == 422, resp.text
    for name in names:
        assert name in resp.json()["error"], resp.json()
    assert admin.get(f"/api/v1/gateways/{gw.gateway}/config").json()["desired"] is None
    assert gw.nothing_more(0.3) == []


def test_only_an_admin_reads_or_writes_configurations(site, database_url):
    settings, gw, admin = site
    assert admin.put("/api/v1/gateways/nowhere/config", json=config()).status_code == 404
    with api_client(settings, role="manager") as manager:
        assert manager.put(f"/api/v1/gateways/{gw.gateway}/config", json=config(DOOR)).status_code == 403
        assert manager.get(f"/api/v1/gateways/{gw.gateway}/config").status_code == 403
