"""The simulation scenario file: how each metric of each device moves, and what happens when.

    gateway_config: demo-site.yaml        # relative to this file
    tick: 0.5                             # seconds between updates
    seed: 7                               # makes random walks repeatable
    devices:
      pump-1:
        metrics:
          outlet_pressure: {sine: {min: 3.9, max: 4.4, period: 90}}
          running: true                   # a bare value is a constant
        events:
          - {at: 20, for: 30, set: {fault_code: 3}}
        down:
          - {at: 120, for: 20}

Errors name the file and the field, like profile errors.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, ValidationError, model_validator

from contract.common import DeviceName, FiniteFloat, Identifier, Strict, Value, format_validation_errors
from contract.gateway_config import LoadedGatewayConfig, load_gateway_config
from contract.profiles import DeviceProfile, ModbusMetric, ModbusProfile, ProfileError, read_yaml
from edge.drivers.modbus.codec import EncodeError, encode, orders

PositiveSeconds = Annotated[float, Field(gt=0, le=86400 * 365, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=86400 * 365, allow_inf_nan=False)]


class ScenarioError(ProfileError):
    """A scenario that cannot run; the message names the file and the field."""


class Sine(Strict):
    min: FiniteFloat
    max: FiniteFloat
    period: PositiveSeconds
    #: Seconds into the period at t = 0.
    phase: Seconds = 0.0


class RandomWalk(Strict):
    start: FiniteFloat
    #: Largest change per tick, either way.
    step: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    min: FiniteFloat
    max: FiniteFloat


class Counter(Strict):
    start: FiniteFloat = 0.0
    #: Increase per second.
    rate: FiniteFloat


class Behaviour(Strict):
    """Exactly one of: a constant, a sine, a random walk, a counter."""

    constant: Value | None = None
    sine: Sine | None = None
    random_walk: RandomWalk | None = None
    counter: Counter | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_value_is_constant(cls, data: object) -> object:
        return data if isinstance(data, dict) else {"constant": data}

    @model_validator(mode="after")
    def _exactly_one(self) -> "Behaviour":
        given = [k for k in ("constant", "sine", "random_walk", "counter") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of constant, sine, random_walk, counter; found {given or 'none'}")
        for name in ("sine", "random_walk"):
            spec = getattr(self, name)
            if spec is not None and spec.min > spec.max:
                raise ValueError(f"{name}: min {spec.min} is above max {spec.max}")
        return self

    @property
    def numeric(self) -> bool:
        return self.constant is None


class Window(Strict):
    """From `at` seconds after the start, for `for` seconds, again every `every` seconds."""

    model_config = ConfigDict(populate_by_name=True)

    at: Seconds = 0.0
    duration: PositiveSeconds | None = Field(None, alias="for")
    every: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _period_fits(self) -> "Window":
        if self.every is not None and self.duration is None:
            raise ValueError("'every' needs 'for': how long each repetition lasts")
        if self.every is not None and self.duration is not None and self.duration >= self.every:
            raise ValueError(f"'for' ({self.duration:g}) must be shorter than 'every' ({self.every:g})")
        return self

    def active(self, t: float) -> bool:
        if t < self.at:
            return False
        if self.duration is None:
            return True
        since = t - self.at
        if self.every is not None:
            since %= self.every
        return since < self.duration


class TimedEvent(Window):
    """While the window lasts, the metrics in `set` hold these values; afterwards they return."""

    set: dict[Identifier, Value] = Field(min_length=1)


class DeviceScenario(Strict):
    metrics: dict[Identifier, Behaviour] = Field(default_factory=dict)
    events: list[TimedEvent] = Field(default_factory=list)
    #: Windows in which the device does not answer (Modbus) or publishes nothing (MQTT).
    down: list[Window] = Field(default_factory=list)
    #: MQTT devices: seconds between two messages (they also publish when a flag changes).
    publish_interval: PositiveSeconds = 5.0


class Scenario(Strict):
    gateway_config: str
    tick: Annotated[float, Field(ge=0.05, le=60, allow_inf_nan=False)] = 0.5
    seed: int | None = None
    devices: dict[DeviceName, DeviceScenario] = Field(default_factory=dict)


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    gateway: LoadedGatewayConfig
    path: Path


def _check_value(field: str, profile: DeviceProfile, metric: str, value: Value, numeric_only: bool) -> str | None:
    found = next((m for m in profile.metrics if m.name == metric), None)
    if found is None:
        return f"{field}: no metric {metric!r} in profile {profile.id} (metrics: {', '.join(profile.metric_names())})"
    kind = found.value_type
    if numeric_only and kind not in ("number", "integer"):
        return f"{field}: sine, random_walk and counter need a numeric metric; {metric} is {kind}"
    if numeric_only:
        return None
    if kind == "bool" and not isinstance(value, bool):
        return f"{field}: {metric} is a flag; give true or false, not {value!r}"
    if kind == "string" and not isinstance(value, str):
        return f"{field}: {metric} is a text; give a quoted string, not {value!r}"
    if kind in ("number", "integer") and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{field}: {metric} is a number; give a number, not {value!r}"
    if isinstance(profile, ModbusProfile) and isinstance(found, ModbusMetric):
        try:  # the registers must hold it: a uint16 cannot be -1, a string has `count` registers
            encode(found, value, *orders(found, profile))
        except EncodeError as exc:
            return f"{field}: {str(exc).removeprefix(found.name + ': ')}"
    return None


def _cross_check(scenario: Scenario, gateway: LoadedGatewayConfig) -> list[str]:
    devices = {d.name: d for d in gateway.config.devices}
    errors: list[str] = []
    for name, spec in scenario.devices.items():
        device = devices.get(name)
        if device is None:
            errors.append(f"devices.{name}: no device {name!r} in {gateway.path} (devices: {', '.join(devices)})")
            continue
        profile = gateway.profile_of(device)
        for metric, behaviour in spec.metrics.items():
            value = behaviour.constant if behaviour.constant is not None else 0.0
            problem = _check_value(f"devices.{name}.metrics.{metric}", profile, metric, value, behaviour.numeric)
            if problem:
                errors.append(problem)
        for i, event in enumerate(spec.events):
            for metric, value in event.set.items():
                problem = _check_value(f"devices.{name}.events[{i}].set.{metric}", profile, metric, value, False)
                if problem:
                    errors.append(problem)
    return errors


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read and check a scenario and the gateway config it names; ScenarioError on any problem."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: (document): a scenario is a mapping, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {format_validation_errors(exc.errors(include_url=False))}") from None
    gateway_path = (path.resolve().parent / scenario.gateway_config).resolve()
    if not gateway_path.is_file():
        raise ScenarioError(f"{path}: gateway_config: no file {gateway_path}")
    gateway = load_gateway_config(gateway_path)
    errors = _cross_check(scenario, gateway)
    if errors:
        raise ScenarioError("\n".join(f"{path}: {e}" for e in errors))
    return LoadedScenario(scenario=scenario, gateway=gateway, path=path)
