"""Alarm rules at the edge, on a clock the test moves."""

from typing import Any

from contract.clock import ManualClock
from contract.profiles import AlarmRule
from edge.rules import DeviceRules, format_message


def rule(**fields: Any) -> AlarmRule:
    base: dict[str, Any] = {"id": "r", "metric": "x", "severity": "major"}
    return AlarmRule.model_validate(base | fields)


def actions(rules: DeviceRules, *values: Any, metric: str = "x") -> list[str]:
    out: list[str] = []
    for value in values:
        out += [t.action for t in rules.evaluate({metric: value})]
    return out


def test_above_with_hysteresis_clears_only_below_threshold_minus_hysteresis() -> None:
    rules = DeviceRules("pump-1", [rule(above=8, hysteresis=0.5)], ManualClock())
    assert actions(rules, 7.9, 8.0) == []  # 8 is not above 8
    assert actions(rules, 8.1) == ["raise"]
    assert actions(rules, 9.0, 7.9, 7.5) == []  # 7.5 is not below 7.5
    assert rules.active() == {"r"}
    assert actions(rules, 7.49) == ["clear"]
    assert actions(rules, 8.01) == ["raise"]


def test_below_with_hysteresis() -> None:
    rules = DeviceRules("pump-1", [rule(below=2.5, hysteresis=0.3)], ManualClock())
    assert actions(rules, 2.6, 2.4, 2.7, 2.8) == ["raise"]
    assert actions(rules, 2.81) == ["clear"]


def test_hold_raises_only_after_the_condition_persisted() -> None:
    clock = ManualClock()
    rules = DeviceRules("pump-1", [rule(below=2.5, hold=10)], clock)
    assert actions(rules, 2.0) == []
    clock.advance(9)
    assert actions(rules, 2.0) == []
    clock.advance(1)
    assert actions(rules, 2.1) == ["raise"]
    assert actions(rules, 2.0) == []  # raised once, not again


def test_hold_restarts_when_the_condition_lapses() -> None:
    clock = ManualClock()
    rules = DeviceRules("pump-1", [rule(below=2.5, hold=10)], clock)
    assert actions(rules, 3.0) == ["clear"]  # the start state, settled
    actions(rules, 2.0)
    clock.advance(6)
    assert actions(rules, 3.0) == []  # lapsed: the hold starts over
    clock.advance(6)
    assert actions(rules, 2.0) == []
    clock.advance(9)
    assert actions(rules, 2.0) == []
    clock.advance(1)
    assert actions(rules, 2.0) == ["raise"]


def test_equals_keeps_flags_and_numbers_apart() -> None:
    flag = DeviceRules("lift", [rule(metric="trapped", equals=True)], ManualClock())
    assert actions(flag, 1, metric="trapped") == ["clear"]  # 1 is not true: settled as clear
    assert actions(flag, True, metric="trapped") == ["raise"]
    assert actions(flag, False, metric="trapped") == ["clear"]
    number = DeviceRules("lift", [rule(metric="door", equals=4)], ManualClock())
    assert actions(number, 3, 4.0, 4, 0, metric="door") == ["clear", "raise", "clear"]
    text = DeviceRules("x", [rule(metric="mode", equals="fault")], ManualClock())
    assert actions(text, "ok", "fault", metric="mode") == ["clear", "raise"]


def test_not_equals() -> None:
    rules = DeviceRules("pump-1", [rule(metric="fault_code", not_equals=0, severity="critical")], ManualClock())
    assert actions(rules, 0, 3, 5, 0, metric="fault_code") == ["clear", "raise", "clear"]


def test_bit_set_watches_one_bit() -> None:
    rules = DeviceRules("panel", [rule(metric="faults", bit_set=2)], ManualClock())
    assert actions(rules, 0b011, 0b100, 0b111, 0b011, metric="faults") == ["clear", "raise", "clear"]


def test_a_reading_without_the_metric_changes_nothing() -> None:
    rules = DeviceRules("pump-1", [rule(above=8)], ManualClock())
    assert actions(rules, 9) == ["raise"]
    assert rules.evaluate({"other": 1}) == []
    assert rules.active() == {"r"}


def test_a_non_numeric_value_is_ignored_by_a_threshold_rule() -> None:
    rules = DeviceRules("pump-1", [rule(above=8)], ManualClock())
    assert actions(rules, "high", True) == []
    assert actions(rules, 9) == ["raise"]
    assert actions(rules, "low") == []
    assert rules.active() == {"r"}


def test_transitions_carry_value_and_message() -> None:
    r = rule(metric="fault_code", not_equals=0, message="Pump {device} reports fault code {value}")
    (raised,) = DeviceRules("pump-1", [r], ManualClock()).evaluate({"fault_code": 3})
    assert raised.value == 3
    assert raised.message == "Pump pump-1 reports fault code 3"
    assert raised.rule is r and raised.device == "pump-1"


def test_messages_are_formatted_safely() -> None:
    fields = {"device": "pump-1", "value": 3}
    assert format_message("{device} at {value}", fields) == "pump-1 at 3"
    assert format_message("{value.__class__} {unknown} {", fields) == "{value.__class__} {unknown} {"
    assert format_message("{0} {}", fields) == "{0} {}"


def test_rules_are_independent_of_each_other() -> None:
    rules = DeviceRules("pump-1", [rule(id="high", above=8), rule(id="low", below=2)], ManualClock())
    assert [(t.rule.id, t.action) for t in rules.evaluate({"x": 9})] == [("high", "raise"), ("low", "clear")]
    assert [(t.rule.id, t.action) for t in rules.evaluate({"x": 1})] == [("high", "clear"), ("low", "raise")]


def test_the_first_clear_reading_after_a_start_says_clear_once() -> None:
    """After a restart the cloud may still hold an alarm raised before it: the agent settles it."""
    rules = DeviceRules("pump-1", [rule(above=8, hysteresis=0.5)], ManualClock())
    assert actions(rules, 7.8) == []  # within the hysteresis band: not settled either way
    assert rules.active() == set()
    assert actions(rules, 7.0) == ["clear"]  # clearly clear: told once
    assert actions(rules, 6.0, 7.0) == []
    assert actions(rules, 9.0) == ["raise"]
