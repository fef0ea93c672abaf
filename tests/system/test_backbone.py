"""The whole backbone through the real CLI: a simulated pump (pymodbus) → `community edge` → Mosquitto →
the cloud's ingest → PostgreSQL → a repair ticket in the API, opened by itself."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from community.broker import free_port
from tests.cloud.stack import api_client, running_ingest, settings_for, wait_for


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "community", *args],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


@pytest.fixture
def site_files(tmp_path: Path, repo_root: Path, unique_id: str) -> Iterator[tuple[Path, Path, str, str]]:
    site, gateway = f"s{unique_id}", f"g{unique_id}"
    port = free_port()
    gateway_config = {
        "site": {"id": site, "name": "Test estate", "timezone": "Asia/Shanghai"},
        "gateway": {"id": gateway, "name": "test gateway"},
        "profiles_dir": str(repo_root / "device_profiles"),
        "telemetry": {"max_points": 50, "max_delay": 0.2},
        "devices": [
            {
                "name": "pump-1",
                "profile": "water-pump",
                "modbus": {"host": "127.0.0.1", "port": port, "unit": 1},
                "location": {"building": "B", "floor": "-1", "room": "pump room"},
                "poll_interval": 0.2,
            },
            {
                "name": "pump-2",
                "profile": "water-pump",
                "modbus": {"host": "127.0.0.1", "port": port, "unit": 2},
                "location": {"building": "B", "floor": "-1", "room": "pump room"},
                "poll_interval": 0.2,
            },
        ],
    }
    steady = {"outlet_pressure": 4.2, "running": True, "fault_code": 0, "motor_current": 14.0}
    scenario = {
        "gateway_config": "gateway.yaml",
        "tick": 0.1,
        "devices": {
            # the fault comes at 4 s for 3 s, and again at 12 s for 3 s (a repeat while the ticket is open)
            "pump-1": {"metrics": steady, "events": [{"at": 4, "every": 8, "for": 3, "set": {"fault_code": 3}}]},
            # pump-2's controller stops answering from 3 s to 8 s
            "pump-2": {"metrics": steady, "down": [{"at": 3, "for": 5}]},
        },
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(gateway_config))
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    yield tmp_path / "gateway.yaml", tmp_path / "scenario.yaml", site, gateway


def test_pump_fault_opens_exactly_one_repair_ticket(tmp_path, database_url, mqtt_url, unique_id, site_files):
    gateway_file, scenario_file, site, gateway = site_files
    settings = settings_for(database_url, mqtt_url, f"ingest-{unique_id}")
    env = {"MQTT_URL": mqtt_url}
    with running_ingest(settings), api_client(settings) as client:
        sim = _spawn(["simulate", "--config", str(scenario_file)], env, tmp_path / "simulator.log")
        edge = _spawn(["edge", "--config", str(gateway_file)], env, tmp_path / "edge.log")
        try:
            # the gateway announces itself and its devices
            devices = wait_for(lambda: client.get("/api/v1/devices", params={"site": site}).json(), timeout=20)
            assert sorted(d["name"] for d in devices) == ["pump-1", "pump-2"]
            assert all(d["building"] == "B" and d["profile"] == "water-pump" for d in devices)

            def repair_tickets() -> list[dict]:
                return client.get("/api/v1/tickets", params={"site": site, "channel": "device"}).json()

            ticket = wait_for(repair_tickets, timeout=20)[0]
            assert (ticket["type"], ticket["category"], ticket["priority"], ticket["device_name"]) == (
                "repair",
                "facility",
                "urgent",
                "pump-1",
            )
            assert ticket["number"].startswith("T-")

            # the silent pump goes offline and comes back
            def pump2_online() -> bool | None:
                devices = client.get("/api/v1/devices", params={"site": site}).json()
                return next(d["online"] for d in devices if d["name"] == "pump-2")

            wait_for(lambda: pump2_online() is False, timeout=20)
            wait_for(lambda: pump2_online() is True, timeout=20)

            # the fault clears at 7 s and comes back at 12 s: one ticket, two occurrences, the clear on it
            def repeated() -> dict | None:
                detail = client.get(f"/api/v1/tickets/{ticket['number']}").json()
                return detail if detail["occurrences"] >= 2 else None

            detail = wait_for(repeated, timeout=25)
            kinds = [e["kind"] for e in detail["timeline"]]
            assert kinds[:3] == ["created", "alarm_cleared", "alarm_repeated"], kinds
            assert len(repair_tickets()) == 1

            # telemetry flowed and last values are there
            pump = next(d for d in client.get("/api/v1/devices", params={"site": site}).json() if d["name"] == "pump-1")
            assert pump["online"] is True
            assert pump["last_values"]["outlet_pressure"]["value"] == pytest.approx(4.2, abs=1e-5)
            assert pump["last_values"]["outlet_pressure"]["unit"] == "bar"
            series = client.get(f"/api/v1/devices/{pump['id']}/telemetry", params={"metric": "motor_current"}).json()
            assert sum(b["count"] for b in series["buckets"]) > 10
        finally:
            edge_code = _stop(edge)
            sim_code = _stop(sim)
        assert edge_code == 0, (tmp_path / "edge.log").read_text()
        assert sim_code == 0, (tmp_path / "simulator.log").read_text()
        # a clean shutdown says so: the gateway is offline with its reason
        gw = wait_for(
            lambda: [
                g for g in client.get("/api/v1/gateways").json() if g["id"] == gateway and g["status"] == "offline"
            ]
        )
        assert gw[0]["status_reason"]
