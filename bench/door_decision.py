"""A card decision at the edge, from the swipe to the relay write: p50 and p99 (target p99 < 50 ms).

One edge agent (`edge.agent.Agent` with its door controller, outbox and uplink to a real
Mosquitto) holds a whitelist of `--people` people with a card each. A reader publishes each swipe
on the local broker (`{"card": "..."}` on the reader's topic, as a real MQTT reader does); the
agent decides and pulses the door controller's lock coil through its command path on a pymodbus
server (the simulator's door controller, Modbus TCP on loopback). The time is taken from just
before the swipe is published to the moment the pymodbus server handles the coil-on write.
The simulated door controller and the swipe publisher run in the benchmark's process (the server
on the agent's event loop), so their work is inside the figure.

Runs, `--swipes` each, one swipe at a time (the next after the pulse has ended):

1. the agent as built: cards looked up in the whitelist's index;
2. baseline: the same decision with the whitelist scanned linearly for the card;
3. baseline: the relay write alone — the open command through the command handler, no swipe,
   no decision, no MQTT.

    .venv/bin/python bench/door_decision.py [--people 10000] [--swipes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from community.broker import MosquittoProcess, free_port  # noqa: E402
from contract.access import AccessRight, Card, WhitelistMessage, WhitelistPerson  # noqa: E402
from contract.gateway_config import load_gateway_config  # noqa: E402
from contract.messages import CommandMessage, encode  # noqa: E402
from edge.access import whitelist as whitelist_module  # noqa: E402
from edge.agent import Agent  # noqa: E402
from edge.settings import EdgeSettings  # noqa: E402
from simulator.modbus_server import ModbusSimulation  # noqa: E402

PULSE = 0.02


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_site(directory: Path, people: int) -> tuple[Path, list[str]]:
    profiles = directory / "profiles"
    profiles.mkdir()
    for source in (REPO_ROOT / "device_profiles").glob("*.yaml"):
        text = source.read_text()
        if source.name == "door-controller.yaml":
            text = text.replace("    pulse: 5\n", f"    pulse: {PULSE}\n")
        (profiles / source.name).write_text(text)
    port = free_port()
    config = {
        "site": {"id": "bench", "name": "Bench", "timezone": "Asia/Shanghai"},
        "gateway": {"id": "bench-gw"},
        "profiles_dir": str(profiles),
        "devices": [
            {"name": "door-ctl", "profile": "door-controller", "poll_interval": 1,
             "modbus": {"host": "127.0.0.1", "port": port, "unit": 1}},
        ],
        "access": {
            "doors": [{"name": "lobby", "relay": "door-ctl", "contact": "door-ctl"}],
            "readers": [{"name": "lobby-reader", "door": "lobby", "kind": "mqtt", "topic": "readers/bench/lobby"}],
        },
    }  # fmt: skip
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    now = datetime.now(UTC)
    cards = [f"{0x10000000 + i:08X}" for i in range(people)]
    whitelist = WhitelistMessage(
        ts=now,
        version=1,
        timezone="Asia/Shanghai",
        time_profiles=[],
        holidays=[],
        people=[
            WhitelistPerson(
                id=i + 1,
                cards=[Card(number=card, valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=365))],
                rights=[AccessRight(doors=["garage", "lobby"])],
            )
            for i, card in enumerate(cards)
        ],
    )
    state = directory / "state"
    state.mkdir()
    (state / "whitelist-bench-gw.json").write_text(whitelist.model_dump_json(exclude_none=True))
    return path, cards


def linear_card(self: whitelist_module.Whitelist, number: str) -> Any:
    """The baseline's lookup: every person's every card, in order."""
    key = whitelist_module.card_key(number)
    for person in self.people.values():
        for card in person.cards:
            if whitelist_module.card_key(card.number) == key:
                return person, card
    return None


def figures(name: str, samples: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    result = {"run": name, "n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": p99, "max_ms": ms[-1]}
    log(f"{name}: p50 {result['p50_ms']:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms over {len(ms)}")
    return result


async def bench(directory: Path, people: int, swipes: int) -> list[dict[str, Any]]:
    config_path, cards = write_site(directory, people)
    loaded = load_gateway_config(config_path)
    broker = MosquittoProcess(directory / "mosquitto").start()
    sim = ModbusSimulation(loaded)
    device = sim.device("door-ctl")
    coil_on: list[float] = []
    action = device._action

    async def recording(function_code: int, start: int, addr: int, count: int, regs: Any, values: Any) -> Any:
        if function_code == 5 and addr == 0 and values is not None and values[0]:
            coil_on.append(time.perf_counter())
        return await action(function_code, start, addr, count, regs, values)

    device._action = recording  # type: ignore[method-assign]
    results = []
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-reader")
    try:
        await sim.start()
        settings = EdgeSettings(mqtt_url=broker.url, state_dir=directory / "state", log_level="WARNING")
        agent = Agent(settings, gateway_config=loaded)
        await agent.start()
        try:
            while not agent.uplink.connected.is_set() or agent.mqtt_readers is None:
                await asyncio.sleep(0.05)
            await asyncio.wait_for(agent.mqtt_readers.subscribed.wait(), 10)
            assert agent.whitelist.version == 1 and agent.access is not None
            publisher.connect("127.0.0.1", broker.port)
            publisher.loop_start()
            rng = random.Random(5)

            async def swipe_run(name: str) -> None:
                samples = []
                for i in range(swipes + 20):
                    before = len(coil_on)
                    card = rng.choice(cards)
                    started = time.perf_counter()
                    publisher.publish("readers/bench/lobby", f'{{"card": "{card}"}}', qos=0)
                    while len(coil_on) == before:
                        await asyncio.sleep(0.0005)
                    if i >= 20:  # warm-up
                        samples.append(coil_on[-1] - started)
                    await asyncio.sleep(PULSE + 0.02)
                assert all(d.granted for d in agent.access.decisions[-swipes:])  # type: ignore[union-attr]
                results.append(figures(name, samples))

            await swipe_run("swipe to relay write (whitelist index)")
            indexed = whitelist_module.Whitelist.card
            whitelist_module.Whitelist.card = linear_card  # type: ignore[method-assign]
            try:
                await swipe_run("baseline: swipe to relay write (linear scan of the whitelist)")
            finally:
                whitelist_module.Whitelist.card = indexed  # type: ignore[method-assign]

            samples = []
            for i in range(swipes + 20):
                before = len(coil_on)
                started = time.perf_counter()
                command = CommandMessage(ts=datetime.now(UTC), device="door-ctl", command="open_door")
                task = asyncio.create_task(agent.commands.execute(encode(command)))
                while len(coil_on) == before:
                    await asyncio.sleep(0.0005)
                if i >= 20:
                    samples.append(coil_on[-1] - started)
                await task
                await asyncio.sleep(0.02)
            results.append(figures("baseline: relay write alone (command handler to pymodbus)", samples))
        finally:
            await agent.stop()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        await sim.stop()
        broker.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--swipes", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="door-bench-") as tmp:
        results = asyncio.run(bench(Path(tmp), args.people, args.swipes))
    print(f"people in the whitelist: {args.people}, swipes per run: {args.swipes}")
    for r in results:
        print(f"{r['run']}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms (n={r['n']})")


if __name__ == "__main__":
    main()
