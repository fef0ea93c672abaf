"""Device commands through the real API, broker, ingest and database, with a stand-in gateway."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from cloud.domain import commands as command_domain
from cloud.domain import registry
from community.broker import MosquittoProcess
from contract import messages, topics
from tests.cloud.stack import api_client, connect, count, running_ingest, settings_for, wait_for
from tests.cloud.test_commands_support import DOOR_COMMANDS, FieldGateway, birth_message, device_id, give_sites


@pytest.fixture
def site(database_url, mqtt_url, unique_id):
    """The ingest and an admin's API on one broker; a stand-in gateway announcing door-a1 with its commands."""
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    gw = FieldGateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}")
    with running_ingest(settings), api_client(settings) as admin:
        gw.birth({"door-a1": DOOR_COMMANDS, "meter-1": []})
        wait_for(lambda: len(admin.get("/api/v1/devices", params={"site": gw.site}).json()) == 2)
        yield settings, gw, admin
    gw.close()


def test_a_command_reaches_the_gateway_and_its_ack_settles_it(site, database_url):
    settings, gw, admin = site
    door = device_id(admin, gw.site, "door-a1")
    announced = admin.get(f"/api/v1/devices/{door}").json()["commands"]
    assert [c["name"] for c in announced] == ["open_door", "set_pressure", "set_speed", "enable"]
    assert announced[1]["params"] == [{"name": "pressure", "type": "number", "min": 1.0, "max": 6.0, "unit": "bar"}]
    resp = admin.post(f"/api/v1/devices/{door}/commands", json={"command": "set_pressure", "params": {"pressure": 3.5}})
    assert resp.status_code == 202, resp.text
    command = resp.json()
    assert command["state"] == "pending" and command["device"] == "door-a1" and command["gateway_id"] == gw.gateway
    assert command["params"] == {"pressure": 3.5} and command["requested_by"] == "cloud-test-admin"
    created, expires = (datetime.fromisoformat(command[k]) for k in ("created_at", "expires_at"))
    assert expires - created == timedelta(seconds=settings.command_ttl_seconds)

    msg, retained = gw.next_message(topics.Kind.COMMAND)
    assert isinstance(msg, messages.CommandMessage) and not retained
    assert (str(msg.id), msg.device, msg.command, msg.params) == (
        command["id"],
        "door-a1",
        "set_pressure",
        {"pressure": 3.5},
    )
    assert msg.expires_at == expires
    wait_for(lambda: admin.get(f"/api/v1/commands/{command['id']}").json()["published_at"])

    gw.ack(msg.id, "succeeded", pressure=3.5)
    done = wait_for(lambda: (c := admin.get(f"/api/v1/commands/{command['id']}").json())["state"] != "pending" and c)
    assert done["state"] == "succeeded" and done["result"] == {"pressure": 3.5}
    assert done["finished_at"] and done["acked_at"]

    # the same answer again (a resend with a new id), then a contradicting one: the first answer stands
    gw.ack(msg.id, "succeeded", pressure=3.5)
    gw.ack(msg.id, "failed", reason="late and wrong")
    wait_for(lambda: count(database_url, "SELECT count(*) FROM events WHERE kind = 'command_ack'") == 3)
    assert admin.get(f"/api/v1/commands/{command['id']}").json()["state"] == "succeeded"
    assert [c["id"] for c in admin.get(f"/api/v1/devices/{door}/commands").json()] == [command["id"]]
    audit = admin.get("/api/v1/audit", params={"entity": "command", "entity_id": command["id"]}).json()
    assert {a["action"] for a in audit} == {"send_command", "command_succeeded"}


def test_a_failed_or_rejected_command_keeps_the_gateways_reason(site):
    _settings, gw, admin = site
    door = device_id(admin, gw.site, "door-a1")
    ids = []
    for status in ("failed", "rejected"):
        ids.append(admin.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"}).json()["id"])
        msg, _ = gw.next_message(topics.Kind.COMMAND)
        gw.ack(msg.id, status, reason=f"device unreachable ({status})")
    for status, command_id in zip(("failed", "rejected"), ids, strict=True):
        got = wait_for(
            lambda i=command_id: (c := admin.get(f"/api/v1/commands/{i}").json())["state"] != "pending" and c
        )
        assert (got["state"], got["reason"]) == (status, f"device unreachable ({status})")


def test_an_ack_for_an_unknown_command_or_from_another_gateway_is_recorded_and_changes_nothing(
    site, database_url, mqtt_url
):
    _settings, gw, admin = site
    door = device_id(admin, gw.site, "door-a1")
    command = admin.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"}).json()
    intruder = FieldGateway(mqtt_url, site=gw.site, gateway=f"{gw.gateway}x", subscribe=False)
    try:
        intruder.ack(UUID(command["id"]), "succeeded")
        gw.ack(UUID("01900000-0000-7000-8000-000000000000"), "succeeded")
        wait_for(lambda: count(database_url, "SELECT count(*) FROM events WHERE kind = 'command_ack'") == 2)
    finally:
        intruder.close()
    assert admin.get(f"/api/v1/commands/{command['id']}").json()["state"] == "pending"
    with connect(database_url) as conn:
        rows = conn.execute("SELECT data->>'outcome' AS o FROM events WHERE kind = 'command_ack'").fetchall()
    outcomes = {r["o"] for r in rows}
    assert outcomes == {"unknown command", f"command belongs to gateway {gw.gateway}"}
    assert count(database_url, "SELECT count(*) FROM dead_letters") == 0


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"command": "launch_rocket"}, 422, ["launch_rocket", "open_door, set_pressure"]),
        ({"command": "set_pressure"}, 422, ["params.pressure", "missing", "1..6 bar"]),
        ({"command": "set_pressure", "params": {"pressure": 7}}, 422, ["params.pressure", "maximum 6"]),
        ({"command": "set_pressure", "params": {"pressure": 0.5}}, 422, ["params.pressure", "minimum 1"]),
        ({"command": "set_pressure", "params": {"pressure": "high"}}, 422, ["params.pressure", "a number"]),
        ({"command": "set_pressure", "params": {"pressure": True}}, 422, ["params.pressure", "a number"]),
        ({"command": "set_pressure", "params": {"pressure": 2, "force": 1}}, 422, ["params.force"]),
        ({"command": "set_speed", "params": {"rpm": 1.5}}, 422, ["params.rpm", "whole number"]),
        ({"command": "enable", "params": {"on": 1}}, 422, ["params.on", "true or false"]),
        ({"command": "open_door", "ttl_seconds": 0}, 422, ["ttl_seconds"]),
    ],
)
def test_commands_are_checked_against_what_the_device_announced(site, body, status, names):
    _settings, gw, admin = site
    resp = admin.post(f"/api/v1/devices/{device_id(admin, gw.site, 'door-a1')}/commands", json=body)
    assert resp.status_code == status, resp.text
    for name in names:
        assert name in resp.json()["error"], resp.json()


def test_a_device_without_commands_and_a_device_out_of_reach(site):
    settings, gw, admin = site
    resp = admin.post(f"/api/v1/devices/{device_id(admin, gw.site, 'meter-1')}/commands", json={"command": "open_door"})
    assert resp.status_code == 422 and "defines no commands" in resp.json()["error"]
    assert admin.post("/api/v1/devices/999999/commands", json={"command": "open_door"}).status_code == 404
    door = device_id(admin, gw.site, "door-a1")
    with api_client(settings, role="technician") as technician:  # works at no site yet
        assert technician.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"}).status_code == 404
        assert technician.get(f"/api/v1/devices/{door}/commands").status_code == 404


def test_only_the_roles_a_command_names_may_send_it(site, database_url):
    settings, gw, admin = site
    door = device_id(admin, gw.site, "door-a1")
    with api_client(settings, role="technician") as technician, api_client(settings, role="guard") as guard:
        give_sites(database_url, "cloud-test-technician", [gw.site])
        give_sites(database_url, "cloud-test-guard", [gw.site])
        resp = technician.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"})
        assert resp.status_code == 403 and "open_door may be sent by admin, guard" in resp.json()["error"]
        resp = technician.post(
            f"/api/v1/devices/{door}/commands", json={"command": "set_pressure", "params": {"pressure": 2}}
        )
        assert resp.status_code == 202, resp.text
        assert guard.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"}).status_code == 202
        resp = guard.post(
            f"/api/v1/devices/{door}/commands", json={"command": "set_pressure", "params": {"pressure": 2}}
        )
        assert resp.status_code == 403
        # a command without roles: admin only
        assert (
            technician.post(
                f"/api/v1/devices/{door}/commands", json={"command": "set_speed", "params": {"rpm": 10}}
            ).status_code
            == 403
        )
        # they see the commands of their site
        assert len(guard.get(f"/api/v1/devices/{door}/commands").json()) == 2
    with api_client(settings, role="resident") as resident:
        assert resident.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"}).status_code == 403


def test_a_gateway_that_is_offline_refuses_commands(site):
    _settings, gw, admin = site
    gw.send(messages.StatusMessage(ts=datetime.now(UTC), state="offline", reason="test"), retain=True)
    wait_for(lambda: admin.get(f"/api/v1/gateways/{gw.gateway}").json()["status"] == "offline")
    resp = admin.post(f"/api/v1/devices/{device_id(admin, gw.site, 'door-a1')}/commands", json={"command": "open_door"})
    assert resp.status_code == 409 and f"gateway {gw.gateway} is offline" in resp.json()["error"]


def test_a_command_waits_for_the_broker_and_goes_out_when_it_returns(database_url, tmp_path: Path, unique_id):
    """The broker is down when the command is made: it stays pending, unpublished, and goes out on return."""
    broker = MosquittoProcess(tmp_path / "broker").start()
    site, gateway = f"s{unique_id}", f"g{unique_id}"
    # the gateway's persistent session, so the broker keeps the command for it across its restart
    gw = FieldGateway(broker.url, site, gateway, client_id=f"{gateway}-session", clean_session=False)
    with connect(database_url) as conn:
        registry.record_birth(
            conn,
            site=site,
            gateway=gateway,
            birth=birth_message(site, gateway, {"door-a1": DOOR_COMMANDS}),
            now=datetime.now(UTC),
        )
        conn.commit()
    settings = settings_for(database_url, broker.url, f"api-{unique_id}", downlink_retry_seconds=0.2)
    try:
        with api_client(settings) as admin:
            wait_for(lambda: admin.app.state.downlink.connected.is_set())
            broker.stop()
            wait_for(lambda: not admin.app.state.downlink.connected.is_set())
            door = device_id(admin, site, "door-a1")
            command = admin.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door", "ttl_seconds": 600})
            assert command.status_code == 202, command.text
            command_id = command.json()["id"]
            assert admin.get(f"/api/v1/commands/{command_id}").json()["published_at"] is None
            broker.start()
            wait_for(lambda: admin.get(f"/api/v1/commands/{command_id}").json()["published_at"], timeout=20)
            msg, _ = gw.next_message(topics.Kind.COMMAND, timeout=20)
            assert str(msg.id) == command_id
    finally:
        gw.close()
        broker.stop()


def test_a_command_nobody_answers_expires_and_a_late_answer_still_counts(site, database_url):
    _settings, gw, admin = site
    door = device_id(admin, gw.site, "door-a1")
    command = admin.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door", "ttl_seconds": 30}).json()
    msg, _ = gw.next_message(topics.Kind.COMMAND)
    # the gateway may hold the message a moment before the publisher notes the broker's acknowledgement
    wait_for(lambda: admin.get(f"/api/v1/commands/{command['id']}").json()["published_at"])
    with connect(database_url) as conn:
        assert command_domain.expire_due(conn, datetime.now(UTC)) == 0  # not yet
        assert command_domain.expire_due(conn, datetime.now(UTC) + timedelta(seconds=31)) == 1
        conn.commit()
    got = admin.get(f"/api/v1/commands/{command['id']}").json()
    assert got["state"] == "expired" and "no answer from the gateway" in got["reason"]
    assert got["finished_at"] == command["expires_at"]
    # the device did act, the answer was only late: it says what happened
    gw.ack(msg.id, "succeeded")
    wait_for(lambda: admin.get(f"/api/v1/commands/{command['id']}").json()["state"] == "succeeded")


def test_the_api_scheduler_expires_commands(database_url, mqtt_url, unique_id):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}").model_copy(
        update={"scheduler_enabled": True, "scheduler_interval_seconds": 0.2}
    )
    gw = FieldGateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}")
    try:
        with running_ingest(settings), api_client(settings) as admin:
            gw.birth({"door-a1": DOOR_COMMANDS})
            wait_for(lambda: admin.get("/api/v1/devices", params={"site": gw.site}).json())
            door = device_id(admin, gw.site, "door-a1")
            command = admin.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door", "ttl_seconds": 1})
            got = wait_for(
                lambda: (c := admin.get(f"/api/v1/commands/{command.json()['id']}").json())["state"] == "expired" and c
            )
            assert got["reason"] == "no answer from the gateway before it expired"
    finally:
        gw.close()
