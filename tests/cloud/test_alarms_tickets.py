"""Alarms become tickets by themselves: one ticket per device and rule while it is open, repeats
attach to it, clears are written on it, numbers are readable and dated in the site's time zone."""

from datetime import UTC, datetime, timedelta

import pytest

from contract.clock import ManualClock
from tests.cloud.stack import Gateway, api_client, count, running_ingest, settings_for, wait_for


@pytest.fixture
def gateway(mqtt_url: str, unique_id: str):
    gw = Gateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}", timezone="Asia/Shanghai")
    yield gw
    gw.close()


@pytest.fixture
def clock() -> ManualClock:
    # 17:30 UTC on the 24th is 01:30 on the 25th in Shanghai: the ticket is dated the 25th
    return ManualClock(datetime(2026, 11, 24, 17, 30, tzinfo=UTC))


def tickets(client, **params):
    resp = client.get("/api/v1/tickets", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_alarm_opens_one_ticket_repeats_attach_and_clears_are_recorded(
    database_url, mqtt_url, unique_id, gateway, clock
):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings, clock) as worker, api_client(settings, clock) as client:
        gateway.birth([("pump-1", "water-pump", "B1")])
        wait_for(lambda: worker.control.handled >= 1)
        gateway.alarm("pump-1", "pump_fault", "raise", value=3, message="pump fault code 3", severity="critical")
        found = wait_for(lambda: tickets(client, channel="device"))
        assert len(found) == 1
        ticket = found[0]
        assert ticket["number"] == "T-20261125-0001"
        assert (ticket["type"], ticket["category"], ticket["channel"], ticket["status"], ticket["priority"]) == (
            "repair",
            "facility",
            "device",
            "new",
            "urgent",
        )
        assert ticket["device_name"] == "pump-1" and ticket["building"] == "B1"
        assert ticket["title"] == "pump-1: pump fault code 3"

        # the same alarm reported again while active (an edge restart): nothing new
        gateway.alarm("pump-1", "pump_fault", "raise", value=3)
        # clear, then the fault comes back while the ticket is still open: attached, not a second ticket
        gateway.alarm("pump-1", "pump_fault", "clear", value=0)
        clock.advance(60)
        gateway.alarm("pump-1", "pump_fault", "raise", value=5)
        wait_for(lambda: worker.control.handled >= 5)
        assert len(tickets(client, channel="device")) == 1

        detail = client.get(f"/api/v1/tickets/{ticket['number']}").json()
        assert detail["occurrences"] == 2
        kinds = [e["kind"] for e in detail["timeline"]]
        assert kinds == ["created", "alarm_cleared", "alarm_repeated"], kinds
        assert [a["state"] for a in detail["alarms"]] == ["cleared", "active"]
        # the clear leaves the ticket open: a person confirms the fix
        assert detail["status"] == "new"

        # another rule on the same device is another matter: its own ticket, a safety one
        gateway.alarm("pump-1", "smoke_in_pump_room", "raise", ticket="safety", severity="major")
        second = wait_for(lambda: [t for t in tickets(client) if t["number"] != ticket["number"]])
        assert second[0]["number"] == "T-20261125-0002"
        assert (second[0]["type"], second[0]["category"], second[0]["priority"]) == ("safety", "safety", "high")
        assert [t["number"] for t in tickets(client, type="safety")] == ["T-20261125-0002"]

    assert count(database_url, "SELECT count(*) FROM alarms WHERE site_id = %s", (gateway.site,)) == 3
    assert count(database_url, "SELECT count(*) FROM tickets WHERE site_id = %s", (gateway.site,)) == 2


def test_alarm_without_ticket_rule_opens_none(database_url, mqtt_url, unique_id, gateway, clock):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings, clock) as worker:
        gateway.alarm("meter-1", "low_battery", "raise", ticket="none", severity="warning")
        wait_for(lambda: worker.control.handled >= 1)
    assert count(database_url, "SELECT count(*) FROM alarms WHERE state = 'active'") == 1
    assert count(database_url, "SELECT count(*) FROM tickets") == 0


def test_acknowledge_records_who_and_when(database_url, mqtt_url, unique_id, gateway, clock):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings, clock), api_client(settings, clock) as client:
        gateway.alarm("pump-1", "pump_fault", "raise")
        alarm = wait_for(lambda: client.get("/api/v1/alarms", params={"state": "active"}).json())[0]
        clock.advance(30)
        resp = client.post(f"/api/v1/alarms/{alarm['id']}/ack", json={"note": "on my way"})
        assert resp.status_code == 200, resp.text
        acked = resp.json()
        assert acked["state"] == "acknowledged"
        assert acked["acknowledged_by"] == "cloud-test-admin"
        assert acked["acknowledged_at"] == "2026-11-24T17:30:30Z"
        assert client.get("/api/v1/alarms", params={"state": "active"}).json() == []
        assert [a["id"] for a in client.get("/api/v1/alarms", params={"state": "open"}).json()] == [alarm["id"]]

        again = client.post(f"/api/v1/alarms/{alarm['id']}/ack")
        assert again.status_code == 409 and "already acknowledged" in again.json()["error"]
        missing = client.post("/api/v1/alarms/999999/ack")
        assert missing.status_code == 404 and "does not exist" in missing.json()["error"]

        timeline = client.get(f"/api/v1/tickets/{alarm['ticket_number']}").json()["timeline"]
        assert timeline[-1]["kind"] == "alarm_acknowledged" and timeline[-1]["actor"] == "cloud-test-admin"

        gateway.alarm("pump-1", "pump_fault", "clear")
        wait_for(lambda: client.get(f"/api/v1/alarms/{alarm['id']}").json()["state"] == "cleared")


def test_silent_gateway_raises_an_alarm_after_the_grace_period(database_url, mqtt_url, unique_id, gateway, clock):
    from contract.messages import StatusMessage

    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}", gateway_offline_grace_seconds=60)
    with running_ingest(settings, clock) as worker, api_client(settings, clock) as client:
        gateway.birth([("pump-1", "water-pump", "B1")])
        gateway.send(StatusMessage(ts=clock.now(), state="online"))
        wait_for(lambda: worker.control.handled >= 2)
        # the broker publishes the gateway's last will
        gateway.send(StatusMessage(ts=clock.now() - timedelta(hours=1), state="offline", reason="connection lost"))
        wait_for(lambda: client.get("/api/v1/gateways").json()[0]["status"] == "offline")
        clock.advance(30)  # within the grace period: a reboot is not an alarm
        worker.housekeeper._stop_event.wait(0.6)
        assert client.get("/api/v1/alarms").json() == []
        clock.advance(31)
        alarm = wait_for(lambda: client.get("/api/v1/alarms").json())[0]
        assert (alarm["source_type"], alarm["gateway_id"], alarm["rule"]) == (
            "gateway",
            gateway.gateway,
            "gateway_offline",
        )
        ticket = client.get(f"/api/v1/tickets/{alarm['ticket_number']}").json()
        assert ticket["source_type"] == "gateway" and ticket["type"] == "repair"
        # it comes back: the alarm clears, the ticket records it
        gateway.send(StatusMessage(ts=clock.now(), state="online"))
        wait_for(lambda: client.get(f"/api/v1/alarms/{alarm['id']}").json()["state"] == "cleared")
        assert client.get(f"/api/v1/tickets/{alarm['ticket_number']}").json()["timeline"][-1]["kind"] == "alarm_cleared"
