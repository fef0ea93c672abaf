"""Turn Modbus registers and bits into metric values and back, as a profile describes them.

Byte order is the order of the two bytes inside each 16-bit register; word order is the order
of the registers of a 32- or 64-bit value. The canonical form is big/big: the value's bytes
A B C D travel as registers [AB, CD]; word order little gives [CD, AB], byte order little gives
[BA, DC], both little give [DC, BA]. The simulator writes registers with `encode`, the agent reads
them with `decode`, so the two cannot disagree about a layout.
"""

import logging
import math
import struct
from collections.abc import Iterable, Sequence

from contract.common import Value
from contract.profiles import BIT_TABLES, ByteOrder, ModbusCommand, ModbusMetric, ModbusProfile

log = logging.getLogger(__name__)

#: struct format characters (big-endian) for the fixed-size numeric types.
_STRUCT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}  # fmt: skip
_FLOAT_DIGITS = {"float32": 7, "float64": 15}


class EncodeError(ValueError):
    """A value that does not fit the metric's register layout."""


def orders(metric: ModbusMetric, profile: ModbusProfile) -> tuple[ByteOrder, ByteOrder]:
    """The metric's byte and word order: its own when given, else the profile's."""
    return metric.byte_order or profile.byte_order, metric.word_order or profile.word_order


def _swap(register: int) -> int:
    return ((register & 0xFF) << 8) | (register >> 8)


def registers_to_bytes(registers: Sequence[int], byte_order: ByteOrder, word_order: ByteOrder) -> bytes:
    """The value's bytes, most significant first, from registers in the device's layout."""
    regs = list(registers)[::-1] if word_order == "little" else list(registers)
    if byte_order == "little":
        regs = [_swap(r) for r in regs]
    return b"".join(r.to_bytes(2, "big") for r in regs)


def bytes_to_registers(data: bytes, byte_order: ByteOrder, word_order: ByteOrder) -> list[int]:
    """The inverse of `registers_to_bytes`."""
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byte_order == "little":
        regs = [_swap(r) for r in regs]
    return regs[::-1] if word_order == "little" else regs


def _scaled(raw: int | float, metric: ModbusMetric) -> int | float:
    if metric.scale == 1.0 and metric.offset == 0.0:
        return raw
    # Twelve significant digits drop binary noise such as 123 * 0.1 = 12.300000000000001.
    return float(f"{raw * metric.scale + metric.offset:.12g}")


def decode(
    metric: ModbusMetric, raw: Sequence[int] | Sequence[bool], byte_order: ByteOrder, word_order: ByteOrder
) -> Value | float:
    """One metric's value from its own registers (or its one bit); may be NaN or infinite for floats."""
    if metric.table in BIT_TABLES:
        return bool(raw[0])
    regs = [int(r) for r in raw[: metric.register_count]]
    if len(regs) != metric.register_count:
        raise ValueError(f"{metric.name}: needs {metric.register_count} registers, got {len(regs)}")
    if metric.type == "bool":
        return regs[0] != 0
    if metric.type == "bit":
        value = _swap(regs[0]) if byte_order == "little" else regs[0]
        return bool((value >> (metric.bit or 0)) & 1)
    if metric.type == "string":
        data = registers_to_bytes(regs, byte_order, "big")
        return data.replace(b"\x00", b"").decode("utf-8", errors="replace").rstrip()
    (number,) = struct.unpack(">" + _STRUCT[metric.type], registers_to_bytes(regs, byte_order, word_order))
    if isinstance(number, float):
        if not math.isfinite(number):
            return number
        # A float32 carries about 7 significant digits; more would be noise (4.2 reads as 4.19999980…).
        number = float(f"{number:.{_FLOAT_DIGITS[metric.type]}g}")
    return _scaled(number, metric)


def encode(
    metric: ModbusMetric,
    value: Value,
    byte_order: ByteOrder,
    word_order: ByteOrder,
    current: Sequence[int] | None = None,
) -> list[int] | list[bool]:
    """The registers (or the one bit) that make `decode` return `value`.

    Type `bit` changes one bit of a register and keeps the others, so it needs the register's
    `current` content.
    """
    if metric.table in BIT_TABLES:
        return [bool(value)]
    if metric.type == "bool":
        return [1 if value else 0]
    if metric.type == "bit":
        reg = int(current[0]) if current else 0
        logical = _swap(reg) if byte_order == "little" else reg
        mask = 1 << (metric.bit or 0)
        logical = logical | mask if value else logical & ~mask
        return [_swap(logical) if byte_order == "little" else logical]
    if metric.type == "string":
        data = str(value).encode("utf-8")
        size = 2 * metric.register_count
        if len(data) > size:
            raise EncodeError(f"{metric.name}: {value!r} is longer than {size} bytes")
        return bytes_to_registers(data.ljust(size, b"\x00"), byte_order, "big")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(f"{metric.name}: {value!r} is not a number")
    unscaled = metric.scale == 1.0 and metric.offset == 0.0
    # Integers stay integers when unscaled: a float would lose the low bits of a 64-bit value.
    raw: int | float = value if unscaled else (value - metric.offset) / metric.scale
    if metric.type.startswith(("int", "uint")):
        if not math.isfinite(raw):
            raise EncodeError(f"{metric.name}: {value!r} is not a finite number")
        raw = round(raw)
    try:
        data = struct.pack(">" + _STRUCT[metric.type], raw)
    except (struct.error, OverflowError):
        raise EncodeError(f"{metric.name}: {value!r} does not fit a {metric.type}") from None
    return bytes_to_registers(data, byte_order, word_order)


def decode_span(
    device: str,
    profile: ModbusProfile,
    metrics: Iterable[ModbusMetric],
    start: int,
    data: Sequence[int] | Sequence[bool],
) -> dict[str, Value]:
    """The values of `metrics` from one block of `data` read at address `start`.

    A float that decodes to NaN or infinity is left out (the contract carries finite numbers
    only) with a log line naming the device and the metric.
    """
    values: dict[str, Value] = {}
    for metric in metrics:
        offset = metric.address - start
        raw = data[offset : offset + metric.register_count]
        value = decode(metric, raw, *orders(metric, profile))
        if isinstance(value, float) and not math.isfinite(value):
            log.warning(
                "device %s metric %s: %s register %d decodes to %s; left out of the reading",
                device, metric.name, metric.table, metric.address, value,
            )  # fmt: skip
            continue
        values[metric.name] = value
    return values


def command_metric(command: ModbusCommand) -> ModbusMetric:
    """The register layout a `write_register` command writes, as a metric, so `encode`/`decode` serve both."""
    return ModbusMetric(
        name=command.name,
        table="holding_register",
        address=command.address,
        type=command.type,
        byte_order=command.byte_order,
        word_order=command.word_order,
        scale=command.scale,
        offset=command.offset,
    )


def encode_command(command: ModbusCommand, value: int | float, profile: ModbusProfile) -> list[int]:
    """The registers a `write_register` command writes for `value`: `raw = (value - offset) / scale`.

    Raises EncodeError when the value does not fit the command's type.
    """
    metric = command_metric(command)
    registers = encode(metric, value, *orders(metric, profile))
    return [int(r) for r in registers]
