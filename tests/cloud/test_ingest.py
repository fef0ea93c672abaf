"""Ingest against a real Mosquitto and a real PostgreSQL: rows land, copies add nothing, bad payloads
are dead-lettered while good ones keep flowing."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from contract import messages
from contract.topics import Kind
from tests.cloud.stack import Gateway, count, running_ingest, settings_for, wait_for


@pytest.fixture
def gateway(mqtt_url: str, unique_id: str):
    gw = Gateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}", timezone="Asia/Shanghai")
    yield gw
    gw.close()


def test_telemetry_rows_are_committed_and_last_values_kept(database_url, mqtt_url, unique_id, gateway):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings) as worker:
        gateway.birth([("pump-1", "water-pump", "B1")])
        t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
        for i in range(20):
            gateway.telemetry(
                "pump-1", {"pressure": 3.0 + i / 10, "fault_code": i % 2, "running": True}, t0 + timedelta(seconds=i)
            )
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 60)
        wait_for(
            lambda: count(
                database_url, "SELECT count(*) FROM devices WHERE last_values ? 'pressure' AND last_seen_at IS NOT NULL"
            )
        )
        assert worker.committed_points == 60
    assert count(database_url, "SELECT count(*) FROM telemetry WHERE metric = 'running' AND value = 1.0") == 20
    assert (
        count(
            database_url,
            "SELECT count(*) FROM devices WHERE announced AND profile = 'water-pump' AND gateway_id = %s",
            (gateway.gateway,),
        )
        == 1
    )
    # last value is the newest, 3.0 + 19/10
    assert (
        count(database_url, "SELECT count(*) FROM devices WHERE (last_values->'pressure'->>'value')::float = 4.9") == 1
    )


def test_redelivered_message_adds_no_rows(database_url, mqtt_url, unique_id, gateway):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings) as worker:
        msg = gateway.telemetry("pump-1", {"pressure": 2.5, "fault_code": 0})
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 2)
        # the same message, same id, sent again (as after a reconnect), twice
        gateway.send(msg)
        gateway.send(msg)
        marker = gateway.telemetry("pump-1", {"pressure": 9.9})
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 3)
        assert worker.duplicates == 2
    assert count(database_url, "SELECT count(*) FROM ingest_messages WHERE message_id = %s", (msg.id,)) == 1
    assert count(database_url, "SELECT count(*) FROM ingest_messages WHERE message_id = %s", (marker.id,)) == 1
    # each stored message records its points once (the ingest-rate dashboard sums them)
    assert count(database_url, "SELECT points FROM ingest_messages WHERE message_id = %s", (msg.id,)) == 2
    assert count(database_url, "SELECT points FROM ingest_messages WHERE message_id = %s", (marker.id,)) == 1


def test_malformed_payloads_are_dead_lettered_and_good_ones_keep_flowing(database_url, mqtt_url, unique_id, gateway):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    good = messages.TelemetryBatch(
        ts=datetime.now(UTC),
        readings=[messages.Reading(device="pump-1", ts=datetime.now(UTC), values={"pressure": 1.0})],
    )
    future_version = json.loads(messages.encode(good))
    future_version["v"] = 2
    future_version["id"] = "01890a5d-ac96-774b-bcce-b302099a8057"
    bad_payloads = [
        (Kind.TELEMETRY, b"{not json", "not valid JSON"),
        (Kind.TELEMETRY, json.dumps(future_version).encode(), "unsupported schema version 2"),
        (
            Kind.TELEMETRY,
            b'{"v": 1, "id": "01890a5d-ac96-774b-bcce-b302099a8058", "ts": "2026-11-24T08:00:00Z",'
            b' "readings": [{"device": "pump-1", "ts": "2026-11-24T08:00:00Z", "values": {}}]}',
            "readings[0].values",
        ),
        (
            Kind.ALARM,
            b'{"v": 1, "id": "01890a5d-ac96-774b-bcce-b302099a8059", "ts": "2026-11-24T08:00:00Z",'
            b' "device": "pump-1", "rule": "x", "action": "explode", "severity": "critical"}',
            "action",
        ),
        (Kind.EVENT, b"\xff\xfe binary", "not valid JSON"),
    ]
    with running_ingest(settings):
        gateway.send(good)
        for kind, payload, _ in bad_payloads:
            gateway.publish_raw(kind, payload)
            gateway.telemetry("pump-1", {"pressure": 2.0})  # good ones in between
        wait_for(lambda: count(database_url, "SELECT count(*) FROM dead_letters") == len(bad_payloads))
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 1 + len(bad_payloads))
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT topic, payload, reason FROM dead_letters ORDER BY id").fetchall()
    stored = {bytes(payload): (topic, reason) for topic, payload, reason in rows}
    for kind, payload, expected in bad_payloads:
        topic, reason = stored[payload]  # the raw bytes, exactly as received
        assert topic == gateway.topic(kind)
        assert expected in reason, reason


def test_gateway_claiming_another_site_is_refused(database_url, mqtt_url, unique_id, gateway):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    impostor = Gateway(mqtt_url, site=f"x{unique_id}", gateway=gateway.gateway)
    try:
        with running_ingest(settings):
            gateway.telemetry("pump-1", {"pressure": 1.0})
            wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 1)
            impostor.telemetry("pump-1", {"pressure": 66.0})
            wait_for(lambda: count(database_url, "SELECT count(*) FROM dead_letters"))
        assert count(database_url, "SELECT count(*) FROM telemetry") == 1
        assert (
            count(database_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE %s", ("%registered at site%",))
            == 1
        )
    finally:
        impostor.close()


def test_messages_queued_while_the_cloud_is_down_arrive_after(database_url, mqtt_url, unique_id, gateway):
    """The ingest's session is persistent: what gateways send while it is away waits in the broker."""
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings):
        gateway.telemetry("pump-1", {"pressure": 1.0})
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 1)
    for i in range(200):
        gateway.telemetry("pump-1", {"pressure": float(i)})
    with running_ingest(settings):
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 201)


def test_an_empty_retained_message_removes_state_without_a_dead_letter(database_url, mqtt_url, unique_id, gateway):
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings) as worker:
        gateway.publish_raw(Kind.BIRTH, b"", retain=True)
        gateway.publish_raw(Kind.STATUS, b"", retain=True)
        gateway.publish_raw(Kind.ALARM, b"")  # not a retained kind: a dead letter
        wait_for(lambda: worker.control.handled + count(database_url, "SELECT count(*) FROM dead_letters") >= 1)
        wait_for(lambda: count(database_url, "SELECT count(*) FROM dead_letters") == 1)
    assert count(database_url, "SELECT count(*) FROM dead_letters WHERE topic LIKE %s", ("%/alarm",)) == 1


def test_readings_dated_by_a_wrong_clock_are_dead_lettered(database_url, mqtt_url, unique_id, gateway):
    """A gateway without a set clock (year 2000) must not create partitions back to 2000, nor be lost."""
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(settings):
        gateway.telemetry("pump-1", {"pressure": 1.0}, datetime(2000, 1, 1, tzinfo=UTC))
        gateway.telemetry("pump-1", {"pressure": 1.0}, datetime.now(UTC) + timedelta(days=3))
        gateway.telemetry("pump-1", {"pressure": 2.0})
        wait_for(lambda: count(database_url, "SELECT count(*) FROM dead_letters") == 2)
        wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 1)
    assert (
        count(database_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE %s", ("%older than the retention%",))
        == 1
    )
    assert count(database_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE %s", ("%in the future%",)) == 1
    assert count(database_url, "SELECT count(*) FROM pg_class WHERE relname = 'telemetry_y2000m01'") == 0
