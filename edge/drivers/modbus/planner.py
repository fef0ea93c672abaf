"""Group a profile's metrics into as few Modbus read requests as the protocol allows.

Every request costs a round trip to the device, often over a slow serial line behind a TCP
gateway, so neighbouring metrics are read together when the registers between them are few.
"""

from dataclasses import dataclass

from contract.profiles import BIT_TABLES, ModbusMetric, ModbusProfile, Table

#: Protocol limits per request: 125 registers (function codes 3, 4), 2000 bits (1, 2).
MAX_REGISTERS = 125
MAX_BITS = 2000
#: In coil and discrete-input tables a gap is counted in bits, 16 per register of `max_read_gap`.
BITS_PER_REGISTER = 16
_TABLE_ORDER: tuple[Table, ...] = ("coil", "discrete_input", "holding_register", "input_register")


@dataclass(frozen=True)
class ReadRequest:
    """One read: `count` registers (or bits) of `table` from `address`, holding `metrics`."""

    table: Table
    address: int
    count: int
    metrics: tuple[ModbusMetric, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_reads(profile: ModbusProfile) -> list[ReadRequest]:
    """Requests covering every metric, merging neighbours whose gap is at most `max_read_gap`."""
    requests: list[ReadRequest] = []
    for table in _TABLE_ORDER:
        metrics = sorted((m for m in profile.metrics if m.table == table), key=lambda m: m.address)
        if not metrics:
            continue
        is_bits = table in BIT_TABLES
        limit = MAX_BITS if is_bits else MAX_REGISTERS
        max_gap = profile.max_read_gap * (BITS_PER_REGISTER if is_bits else 1)
        group = [metrics[0]]
        start, end = metrics[0].address, metrics[0].address + metrics[0].register_count
        for metric in metrics[1:]:
            m_end = metric.address + metric.register_count
            if metric.address - end <= max_gap and max(end, m_end) - start <= limit:
                group.append(metric)
                end = max(end, m_end)
                continue
            requests.append(ReadRequest(table, start, end - start, tuple(group)))
            group, start, end = [metric], metric.address, m_end
        requests.append(ReadRequest(table, start, end - start, tuple(group)))
    return requests
