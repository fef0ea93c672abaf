"""Read planning: neighbours merge across small gaps, never past the protocol's limits."""

from typing import Any

from contract.profiles import ModbusProfile, load_profiles, parse_profile
from edge.drivers.modbus.planner import MAX_BITS, MAX_REGISTERS, plan_reads
from tests.edge.conftest import PROFILES


def profile(metrics: list[dict[str, Any]], max_read_gap: int = 8) -> ModbusProfile:
    parsed = parse_profile(
        {"name": "Plan", "protocol": "modbus", "max_read_gap": max_read_gap, "metrics": metrics},
        profile_id="plan",
        source="plan.yaml",
    )
    assert isinstance(parsed, ModbusProfile)
    return parsed


def reg(name: str, address: int, type_name: str = "uint16", table: str = "holding_register") -> dict[str, Any]:
    return {"name": name, "table": table, "address": address, "type": type_name}


def spans(p: ModbusProfile) -> list[tuple[str, int, int]]:
    return [(r.table, r.address, r.count) for r in plan_reads(p)]


def test_neighbours_within_the_gap_share_one_read() -> None:
    p = profile([reg("a", 0), reg("b", 1, "float32"), reg("c", 11), reg("d", 20)], max_read_gap=8)
    # a..b end at 3; c at 11 is a gap of 8 (merged); d at 20 is a gap of 8 after c's end (12): merged.
    assert spans(p) == [("holding_register", 0, 21)]


def test_a_gap_wider_than_allowed_starts_a_new_read() -> None:
    p = profile([reg("a", 0), reg("b", 10), reg("c", 30, "float64")], max_read_gap=8)
    assert spans(p) == [("holding_register", 0, 1), ("holding_register", 10, 1), ("holding_register", 30, 4)]


def test_gap_zero_merges_only_adjacent_registers() -> None:
    p = profile([reg("a", 0), reg("b", 1), reg("c", 3)], max_read_gap=0)
    assert spans(p) == [("holding_register", 0, 2), ("holding_register", 3, 1)]


def test_tables_are_planned_separately_and_bits_of_one_register_share_it() -> None:
    p = profile(
        [
            reg("hold", 0),
            reg("inp", 0, table="input_register"),
            {"name": "z1", "table": "input_register", "address": 1, "type": "bit", "bit": 0},
            {"name": "z2", "table": "input_register", "address": 1, "type": "bit", "bit": 1},
            {"name": "run", "table": "coil", "address": 5, "type": "bool"},
            {"name": "trip", "table": "discrete_input", "address": 2, "type": "bool"},
        ]
    )
    assert sorted(spans(p)) == [
        ("coil", 5, 1),
        ("discrete_input", 2, 1),
        ("holding_register", 0, 1),
        ("input_register", 0, 2),
    ]
    every_metric = sorted(m.name for r in plan_reads(p) for m in r.metrics)
    assert every_metric == sorted(m.name for m in p.metrics)


def test_a_read_never_exceeds_125_registers() -> None:
    metrics = [reg(f"m{i}", i * 2, "float32") for i in range(150)]  # 300 contiguous registers
    requests = plan_reads(profile(metrics))
    assert all(r.count <= MAX_REGISTERS for r in requests)
    assert len(requests) == 3  # 125 + 125 + 50 would split a float; 62 floats = 124 registers per read
    covered = sorted(m.name for r in requests for m in r.metrics)
    assert covered == sorted(m["name"] for m in metrics)
    for r in requests:
        assert all(r.address <= m.address and m.address + m.register_count <= r.end for m in r.metrics)


def test_a_read_never_exceeds_2000_bits() -> None:
    metrics = [{"name": f"c{i}", "table": "coil", "address": i * 10, "type": "bool"} for i in range(450)]
    requests = plan_reads(profile(metrics))  # gap of 9 bits is within 8 registers' worth of bits
    assert all(r.count <= MAX_BITS for r in requests)
    assert len(requests) == 3


def test_shipped_profiles_read_in_few_requests() -> None:
    counts = {pid: len(plan_reads(p)) for pid, p in load_profiles(PROFILES).items() if isinstance(p, ModbusProfile)}
    assert counts["water-pump"] == 3  # input registers, the coils, the setpoint at 100
    assert counts["fire-panel"] == 2
