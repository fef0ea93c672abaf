"""The demo's fallback broker (amqtt, in process) carries the same traffic when Mosquitto is absent."""

from community.broker import InProcessBroker
from tests.cloud.stack import Gateway, api_client, count, running_ingest, settings_for, wait_for


def test_ingest_and_alarm_tickets_over_the_in_process_broker(database_url, unique_id):
    broker = InProcessBroker().start()
    try:
        settings = settings_for(database_url, broker.url, f"ingest-{unique_id}")
        # amqtt answers slowly when the machine is busy (it shares this process's GIL): give it time
        with running_ingest(settings, connect_timeout=60), api_client(settings) as client:
            gw = Gateway(broker.url, site=f"s{unique_id}", gateway=f"g{unique_id}")
            try:
                gw.birth([("pump-1", "water-pump", "B1")])
                for i in range(20):
                    gw.telemetry("pump-1", {"pressure": float(i)})
                gw.alarm("pump-1", "pump_fault", "raise", value=3)
                wait_for(lambda: count(database_url, "SELECT count(*) FROM telemetry") == 20, timeout=20)
                ticket = wait_for(lambda: client.get("/api/v1/tickets", params={"site": gw.site}).json(), timeout=20)
                assert ticket[0]["device_name"] == "pump-1" and ticket[0]["type"] == "repair"
            finally:
                gw.close()
    finally:
        broker.stop()
