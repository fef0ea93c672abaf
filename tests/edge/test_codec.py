"""Decoding every data type in every byte and word order, read through a real pymodbus server.

The reference layout comes from pymodbus's own `convert_to_registers` (big-endian bytes in each
register, either word order), with the two bytes of every register swapped for byte order
little; our codec is checked against it, not against itself.
"""

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from community.broker import free_port
from contract.common import Value
from contract.gateway_config import DeviceConfig, ModbusAddress
from contract.profiles import ModbusProfile, parse_profile
from edge.drivers.modbus.codec import EncodeError, bytes_to_registers, decode, encode, registers_to_bytes
from edge.drivers.modbus.poller import ModbusPoller
from simulator.modbus_server import SimulatedModbusDevice, SimulatedModbusServer
from tests.edge.conftest import RecordingSink

ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
DT = AsyncModbusTcpClient.DATATYPE
SAMPLES: dict[str, tuple[Any, Any]] = {
    # type: (value, pymodbus DATATYPE)
    "int16": (-12345, DT.INT16),
    "uint16": (54321, DT.UINT16),
    "int32": (-123456789, DT.INT32),
    "uint32": (0x12345678, DT.UINT32),
    "int64": (-1234567890123456789, DT.INT64),
    "uint64": (0xFEDCBA9876543210, DT.UINT64),
    "float32": (-1234.5, DT.FLOAT32),
    "float64": (12345.678901234, DT.FLOAT64),
}


def swap_bytes(registers: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in registers]


def reference_registers(type_name: str, byte_order: str, word_order: str) -> list[int]:
    value, datatype = SAMPLES[type_name]
    regs = AsyncModbusTcpClient.convert_to_registers(value, datatype, word_order=word_order)  # type: ignore[arg-type]
    return swap_bytes(regs) if byte_order == "little" else regs


def codec_profile() -> ModbusProfile:
    """Every numeric type in every order in holding registers, plus the single-register and bit kinds."""
    metrics: list[dict[str, Any]] = []
    address = 0
    for type_name in SAMPLES:
        for byte_order, word_order in ORDERS:
            metrics.append(
                {
                    "name": f"{type_name}_{byte_order[0]}{word_order[0]}",
                    "table": "holding_register",
                    "address": address,
                    "type": type_name,
                    "byte_order": byte_order,
                    "word_order": word_order,
                }
            )
            address += {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}.get(type_name, 4)
    metrics += [
        {"name": "flag_register", "table": "holding_register", "address": 100, "type": "bool"},
        {"name": "bit_3", "table": "holding_register", "address": 101, "type": "bit", "bit": 3},
        {"name": "bit_12", "table": "holding_register", "address": 101, "type": "bit", "bit": 12},
        {"name": "bit_3_little", "table": "holding_register", "address": 102, "type": "bit", "bit": 3,
         "byte_order": "little"},
        {"name": "text_big", "table": "holding_register", "address": 110, "type": "string", "count": 5},
        {"name": "text_little", "table": "holding_register", "address": 120, "type": "string", "count": 5,
         "byte_order": "little"},
        {"name": "temperature", "table": "input_register", "address": 0, "type": "int16", "scale": 0.1,
         "offset": -40, "unit": "°C"},
        {"name": "level", "table": "input_register", "address": 1, "type": "float32"},
        {"name": "coil_flag", "table": "coil", "address": 19, "type": "bool"},
        {"name": "input_flag", "table": "discrete_input", "address": 7, "type": "bool"},
    ]  # fmt: skip
    profile = parse_profile(
        {"name": "Codec test", "protocol": "modbus", "timeout": 2.0, "metrics": metrics},
        profile_id="codec-test",
        source="codec-test.yaml",
    )
    assert isinstance(profile, ModbusProfile)
    return profile


def read_through_server(profile: ModbusProfile, prepare: Callable[[SimulatedModbusDevice], None]) -> dict[str, Value]:
    """Serve a simulated device prepared by `prepare`, poll it once with the edge's poller."""

    async def run() -> dict[str, Value]:
        port = free_port()
        device = SimulatedModbusDevice("codec-1", 7, profile)
        prepare(device)
        server = SimulatedModbusServer("127.0.0.1", port, [device])
        await server.start()
        config = DeviceConfig(
            name="codec-1", profile=profile.id, modbus=ModbusAddress(host="127.0.0.1", port=port, unit=7)
        )
        poller = ModbusPoller(config, profile, RecordingSink())
        try:
            _ts, values = await poller.poll_once()
        finally:
            poller.close()
            await server.stop()
        return values

    return asyncio.run(run())


def test_uint32_layouts_match_the_documented_table() -> None:
    value = (0x12345678).to_bytes(4, "big")
    assert bytes_to_registers(value, "big", "big") == [0x1234, 0x5678]
    assert bytes_to_registers(value, "big", "little") == [0x5678, 0x1234]
    assert bytes_to_registers(value, "little", "big") == [0x3412, 0x7856]
    assert bytes_to_registers(value, "little", "little") == [0x7856, 0x3412]
    for byte_order, word_order in ORDERS:
        assert registers_to_bytes(bytes_to_registers(value, byte_order, word_order), byte_order, word_order) == value


def test_every_type_and_order_decodes_from_reference_registers() -> None:
    profile = codec_profile()

    def prepare(device: SimulatedModbusDevice) -> None:
        for metric in profile.metrics:
            type_name = metric.type
            if metric.table == "holding_register" and type_name in SAMPLES:
                device.set_registers(
                    "holding_register",
                    metric.address,
                    reference_registers(type_name, metric.byte_order or "big", metric.word_order or "big"),
                )
        device.set_registers("holding_register", 100, [0x0100])  # any non-zero register is true
        device.set_registers("holding_register", 101, [1 << 12])  # bit 12 set, bit 3 clear
        device.set_registers("holding_register", 102, [1 << 11])  # byte-swapped: logical bit 3
        # "Pump A" in five registers, NUL padded; then the same bytes swapped in every register.
        device.set_registers("holding_register", 110, [0x5075, 0x6D70, 0x2041, 0x2000, 0x0000])
        device.set_registers("holding_register", 120, [0x7550, 0x706D, 0x4120, 0x0020, 0x0000])
        device.set_registers("input_register", 0, [655])  # 655 * 0.1 - 40 = 25.5
        device.set_registers("input_register", 1, AsyncModbusTcpClient.convert_to_registers(2.75, DT.FLOAT32))
        device.set_registers("coil", 19, [True])
        device.set_registers("discrete_input", 7, [True])

    values = read_through_server(profile, prepare)

    for type_name, (expected, _dt) in SAMPLES.items():
        for byte_order, word_order in ORDERS:
            name = f"{type_name}_{byte_order[0]}{word_order[0]}"
            assert values[name] == expected, name
            assert type(values[name]) is type(expected), name
    assert values["flag_register"] is True
    assert values["bit_3"] is False
    assert values["bit_12"] is True
    assert values["bit_3_little"] is True
    assert values["text_big"] == "Pump A"
    assert values["text_little"] == "Pump A"
    assert values["temperature"] == pytest.approx(25.5)
    assert values["level"] == 2.75
    assert values["coil_flag"] is True
    assert values["input_flag"] is True


def test_encode_writes_the_reference_layout_and_reads_back_through_the_server() -> None:
    profile = codec_profile()
    wanted: dict[str, Value] = {f"{t}_{b[0]}{w[0]}": SAMPLES[t][0] for t in SAMPLES for b, w in ORDERS}
    wanted |= {
        "flag_register": True, "bit_3": True, "bit_12": True, "bit_3_little": True,
        "text_big": "Lift 2", "text_little": "Lift 2", "temperature": -12.3, "level": 0.1,
        "coil_flag": True, "input_flag": True,
    }  # fmt: skip
    seen_registers: dict[str, list[int]] = {}

    def prepare(device: SimulatedModbusDevice) -> None:
        for name, value in wanted.items():
            device.set(name, value)
        for metric in profile.metrics:
            if metric.table == "holding_register" and metric.type in SAMPLES:
                seen_registers[metric.name] = device.registers(
                    "holding_register", metric.address, metric.register_count
                )

    values = read_through_server(profile, prepare)

    assert values == wanted
    for metric in profile.metrics:
        if metric.name in seen_registers:
            expected = reference_registers(metric.type, metric.byte_order or "big", metric.word_order or "big")
            assert seen_registers[metric.name] == expected, metric.name
    # Both bits live in one register: setting the second kept the first.
    assert values["bit_3"] is True and values["bit_12"] is True


def test_a_float_that_decodes_to_nan_is_left_out_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    profile = codec_profile()
    float32_bb = next(m for m in profile.metrics if m.name == "float32_bb")

    def prepare(device: SimulatedModbusDevice) -> None:
        device.set("float32_bl", -1.0)
        device.set_registers("holding_register", float32_bb.address, [0x7FC0, 0x0000])  # a quiet NaN

    with caplog.at_level(logging.WARNING, logger="edge.drivers.modbus.codec"):
        values = read_through_server(profile, prepare)
    assert "float32_bb" not in values
    assert values["float32_bl"] == -1.0
    assert any("codec-1" in r.getMessage() and "float32_bb" in r.getMessage() for r in caplog.records)


def test_scale_keeps_integers_whole_only_when_unscaled() -> None:
    profile = codec_profile()
    by_name = {m.name: m for m in profile.metrics}
    raw = encode(by_name["int16_bb"], 42, "big", "big")
    assert decode(by_name["int16_bb"], raw, "big", "big") == 42
    assert isinstance(decode(by_name["int16_bb"], raw, "big", "big"), int)
    scaled = decode(by_name["temperature"], [655], "big", "big")
    assert isinstance(scaled, float) and scaled == 25.5


def test_strings_lose_nuls_and_trailing_spaces() -> None:
    profile = codec_profile()
    text = next(m for m in profile.metrics if m.name == "text_big")
    assert decode(text, [0x4142, 0x2020, 0x0000, 0x0000, 0x0000], "big", "big") == "AB"
    assert decode(text, [0x0041, 0x4200, 0x0000, 0x0000, 0x0000], "big", "big") == "AB"


def test_encode_refuses_values_that_do_not_fit() -> None:
    profile = codec_profile()
    by_name = {m.name: m for m in profile.metrics}
    with pytest.raises(EncodeError, match="uint16_bb"):
        encode(by_name["uint16_bb"], -1, "big", "big")
    with pytest.raises(EncodeError, match="int16_bb"):
        encode(by_name["int16_bb"], 40000, "big", "big")
    with pytest.raises(EncodeError, match="text_big"):
        encode(by_name["text_big"], "eleven characters", "big", "big")
    with pytest.raises(EncodeError, match="float32_bb"):
        encode(by_name["float32_bb"], 1e39, "big", "big")
    assert math.isnan(decode(by_name["float32_bb"], [0x7FC0, 0], "big", "big"))  # type: ignore[arg-type]
