"""Device profiles: one YAML file per device model, describing how to read it and when to alarm.

A profile is data. The loader validates every field and reports errors as
`<file>: <field path>: <what is wrong>`, so a broken profile is refused with a message that a
person can act on.
"""

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from contract.common import (
    Category,
    FiniteFloat,
    Identifier,
    Severity,
    Strict,
    Text,
    TicketKind,
    format_validation_errors,
)
from contract.topics import is_slug

DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool", "bit", "string"
]
ByteOrder = Literal["big", "little"]

#: Register tables by name; function codes are accepted too.
TABLE_ALIASES = {
    "coil": "coil", "coils": "coil", 1: "coil", "1": "coil",
    "discrete_input": "discrete_input", "discrete_inputs": "discrete_input", "discrete": "discrete_input",
    2: "discrete_input", "2": "discrete_input",
    "holding_register": "holding_register", "holding_registers": "holding_register", "holding": "holding_register",
    3: "holding_register", "3": "holding_register",
    "input_register": "input_register", "input_registers": "input_register", "input": "input_register",
    4: "input_register", "4": "input_register",
}  # fmt: skip
Table = Literal["coil", "discrete_input", "holding_register", "input_register"]
BIT_TABLES = ("coil", "discrete_input")
REGISTER_COUNT = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
    "float32": 2, "float64": 4, "bool": 1, "bit": 1,
}  # fmt: skip
INTEGER_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")


class ProfileError(ValueError):
    """A profile or gateway config that cannot be used; the message names the file and field."""


class ModbusMetric(Strict):
    """One value read from a Modbus device."""

    name: Identifier
    table: Table
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType
    count: Annotated[int, Field(ge=1, le=123)] | None = None
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    scale: FiniteFloat = 1.0
    offset: FiniteFloat = 0.0
    unit: Annotated[str, Field(max_length=20)] | None = None
    description: Text | None = None

    @field_validator("table", mode="before")
    @classmethod
    def _table_alias(cls, value: object) -> object:
        if isinstance(value, str | int) and value in TABLE_ALIASES:
            return TABLE_ALIASES[value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ModbusMetric":
        if self.table in BIT_TABLES and self.type != "bool":
            raise ValueError(f"a {self.table} holds single bits: type must be 'bool', not {self.type!r}")
        if self.type == "bit" and self.bit is None:
            raise ValueError("type 'bit' needs 'bit' (0-15): which bit of the register")
        if self.bit is not None and self.type != "bit":
            raise ValueError("'bit' is only for type 'bit'")
        if self.type == "string" and self.count is None:
            raise ValueError("type 'string' needs 'count': how many registers the text spans")
        if self.count is not None and self.type != "string":
            raise ValueError(f"'count' is only for type 'string'; {self.type} has a fixed size")
        if self.type in ("bool", "bit", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"'scale' and 'offset' apply to numbers, not to type {self.type!r}")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError("address plus size runs past register 65535")
        return self

    @property
    def register_count(self) -> int:
        if self.table in BIT_TABLES:
            return 1
        if self.type == "string":
            return self.count or 1
        return REGISTER_COUNT[self.type]

    @property
    def value_type(self) -> Literal["number", "integer", "bool", "string"]:
        if self.type in ("bool", "bit"):
            return "bool"
        if self.type == "string":
            return "string"
        if self.type in INTEGER_TYPES and self.scale == 1.0 and self.offset == 0.0:
            return "integer"
        return "number"


class MqttMetric(Strict):
    """One value taken from a JSON payload that a device publishes."""

    name: Identifier
    path: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^.\s][^\s]*$")]
    type: Literal["number", "integer", "bool", "string"] = "number"
    scale: FiniteFloat = 1.0
    offset: FiniteFloat = 0.0
    unit: Annotated[str, Field(max_length=20)] | None = None
    description: Text | None = None

    @property
    def value_type(self) -> Literal["number", "integer", "bool", "string"]:
        return self.type


CONDITIONS = ("above", "below", "equals", "not_equals", "bit_set")


class AlarmRule(Strict):
    """When a metric's value raises an alarm, how bad it is, and what ticket it opens."""

    id: Identifier
    metric: Identifier
    above: FiniteFloat | None = None
    below: FiniteFloat | None = None
    equals: FiniteFloat | bool | str | None = None
    not_equals: FiniteFloat | bool | str | None = None
    bit_set: Annotated[int, Field(ge=0, le=63)] | None = None
    hysteresis: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    hold: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = 0.0
    severity: Severity
    ticket: TicketKind = TicketKind.NONE
    category: Category | None = None
    message: Text = ""

    @model_validator(mode="after")
    def _one_condition(self) -> "AlarmRule":
        given = [c for c in CONDITIONS if getattr(self, c) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one condition of {', '.join(CONDITIONS)}; found {len(given) or 'none'}"
                + (f" ({', '.join(given)})" if given else "")
            )
        if self.hysteresis and given[0] not in ("above", "below"):
            raise ValueError("'hysteresis' applies only to 'above' and 'below'")
        return self

    @property
    def condition(self) -> str:
        return next(c for c in CONDITIONS if getattr(self, c) is not None)

    @property
    def ticket_category(self) -> Category:
        if self.category is not None:
            return self.category
        return Category.SAFETY if self.ticket == TicketKind.SAFETY else Category.FACILITY


#: Register types a command may write: numbers only (a string setpoint is not a thing devices take).
WRITABLE_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")


class CommandParam(Strict):
    """The value a person gives with a command, with the limits the device takes."""

    name: Identifier
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    unit: Annotated[str, Field(max_length=20)] | None = None
    description: Text | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "CommandParam":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class ModbusCommand(Strict):
    """A write the cloud may ask for: set a coil, pulse a coil (a door relay), or write a register.

    The value written is `value` (fixed, for example 1 to reset a fault) or the command's one
    parameter `param` (a setpoint, checked against its limits on both sides). For registers,
    `raw = (value - offset) / scale`, rounded for integer types.
    """

    name: Identifier
    description: Text = ""
    action: Literal["write_coil", "pulse_coil", "write_register"]
    address: Annotated[int, Field(ge=0, le=65535)]
    type: Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"] = "uint16"
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    value: FiniteFloat | bool | None = None
    param: CommandParam | None = None
    scale: FiniteFloat = 1.0
    offset: FiniteFloat = 0.0
    #: Seconds a `pulse_coil` holds the coil on before it is switched off again.
    pulse: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0
    #: Cloud roles allowed to send it (admin always may).
    roles: list[Identifier] = Field(default_factory=lambda: ["admin"], max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> "ModbusCommand":
        if self.scale == 0:
            raise ValueError("'scale' must not be 0")
        if self.action == "pulse_coil":
            if self.param is not None or self.value is not None:
                raise ValueError("'pulse_coil' switches the coil on for 'pulse' seconds: no 'value' or 'param'")
            return self
        if (self.value is None) == (self.param is None):
            raise ValueError(f"'{self.action}' needs exactly one of 'value' (fixed) or 'param' (given by the sender)")
        if self.action == "write_coil":
            if self.value is not None and not isinstance(self.value, bool):
                raise ValueError("'write_coil' writes a bit: 'value' must be true or false")
            if self.param is not None and (self.param.min is not None or self.param.max is not None):
                raise ValueError("'write_coil' takes true or false: its 'param' has no min or max")
        if self.action == "write_register":
            if isinstance(self.value, bool):
                raise ValueError("'write_register' writes a number: 'value' must be a number")
            if self.param is not None and (self.param.min is None or self.param.max is None):
                raise ValueError("a register setpoint needs limits: give 'param.min' and 'param.max'")
            if self.address + REGISTER_COUNT[self.type] - 1 > 65535:
                raise ValueError("address plus size runs past register 65535")
        return self

    @property
    def param_type(self) -> Literal["number", "integer", "bool"]:
        if self.action != "write_register":
            return "bool"
        if self.type in INTEGER_TYPES and self.scale == 1.0 and self.offset == 0.0:
            return "integer"
        return "number"


class _ProfileBase(Strict):
    id: str = ""  # set from the file name by the loader
    name: Text
    manufacturer: Text | None = None
    model: Text | None = None
    description: Text | None = None
    alarms: list[AlarmRule] = Field(default_factory=list)

    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _references(self) -> "_ProfileBase":
        metrics = {m.name: m for m in self.metrics}  # type: ignore[attr-defined]
        if len(metrics) != len(self.metrics):  # type: ignore[attr-defined]
            seen: set[str] = set()
            dup = next(m.name for m in self.metrics if m.name in seen or seen.add(m.name))  # type: ignore[attr-defined,func-returns-value]
            raise ValueError(f"metrics: metric name {dup!r} is used twice")
        rule_ids: set[str] = set()
        for i, rule in enumerate(self.alarms):
            if rule.id in rule_ids:
                raise ValueError(f"alarms[{i}].id: rule id {rule.id!r} is used twice")
            rule_ids.add(rule.id)
            metric = metrics.get(rule.metric)
            if metric is None:
                raise ValueError(f"alarms[{i}].metric: no metric named {rule.metric!r} (metrics: {', '.join(metrics)})")
            kind = metric.value_type
            if rule.condition in ("above", "below") and kind not in ("number", "integer"):
                raise ValueError(f"alarms[{i}]: '{rule.condition}' needs a numeric metric, {rule.metric} is {kind}")
            if rule.condition == "bit_set" and kind != "integer":
                raise ValueError(f"alarms[{i}]: 'bit_set' needs an integer metric, {rule.metric} is {kind}")
        return self


class ModbusProfile(_ProfileBase):
    protocol: Literal["modbus"]
    poll_interval: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] = 5.0
    timeout: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0
    byte_order: ByteOrder = "big"
    word_order: ByteOrder = "big"
    #: Registers of gap that one read may span to merge two neighbouring metrics into one request.
    max_read_gap: Annotated[int, Field(ge=0, le=100)] = 8
    metrics: list[ModbusMetric] = Field(min_length=1)
    commands: list[ModbusCommand] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_commands(self) -> "ModbusProfile":
        seen: set[str] = set()
        for i, command in enumerate(self.commands):
            if command.name in seen:
                raise ValueError(f"commands[{i}].name: command {command.name!r} is defined twice")
            seen.add(command.name)
        return self


class MqttProfile(_ProfileBase):
    protocol: Literal["mqtt"]
    #: Seconds without a message after which the device counts as offline (0: never).
    offline_after: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    metrics: list[MqttMetric] = Field(min_length=1)


DeviceProfile = ModbusProfile | MqttProfile
_profile_adapter: TypeAdapter[DeviceProfile] = TypeAdapter(
    Annotated[ModbusProfile | MqttProfile, Field(discriminator="protocol")]
)


def read_yaml(path: Path) -> object:
    """Parse a YAML file, turning every failure into a ProfileError that names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(f"{path}: not valid YAML{where}: {problem}") from None


def parse_profile(data: object, *, profile_id: str, source: str) -> DeviceProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: (document): a profile is a mapping of fields, got {type(data).__name__}")
    if "protocol" not in data:
        raise ProfileError(f"{source}: protocol: missing; say 'modbus' or 'mqtt'")
    if data.get("protocol") not in ("modbus", "mqtt"):
        raise ProfileError(f"{source}: protocol: {data.get('protocol')!r} is not one of 'modbus', 'mqtt'")
    try:
        profile = _profile_adapter.validate_python(data)
    except ValidationError as exc:
        detail = format_validation_errors(exc.errors(include_url=False), drop_union_tags=("modbus", "mqtt"))
        raise ProfileError(f"{source}: {detail}") from None
    return profile.model_copy(update={"id": profile_id})


def load_profile(path: str | Path) -> DeviceProfile:
    path = Path(path)
    if not is_slug(path.stem):
        raise ProfileError(f"{path}: file name: the profile id is the file name, and {path.stem!r} is not a slug")
    return parse_profile(read_yaml(path), profile_id=path.stem, source=str(path))


def load_profiles(directory: str | Path) -> dict[str, DeviceProfile]:
    """Every `*.yaml` profile in a directory, by id; all errors at once, one per line."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ProfileError(f"{directory}: profile directory does not exist")
    profiles: dict[str, DeviceProfile] = {}
    errors: list[str] = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            profiles[path.stem] = load_profile(path)
        except ProfileError as exc:
            errors.append(str(exc))
    if errors:
        raise ProfileError("\n".join(errors))
    return profiles
