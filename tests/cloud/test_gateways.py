"""Gateway registration and the gateway views, with broker logins managed outside the cloud (`none`).

The dynamic-security path, with a real broker, is tests/deploy/test_dynsec.py.
"""

import pytest

from tests.cloud.stack import api_client, running_ingest, settings_for, wait_for
from tests.cloud.test_commands_support import FieldGateway, give_sites


@pytest.fixture
def api(database_url):
    settings = settings_for(database_url)
    with api_client(settings) as admin:
        assert admin.post("/api/v1/sites", json={"id": "estate-a", "name": "Estate A"}).status_code == 201
        assert admin.post("/api/v1/sites", json={"id": "estate-b", "name": "Estate B"}).status_code == 201
        yield settings, admin


def test_registering_a_gateway_without_a_broker_admin(api):
    _settings, admin = api
    resp = admin.post("/api/v1/gateways", json={"id": "gw-1", "site": "estate-a", "name": "Plant room"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["id"], body["site_id"], body["name"], body["status"]) == ("gw-1", "estate-a", "Plant room", "unknown")
    assert body["credentials"] is None and body["broker_admin"] == "none" and body["registered_at"]
    assert body["credentials_issued_at"] is None
    again = admin.post("/api/v1/gateways", json={"id": "gw-1", "site": "estate-a"})
    assert again.status_code == 409 and "already registered" in again.json()["error"]
    resp = admin.post("/api/v1/gateways/gw-1/credentials")
    assert resp.status_code == 409 and "COMMUNITY_BROKER_ADMIN=none" in resp.json()["error"]
    assert admin.post("/api/v1/gateways/nowhere/credentials").status_code == 404
    audit = admin.get("/api/v1/audit", params={"entity": "gateway", "entity_id": "gw-1"}).json()
    assert [a["action"] for a in audit] == ["register_gateway"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"id": "gw-2", "site": "nowhere"}, 422, ["site", "nowhere", "POST /api/v1/sites"]),
        ({"id": "GW 2", "site": "estate-a"}, 422, ["id"]),
        ({"id": "gw-2"}, 422, ["site"]),
        ({"id": "gw-2", "site": "estate-a", "name": "x" * 501}, 422, ["name"]),
    ],
)
def test_registration_errors_name_the_field(api, body, status, words):
    _settings, admin = api
    resp = admin.post("/api/v1/gateways", json=body)
    assert resp.status_code == status, resp.text
    for word in words:
        assert word in resp.json()["error"]


def test_a_gateway_known_from_its_messages_registers_at_its_own_site_only(database_url, mqtt_url, unique_id):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    site, gateway = f"s{unique_id}", f"g{unique_id}"
    gw = FieldGateway(mqtt_url, site, gateway)
    try:
        with running_ingest(settings), api_client(settings) as admin:
            gw.birth({"door-a1": []})
            wait_for(lambda: admin.get(f"/api/v1/gateways/{gateway}").status_code == 200)
            admin.post("/api/v1/sites", json={"id": "other-estate", "name": "Other"})
            moved = admin.post("/api/v1/gateways", json={"id": gateway, "site": "other-estate"})
            assert moved.status_code == 409 and f"known at site {site}" in moved.json()["error"]
            resp = admin.post("/api/v1/gateways", json={"id": gateway, "site": site})
            assert resp.status_code == 201, resp.text
            assert resp.json()["devices"] == 1 and resp.json()["name"] == "stand-in gateway"
    finally:
        gw.close()


def test_who_may_register_and_see_gateways(api, database_url):
    settings, admin = api
    for gw, site in (("gw-a", "estate-a"), ("gw-b", "estate-b")):
        assert admin.post("/api/v1/gateways", json={"id": gw, "site": site}).status_code == 201
    with api_client(settings, role="manager") as manager:
        give_sites(database_url, "cloud-test-manager", ["estate-a"])
        assert manager.post("/api/v1/gateways", json={"id": "gw-c", "site": "estate-a"}).status_code == 403
        assert [g["id"] for g in manager.get("/api/v1/gateways").json()] == ["gw-a"]
        assert manager.get("/api/v1/gateways/gw-a").status_code == 200
        assert manager.get("/api/v1/gateways/gw-b").status_code == 404
    with api_client(settings, role="resident") as resident:
        assert resident.get("/api/v1/gateways").status_code == 403
    assert [g["id"] for g in admin.get("/api/v1/gateways").json()] == ["gw-a", "gw-b"]
