"""Forced and held-open doors open safety tickets: an edge agent watching a pymodbus door controller's
contact, Mosquitto, the cloud's ingest and PostgreSQL, the tickets read through the API."""

import asyncio
from pathlib import Path
from typing import Any

from edge.agent import Agent
from edge.settings import EdgeSettings
from simulator.modbus_server import ModbusSimulation
from tests.cloud.stack import api_client, running_ingest, settings_for, wait_for
from tests.edge.test_access_agent import door_site
from tests.edge.test_agent import until


def test_forced_and_held_open_doors_open_safety_tickets(
    tmp_path: Path, database_url: str, mqtt_url: str, unique_id: str
) -> None:
    site, gateway = unique_id, f"{unique_id}-gw"
    loaded = door_site(tmp_path, site, gateway)
    cloud = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    with running_ingest(cloud), api_client(cloud) as client:

        def door_alarms() -> list[dict[str, Any]]:
            found = client.get("/api/v1/alarms", params={"site": site}).json()
            return [a for a in found if a["rule"] in ("door_forced", "door_held_open")]

        async def run() -> None:
            async with ModbusSimulation(loaded) as sim:
                agent = Agent(EdgeSettings(mqtt_url=mqtt_url), gateway_config=loaded, backoff_cap=0.5)
                await agent.start()
                try:
                    await until(agent.uplink.connected.is_set)
                    assert agent.access is not None
                    watch = agent.access.watches["lobby-in"]
                    await until(lambda: watch.open is False)
                    sim.set("door-ctl", "door_open", True)  # nobody was granted: forced, then held open
                    await until(lambda: {"door_forced", "door_held_open"} <= watch.raised)
                    await asyncio.to_thread(wait_for, lambda: len(door_alarms()) == 2, 20)
                finally:
                    await agent.stop()

        asyncio.run(run())
        alarms = {a["rule"]: a for a in door_alarms()}
        for rule in ("door_forced", "door_held_open"):
            alarm = alarms[rule]
            assert alarm["device_name"] == "door-ctl" and alarm["ticket_type"] == "safety", alarm
            assert "lobby-in" in alarm["message"]
        numbers = {a["ticket_number"] for a in alarms.values()}
        assert None not in numbers
        for number in numbers:
            ticket = client.get(f"/api/v1/tickets/{number}").json()
            assert ticket["type"] == "safety" and ticket["device_name"] == "door-ctl", ticket
