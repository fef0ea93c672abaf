"""Run a scenario: serve the simulated devices and move their values as the scenario says.

`Simulation` is the async API (tests, the demo); `run_simulator` is the blocking form for the
CLI. Every tick, each device's script gives the values its metrics should have; only changed
values are written, so a client's write to a register sticks until the scenario moves it.
"""

import asyncio
import contextlib
import logging
import random
import signal
from pathlib import Path
from types import TracebackType

from contract.clock import Clock, SystemClock
from contract.common import Value
from edge.logs import configure_logging
from edge.settings import EdgeSettings, parse_mqtt_url
from simulator.behaviours import DeviceScript
from simulator.modbus_server import ModbusSimulation
from simulator.mqtt_devices import MqttDevicePublisher
from simulator.scenario import DeviceScenario, LoadedScenario, load_scenario

log = logging.getLogger(__name__)

_UNSET = object()


class Simulation:
    """The devices of a scenario's gateway config, alive. `async with Simulation(...) as sim:`."""

    def __init__(self, scenario: LoadedScenario, mqtt_url: str | None = None, *, clock: Clock | None = None) -> None:
        self.scenario = scenario
        self.clock = clock or SystemClock()
        gateway = scenario.gateway
        self.modbus = ModbusSimulation(gateway)
        self.mqtt: MqttDevicePublisher | None = None
        if any(d.mqtt is not None for d in gateway.config.devices):
            url = mqtt_url or gateway.config.local_mqtt_url or EdgeSettings().mqtt_url
            client_id = f"{gateway.config.gateway.id}-simulator"
            self.mqtt = MqttDevicePublisher(gateway, parse_mqtt_url(url), client_id)
        rng = random.Random(scenario.scenario.seed)
        self.scripts = {name: DeviceScript(name, spec, rng) for name, spec in scenario.scenario.devices.items()}
        self._written: dict[tuple[str, str], Value] = {}
        self._down_by_scenario: set[str] = set()
        self._last_published: dict[str, float] = {}
        self._started_at = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- test-facing controls ------------------------------------------------------------------

    def set(self, device: str, metric: str, value: Value) -> None:
        """Give a metric a value now (an MQTT device publishes it at once)."""
        if self.mqtt is not None and device in self.mqtt.devices:
            self.mqtt.device(device).set(metric, value)
            self._publish(device, self.elapsed())
        else:
            self.modbus.set(device, metric, value)

    def get(self, device: str, metric: str) -> Value:
        if self.mqtt is not None and device in self.mqtt.devices:
            return self.mqtt.device(device).get(metric)
        return self.modbus.get(device, metric)

    def stop_answering(self, device: str) -> None:
        if self.mqtt is not None and device in self.mqtt.devices:
            self.mqtt.device(device).answering = False
        else:
            self.modbus.stop_answering(device)

    def start_answering(self, device: str) -> None:
        if self.mqtt is not None and device in self.mqtt.devices:
            self.mqtt.device(device).answering = True
            self._publish(device, self.elapsed())
        else:
            self.modbus.start_answering(device)

    # -- lifecycle -----------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.clock.monotonic() - self._started_at

    async def start(self) -> None:
        self._started_at = self.clock.monotonic()
        self.tick(0.0)  # the first poll already sees the scenario's values
        await self.modbus.start()
        if self.mqtt is not None:
            await self.mqtt.start()
        self._task = asyncio.create_task(self._run(), name="simulation")
        log.info("simulation of %s started (%d scripted device(s))", self.scenario.path, len(self.scripts))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.mqtt is not None:
            await self.mqtt.stop()
        await self.modbus.stop()

    async def __aenter__(self) -> "Simulation":
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        tick = self.scenario.scenario.tick
        while True:
            await asyncio.sleep(tick)
            try:
                self.tick(self.elapsed())
            except Exception:  # a bad value must not end the simulation
                log.exception("simulation tick failed")

    # -- one step ------------------------------------------------------------------------------

    def tick(self, t: float) -> None:
        """Apply every device's script at `t` seconds after the start."""
        for name, script in self.scripts.items():
            values = script.step(t, lambda metric, name=name: self.get(name, metric))
            is_mqtt = self.mqtt is not None and name in self.mqtt.devices
            changed_flag = False
            for metric, value in values.items():
                previous = self._written.get((name, metric), _UNSET)
                if previous == value and type(previous) is type(value):
                    continue
                self._written[(name, metric)] = value
                if is_mqtt:
                    assert self.mqtt is not None
                    self.mqtt.device(name).set(metric, value)
                    changed_flag = changed_flag or not isinstance(value, float)
                else:
                    self.modbus.set(name, metric, value)
            self._apply_down(name, script.down(t))
            if is_mqtt:
                interval = script.spec.publish_interval
                if changed_flag or t - self._last_published.get(name, -interval) >= interval:
                    self._publish(name, t)
        if self.mqtt is not None:  # devices without a script still report, with their defaults
            interval = DeviceScenario().publish_interval
            for name in self.mqtt.devices:
                if name not in self.scripts and t - self._last_published.get(name, -interval) >= interval:
                    self._publish(name, t)

    def _apply_down(self, name: str, down: bool) -> None:
        if down and name not in self._down_by_scenario:
            self._down_by_scenario.add(name)
            log.info("device %s: down (scenario)", name)
            self.stop_answering(name)
        elif not down and name in self._down_by_scenario:
            self._down_by_scenario.discard(name)
            log.info("device %s: back (scenario)", name)
            self.start_answering(name)

    def _publish(self, name: str, t: float) -> None:
        assert self.mqtt is not None
        self._last_published[name] = t
        self.mqtt.publish(name)


async def _run_until_signalled(scenario: LoadedScenario, mqtt_url: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulation(scenario, mqtt_url):
        await stop.wait()


def run_simulator(scenario_path: Path, mqtt_url: str | None = None, *, log_level: str = "INFO") -> None:
    """Serve the scenario's devices until SIGINT or SIGTERM (the CLI's `community simulate`).

    `mqtt_url` is where MQTT-speaking devices publish; by default the gateway config's
    `local_mqtt_url`, else COMMUNITY_MQTT_URL / MQTT_URL, else mqtt://127.0.0.1:1883.
    Raises ScenarioError (a ProfileError, naming file and field) for a broken scenario.
    """
    configure_logging(log_level)
    scenario = load_scenario(scenario_path)
    asyncio.run(_run_until_signalled(scenario, mqtt_url))
