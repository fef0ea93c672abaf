"""Evaluate a device's alarm rules on every reading, at the edge, so alarms work while the cloud is away.

A rule is raised when its condition has held for `hold` seconds and cleared when it no longer
holds; `above`/`below` clear only past the threshold minus (plus) the hysteresis, so a value
hovering at the threshold does not raise and clear on every poll. A device that goes offline
keeps its alarms: silence is not a fix.

After a start the agent does not know what the cloud last heard (an alarm raised before a
restart may have ended while the agent was down), so every rule starts *unknown*: the first
reading that clearly does not meet the condition sends a `clear`, which the cloud ignores when
it holds no such alarm. Nothing is left raised in the cloud by a restart.
"""

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from contract.clock import Clock
from contract.common import Value
from contract.profiles import AlarmRule

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Transition:
    """A rule began (`raise`) or ended (`clear`) on a device, with the value that did it."""

    device: str
    rule: AlarmRule
    action: Literal["raise", "clear"]
    value: Value
    message: str


def format_message(template: str, fields: Mapping[str, object]) -> str:
    """Fill `{name}` placeholders from `fields`; anything else, broken braces too, stays as written.

    No str.format: a profile's text must never reach attributes (`{value.__class__}`) or fail.
    """
    return _PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]) if m.group(1) in fields else m.group(0), template)


def _number(value: Value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _same(value: Value, target: float | bool | str) -> bool:
    """Equality that keeps kinds apart: true is not 1, and "3" is not 3."""
    if isinstance(target, bool) or isinstance(value, bool):
        return isinstance(target, bool) and isinstance(value, bool) and value == target
    if isinstance(target, str) or isinstance(value, str):
        return isinstance(target, str) and isinstance(value, str) and value == target
    return float(value) == float(target)


class _RuleState:
    __slots__ = ("active", "pending_since")

    def __init__(self) -> None:
        #: None until the first reading settles it (see the module's docstring)
        self.active: bool | None = None
        self.pending_since: float | None = None


class DeviceRules:
    """The alarm rules of one device and where each stands."""

    def __init__(
        self, device: str, rules: list[AlarmRule], clock: Clock, units: Mapping[str, str] | None = None
    ) -> None:
        self.device = device
        self.rules = rules
        self.clock = clock
        self.units = dict(units or {})
        self._state = {rule.id: _RuleState() for rule in rules}
        self._warned: set[str] = set()

    def active(self) -> set[str]:
        """Ids of the rules raised now."""
        return {rule_id for rule_id, state in self._state.items() if state.active is True}

    def evaluate(self, values: Mapping[str, Value]) -> list[Transition]:
        """Feed one reading; the raises and clears it causes. Rules whose metric is absent keep their state."""
        now = self.clock.monotonic()
        transitions: list[Transition] = []
        for rule in self.rules:
            if rule.metric not in values:
                continue
            value = values[rule.metric]
            state = self._state[rule.id]
            if state.active:
                if self._clears(rule, value):
                    state.active = False
                    state.pending_since = None
                    transitions.append(self._transition(rule, "clear", value))
                continue
            if not self._raises(rule, value):
                state.pending_since = None
                if state.active is None and self._clears(rule, value):
                    state.active = False  # settled: tell the cloud, in case it still holds it raised
                    transitions.append(self._transition(rule, "clear", value))
                continue
            if state.pending_since is None:
                state.pending_since = now
            if now - state.pending_since >= rule.hold:
                state.active = True
                state.pending_since = None
                transitions.append(self._transition(rule, "raise", value))
        return transitions

    def _raises(self, rule: AlarmRule, value: Value) -> bool:
        condition = rule.condition
        if condition in ("equals", "not_equals"):
            target = getattr(rule, condition)
            return _same(value, target) == (condition == "equals")
        number = _number(value)
        if number is None:
            self._warn_type(rule, value)
            return False
        if condition == "above":
            return number > rule.above  # type: ignore[operator]
        if condition == "below":
            return number < rule.below  # type: ignore[operator]
        return (int(number) >> (rule.bit_set or 0)) & 1 == 1

    def _clears(self, rule: AlarmRule, value: Value) -> bool:
        number = _number(value)
        if rule.condition == "above" and number is not None:
            return number < rule.above - rule.hysteresis  # type: ignore[operator]
        if rule.condition == "below" and number is not None:
            return number > rule.below + rule.hysteresis  # type: ignore[operator]
        if rule.condition in ("above", "below", "bit_set") and number is None:
            self._warn_type(rule, value)
            return False
        return not self._raises(rule, value)

    def _transition(self, rule: AlarmRule, action: Literal["raise", "clear"], value: Value) -> Transition:
        unit = self.units.get(rule.metric, "")
        fields = {"device": self.device, "value": value, "metric": rule.metric, "rule": rule.id, "unit": unit}
        template = rule.message or "{rule} on {device}: {metric} = {value}"
        text = format_message(template, fields)
        if action == "clear":
            text = f"cleared: {text}"
        log.info("device %s rule %s: %s (metric %s = %r)", self.device, rule.id, action, rule.metric, value)
        return Transition(device=self.device, rule=rule, action=action, value=value, message=text[:500])

    def _warn_type(self, rule: AlarmRule, value: Value) -> None:
        if rule.id not in self._warned:
            self._warned.add(rule.id)
            log.warning(
                "device %s rule %s: metric %s is %r, not a number; the rule ignores it",
                self.device, rule.id, rule.metric, value,
            )  # fmt: skip
