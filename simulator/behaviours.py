"""Compute, for one device and one instant of a scenario, the values its metrics should have.

Pure and clock-free: `DeviceScript.step(t, current)` gets the seconds since the start and reads
current values only to put back what an event overrode when the event ends.
"""

import math
import random
from collections.abc import Callable

from contract.common import Value
from simulator.scenario import Behaviour, DeviceScenario

_UNSET = object()


class DeviceScript:
    """Where one device's scenario stands; call `step` once per tick with increasing `t`."""

    def __init__(self, name: str, spec: DeviceScenario, rng: random.Random) -> None:
        self.name = name
        self.spec = spec
        self._rng = rng
        self._walk: dict[str, float] = {
            metric: b.random_walk.start for metric, b in spec.metrics.items() if b.random_walk is not None
        }
        self._saved: dict[str, Value] = {}
        self.managed = set(spec.metrics) | {m for event in spec.events for m in event.set}

    def down(self, t: float) -> bool:
        return any(window.active(t) for window in self.spec.down)

    def step(self, t: float, current: Callable[[str], Value]) -> dict[str, Value]:
        """The value of every metric the scenario drives, at `t` seconds after the start."""
        overrides: dict[str, Value] = {}
        for event in self.spec.events:
            if event.active(t):
                overrides.update(event.set)  # a later event wins over an earlier one
        values: dict[str, Value] = {}
        for metric in sorted(self.managed):
            behaviour = self.spec.metrics.get(metric)
            if metric in overrides:
                if behaviour is None and metric not in self._saved:
                    self._saved[metric] = current(metric)
                values[metric] = overrides[metric]
            elif behaviour is not None:
                values[metric] = self._evaluate(metric, behaviour, t)
            elif metric in self._saved:
                values[metric] = self._saved.pop(metric)
        return values

    def _evaluate(self, metric: str, behaviour: Behaviour, t: float) -> Value:
        if behaviour.constant is not None:
            return behaviour.constant
        if behaviour.sine is not None:
            s = behaviour.sine
            angle = 2 * math.pi * (t + s.phase) / s.period
            return round(s.min + (s.max - s.min) * (1 + math.sin(angle)) / 2, 4)
        if behaviour.random_walk is not None:
            w = behaviour.random_walk
            value = self._walk[metric] + self._rng.uniform(-w.step, w.step)
            self._walk[metric] = min(w.max, max(w.min, value))
            return round(self._walk[metric], 4)
        assert behaviour.counter is not None
        return round(behaviour.counter.start + behaviour.counter.rate * t, 4)
