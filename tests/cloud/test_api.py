"""The API: devices with last values, bucketed telemetry, and errors that say what is wrong."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.cloud.stack import Gateway, api_client, count, running_ingest, settings_for, wait_for

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture
def stack(database_url, mqtt_url, unique_id):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    gw = Gateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}")
    with running_ingest(settings) as worker, api_client(settings) as client:
        yield gw, worker, client
    gw.close()


def test_devices_and_telemetry(stack, database_url):
    gw, _worker, client = stack
    gw.birth([("pump-1", "water-pump", "B1")])
    for i in range(60):
        gw.telemetry("pump-1", {"pressure": float(i % 10), "fault_code": 0}, T0 + timedelta(seconds=10 * i))
    wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 120)
    device = wait_for(
        lambda: [d for d in client.get("/api/v1/devices", params={"site": gw.site}).json() if d["last_values"]]
    )[0]
    assert device["name"] == "pump-1" and device["gateway_id"] == gw.gateway and device["site_id"] == gw.site
    assert device["last_values"]["pressure"]["value"] == 9.0
    assert device["last_values"]["pressure"]["unit"] == "bar"
    assert client.get(f"/api/v1/devices/{device['id']}").json()["id"] == device["id"]

    resp = client.get(
        f"/api/v1/devices/{device['id']}/telemetry",
        params={"metric": "pressure", "start": "2026-11-24T08:00:00Z", "end": "2026-11-24T08:10:00Z", "bucket": "5m"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["unit"] == "bar" and body["bucket_seconds"] == 300
    # 30 samples per 5 minutes, values cycling 0..9: min 0, max 9, mean 4.5
    assert [(b["bucket"], b["min"], b["max"], b["mean"], b["count"]) for b in body["buckets"]] == [
        ("2026-11-24T08:00:00Z", 0.0, 9.0, 4.5, 30),
        ("2026-11-24T08:05:00Z", 0.0, 9.0, 4.5, 30),
    ]
    # the site filter and gateway list agree
    assert len(client.get("/api/v1/devices", params={"site": gw.site}).json()) == 1
    assert client.get("/api/v1/devices", params={"site": "elsewhere"}).json() == []
    assert [g["id"] for g in client.get("/api/v1/gateways", params={"site": gw.site}).json()] == [gw.gateway]


@pytest.mark.parametrize(
    ("path", "params", "status", "reason"),
    [
        ("/api/v1/alarms", {"state": "sleeping"}, 422, "state"),
        ("/api/v1/alarms", {"limit": "0"}, 422, "limit"),
        ("/api/v1/tickets", {"channel": "pigeon"}, 422, "channel"),
        ("/api/v1/tickets", {"status": "done"}, 422, "status"),
        ("/api/v1/devices/abc", {}, 422, "device_id"),
        ("/api/v1/devices/1/telemetry", {}, 422, "metric"),
        ("/api/v1/devices/1/telemetry", {"metric": "p", "start": "yesterday"}, 422, "start"),
        ("/api/v1/devices/1/telemetry", {"metric": "p", "start": "2026-11-24T08:00:00"}, 422, "timezone"),
        ("/api/v1/tickets/T-20990101-0001", {}, 404, "does not exist"),
        ("/api/v1/devices/424242", {}, 404, "does not exist"),
        ("/api/v1/alarms/424242", {}, 404, "does not exist"),
        ("/api/v1/nothing-here", {}, 404, "Not Found"),
    ],
)
def test_errors_are_json_with_a_reason(database_url, path, params, status, reason):

    settings = settings_for(database_url)
    with api_client(settings) as client:
        resp = client.get(path, params=params)
    assert resp.status_code == status, resp.text
    assert reason in resp.json()["error"]


def test_telemetry_query_errors(stack, database_url):
    gw, _worker, client = stack
    gw.birth([("pump-1", "water-pump", "B1")])
    device_id = wait_for(lambda: client.get("/api/v1/devices", params={"site": gw.site}).json())[0]["id"]
    url = f"/api/v1/devices/{device_id}/telemetry"
    cases = [
        ({"metric": "pressure", "bucket": "5 minutes"}, 422, "bucket"),
        ({"metric": "pressure", "bucket": "0s"}, 422, "bucket"),
        ({"metric": "pressure", "start": "2026-11-24T09:00:00Z", "end": "2026-11-24T08:00:00Z"}, 422, "before end"),
        (
            {"metric": "pressure", "start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "bucket": "1s"},
            422,
            "buckets",
        ),
        ({"metric": "humidity"}, 404, "has no metric"),
    ]
    for params, status, reason in cases:
        resp = client.get(url, params=params)
        assert resp.status_code == status, (params, resp.text)
        assert reason in resp.json()["error"], resp.json()


def test_health_and_openapi(database_url):

    with api_client(settings_for(database_url)) as client:
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["storage"] == "postgresql-partitioned"
        paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/devices",
        "/api/v1/devices/{device_id}/telemetry",
        "/api/v1/alarms",
        "/api/v1/alarms/{alarm_id}/ack",
        "/api/v1/tickets",
        "/api/v1/tickets/{number}",
    ):
        assert path in paths
