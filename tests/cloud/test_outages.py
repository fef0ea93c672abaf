"""The database or the broker goes away and comes back: the ingest says so, keeps running, loses nothing."""

import logging

from cloud.storage.migrate import upgrade
from community.broker import MosquittoProcess
from community.embedded_db import EmbeddedPostgres
from tests.cloud.stack import Gateway, count, running_ingest, settings_for, wait_for


def test_database_outage_loses_nothing(tmp_path, mqtt_url, unique_id, caplog):
    pg = EmbeddedPostgres(tmp_path / "pg", cleanup="stop").start()
    try:
        url = pg.ensure_database("outage")
        upgrade(url)
        settings = settings_for(url, mqtt_url, f"ingest-{unique_id}")
        gw = Gateway(mqtt_url, site=f"s{unique_id}", gateway=f"g{unique_id}")
        try:
            with running_ingest(settings), caplog.at_level(logging.ERROR):
                for i in range(50):
                    gw.telemetry("pump-1", {"pressure": float(i)})
                wait_for(lambda: count(url, "SELECT count(*) FROM telemetry") == 50)
                pg.stop()  # the database goes away
                for i in range(50, 150):
                    gw.telemetry("pump-1", {"pressure": float(i)})
                gw.alarm("pump-1", "pump_fault", "raise")
                wait_for(lambda: "database unavailable" in caplog.text, timeout=15)
                pg = EmbeddedPostgres(tmp_path / "pg", cleanup="stop").start()  # and comes back
                wait_for(lambda: count(url, "SELECT count(*) FROM telemetry") == 150, timeout=60)
                wait_for(lambda: count(url, "SELECT count(*) FROM tickets") == 1, timeout=30)
            assert count(url, "SELECT count(DISTINCT value) FROM telemetry") == 150
        finally:
            gw.close()
    finally:
        pg.stop()


def test_broker_restart_loses_nothing(tmp_path, database_url, unique_id):
    broker = MosquittoProcess(tmp_path / "mosquitto").start()
    port = broker.port
    settings = settings_for(database_url, broker.url, f"ingest-{unique_id}")
    try:
        with running_ingest(settings) as worker:
            gw = Gateway(broker.url, site=f"s{unique_id}", gateway=f"g{unique_id}")
            for i in range(20):
                gw.telemetry("pump-1", {"pressure": float(i)})
            wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 20)
            gw.close()
            broker.stop()  # clean shutdown: the broker saves its sessions
            wait_for(lambda: not any(c.connected.is_set() for c in worker.consumers), timeout=10)
            broker = MosquittoProcess(tmp_path / "mosquitto", port=port).start()
            wait_for(lambda: worker.subscribed, timeout=30)
            gw = Gateway(broker.url, site=f"s{unique_id}", gateway=f"g{unique_id}")
            for i in range(20, 40):
                gw.telemetry("pump-1", {"pressure": float(i)})
            wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 40, timeout=20)
            gw.close()
    finally:
        broker.stop()


def test_broker_keeps_the_backlog_of_a_stopped_ingest_across_its_own_restart(tmp_path, database_url, unique_id):
    """Queued for the ingest's persistent session, saved by the broker, delivered after both return."""
    broker = MosquittoProcess(tmp_path / "mosquitto").start()
    port = broker.port
    settings = settings_for(database_url, broker.url, f"ingest-{unique_id}")
    try:
        with running_ingest(settings):
            pass  # the session and its subscriptions now exist in the broker
        gw = Gateway(broker.url, site=f"s{unique_id}", gateway=f"g{unique_id}")
        for i in range(300):
            gw.telemetry("pump-1", {"pressure": float(i)})
        gw.close()
        broker.stop()
        broker = MosquittoProcess(tmp_path / "mosquitto", port=port).start()
        with running_ingest(settings):
            wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 300, timeout=30)
    finally:
        broker.stop()
