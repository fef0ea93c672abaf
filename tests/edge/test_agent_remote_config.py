"""A configuration pushed over MQTT: the running agent takes it without a restart, refuses a bad one
and keeps the last good one across a restart."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from contract.gateway_config import load_gateway_config
from contract.messages import ConfigMessage, encode
from contract.topics import Kind, topic
from edge.agent import Agent
from edge.settings import EdgeSettings
from simulator.modbus_server import ModbusSimulation
from tests.edge.conftest import MqttRecorder, modbus_device, write_gateway_config
from tests.edge.test_agent import until

TS = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _readings_of(recorder: MqttRecorder, device: str) -> int:
    return sum(1 for m in recorder.of_kind("telemetry") for r in m.json()["readings"] if r["device"] == device)


def _states(recorder: MqttRecorder) -> list[dict]:
    return [m.json() for m in recorder.of_kind("config/state")]


def _births(recorder: MqttRecorder) -> list[dict]:
    return [m.json() for m in recorder.of_kind("birth")]


def test_a_pushed_configuration_is_applied_live_refused_when_bad_and_kept_across_a_restart(
    tmp_path: Path, mqtt_url: str, unique_id: str, port: int
) -> None:
    site, gateway = unique_id, f"{unique_id}-gw"
    pump_1, pump_2 = modbus_device("pump-1", "water-pump", port, 1), modbus_device("pump-2", "water-pump", port, 2)
    local = write_gateway_config(tmp_path, [pump_1], site=site, gateway=gateway, telemetry={"max_delay": 0.1})
    both = tmp_path / "simulated"
    both.mkdir()
    served = load_gateway_config(write_gateway_config(both, [pump_1, pump_2], site=site, gateway=gateway))
    settings = EdgeSettings(mqtt_url=mqtt_url, config=local, health_interval=0.3)
    config_topic = topic(site, gateway, Kind.CONFIG)

    recorder = MqttRecorder(mqtt_url, f"recorder-{unique_id}")
    recorder.subscribe(f"community/v1/{site}/{gateway}/#")

    def push(version: int, config: dict) -> None:
        payload = encode(ConfigMessage(ts=TS, version=version, config=config))
        recorder.client.publish(config_topic, payload, qos=1, retain=True).wait_for_publish(5)

    async def first_run(sim: ModbusSimulation) -> None:
        async with Agent(settings, backoff_cap=0.5):
            await until(lambda: _readings_of(recorder, "pump-1") > 0)
            assert _readings_of(recorder, "pump-2") == 0
            push(1, {"devices": [pump_1, pump_2], "telemetry": {"max_delay": 0.1}})
            await until(lambda: any(s["version"] == 1 and s["status"] == "applied" for s in _states(recorder)))
            await until(lambda: _readings_of(recorder, "pump-2") > 0)  # polled without a restart
            await until(lambda: any(b.get("config_version") == 1 for b in _births(recorder)))
            birth = next(b for b in _births(recorder) if b.get("config_version") == 1)
            assert [d["name"] for d in birth["devices"]] == ["pump-1", "pump-2"]
            await until(lambda: any(m.json()["config_version"] == 1 for m in recorder.of_kind("health")))

            push(2, {"devices": [{**pump_2, "profile": "no-such-profile"}]})
            refused = await until(lambda: [s for s in _states(recorder) if s["version"] == 2])
            assert refused[0]["status"] == "refused" and refused[0]["running_version"] == 1
            assert "devices[0].profile" in refused[0]["reason"] and "no-such-profile" in refused[0]["reason"]
            seen = _readings_of(recorder, "pump-2")
            await until(lambda: _readings_of(recorder, "pump-2") > seen)  # the last good one still runs

    async def second_run() -> None:
        before = len(_births(recorder))
        async with Agent(settings, backoff_cap=0.5):
            await until(lambda: len(_births(recorder)) > before)
            assert _births(recorder)[-1]["config_version"] == 1
            seen = _readings_of(recorder, "pump-2")
            await until(lambda: _readings_of(recorder, "pump-2") > seen)

    async def main() -> None:
        sim = ModbusSimulation(served)
        await sim.start()
        try:
            await first_run(sim)
            # the broker forgets the retained configuration: the agent still has version 1 on disk
            recorder.client.publish(config_topic, b"", qos=1, retain=True).wait_for_publish(5)
            await second_run()
        finally:
            await sim.stop()

    try:
        asyncio.run(main())
    finally:
        recorder.close()
