"""Simulated Modbus devices: pymodbus servers (TCP, or RTU on a serial line) whose registers follow a profile.

Each device keeps its registers in the profile's layout (values written with the edge's own
codec); a pymodbus `SimDevice` action copies them into the server's memory on every request
and takes client writes back, so a test can `set("pump-1", "fault_code", 3)` and the next poll
sees it. Devices sharing a host and port sit behind one server under their unit ids, as serial
devices sit behind a Modbus TCP gateway. Devices with a `serial` address are served in Modbus RTU on
that line, several unit ids on one line; when the path does not exist, the simulator makes a
virtual line (`serial_line.VirtualSerialLine`) and links the path to its agent-side end. A device
told to stop answering leaves requests unanswered, as a dead device does, until it is told to
answer again; on a serial line a unit nobody simulates stays silent too.
"""

import asyncio
import contextlib
import ipaddress
import logging
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from contract.common import Value
from contract.gateway_config import LoadedGatewayConfig, ModbusAddress
from contract.profiles import BIT_TABLES, ModbusMetric, ModbusProfile, Table
from edge.drivers.modbus.codec import decode, encode, orders
from simulator.serial_line import VirtualSerialLine

log = logging.getLogger(__name__)

_FUNCTION_TABLE: dict[int, Table] = {
    1: "coil", 5: "coil", 15: "coil",
    2: "discrete_input",
    3: "holding_register", 6: "holding_register", 16: "holding_register", 22: "holding_register",
    23: "holding_register",
    4: "input_register",
}  # fmt: skip
_TABLE_ORDER: tuple[Table, ...] = ("coil", "discrete_input", "holding_register", "input_register")
#: How long an unanswered request waits for the device to come back before giving up on it.
_SILENCE_LIMIT = 120.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Table:
    """One table's memory: registers, or bits (stored one per entry, 16 to a server register)."""

    def __init__(self, table: Table, metrics: Sequence[ModbusMetric]) -> None:
        self.table = table
        self.is_bits = table in BIT_TABLES
        if metrics:
            start = min(m.address for m in metrics)
            end = max(m.address + m.register_count for m in metrics)
        else:
            start, end = 0, 1
        if self.is_bits:  # the server keeps bits in 16-bit words, aligned to 16
            start -= start % 16
            end += -end % 16
        self.start, self.size, self.used = start, end - start, bool(metrics)
        self.cells: list[int] = [0] * self.size

    def simdata(self) -> SimData:
        if self.is_bits:
            return SimData(self.start, count=self.size, values=False, datatype=DataType.BITS)
        if not self.used:  # requests to a table the device does not have are refused
            return SimData(0, datatype=DataType.INVALID)
        return SimData(self.start, count=self.size, values=0, datatype=DataType.REGISTERS)

    def read(self, address: int, count: int) -> list[int]:
        offset = address - self.start
        if offset < 0 or offset + count > self.size:
            raise IndexError(f"{self.table} {address}-{address + count - 1} is outside the simulated range")
        return self.cells[offset : offset + count]

    def write(self, address: int, values: Sequence[int] | Sequence[bool]) -> None:
        self.read(address, len(values))
        offset = address - self.start
        self.cells[offset : offset + len(values)] = [int(v) for v in values]

    def copy_into(self, server_registers: list[int]) -> None:
        """Our cells in the server's layout (bits packed 16 to a register, bit 0 first)."""
        if not self.is_bits:
            server_registers[: self.size] = self.cells
            return
        for i in range(self.size // 16):
            word = 0
            for bit, cell in enumerate(self.cells[16 * i : 16 * i + 16]):
                word |= (1 if cell else 0) << bit
            server_registers[i] = word


class SimulatedModbusDevice:
    """One device's registers, laid out by its profile; the thing a test sets values on."""

    def __init__(self, name: str, unit: int, profile: ModbusProfile) -> None:
        self.name = name
        self.unit = unit
        self.profile = profile
        self.metrics = {m.name: m for m in profile.metrics}
        self.tables = {t: _Table(t, [m for m in profile.metrics if m.table == t]) for t in _TABLE_ORDER}
        self.requests = 0
        self._answering = True
        self._answering_again: asyncio.Event | None = None

    # -- values --------------------------------------------------------------------------------

    def _metric(self, name: str) -> ModbusMetric:
        try:
            return self.metrics[name]
        except KeyError:
            known = ", ".join(self.metrics)
            raise KeyError(f"device {self.name}: no metric {name!r} in profile {self.profile.id} ({known})") from None

    def set(self, metric: str, value: Value) -> None:
        """Put a metric's value into the registers, encoded as the profile says."""
        m = self._metric(metric)
        table = self.tables[m.table]
        current = table.read(m.address, m.register_count)
        table.write(m.address, encode(m, value, *orders(m, self.profile), current=current))

    def get(self, metric: str) -> Value:
        m = self._metric(metric)
        value = decode(m, self.tables[m.table].read(m.address, m.register_count), *orders(m, self.profile))
        return value

    def set_registers(self, table: Table, address: int, values: Sequence[int] | Sequence[bool]) -> None:
        """Write raw registers (or bits), bypassing the codec: for tests of the codec itself."""
        self.tables[table].write(address, values)

    def registers(self, table: Table, address: int, count: int) -> list[int]:
        return self.tables[table].read(address, count)

    # -- answering -----------------------------------------------------------------------------

    @property
    def answering(self) -> bool:
        return self._answering

    def stop_answering(self) -> None:
        """Leave every request unanswered from now on (the client times out)."""
        self._answering = False
        if self._answering_again is not None:
            self._answering_again.clear()

    def start_answering(self) -> None:
        self._answering = True
        if self._answering_again is not None:
            self._answering_again.set()

    # -- pymodbus ------------------------------------------------------------------------------

    def sim_device(self) -> SimDevice:
        tables = [self.tables[t].simdata() for t in _TABLE_ORDER]
        blocks = ([tables[0]], [tables[1]], [tables[2]], [tables[3]])
        return SimDevice(id=self.unit, simdata=blocks, action=self._action)

    async def _action(
        self,
        function_code: int,
        _start_address: int,
        address: int,
        _count: int,
        server_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by the server on every request, before it answers from `server_registers`."""
        if not self._answering:
            if self._answering_again is None:
                self._answering_again = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answering_again.wait(), _SILENCE_LIMIT)
            # The client gave up long ago; whatever we send now goes to a closed connection.
            return ExcCodes.GATEWAY_NO_RESPONSE
        self.requests += 1
        table = self.tables.get(_FUNCTION_TABLE.get(function_code, "holding_register"))
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            try:
                table.write(address, set_values)
            except IndexError:
                return ExcCodes.ILLEGAL_ADDRESS
        table.copy_into(server_registers)
        return None


class SimulatedModbusServer:
    """One listening port with the devices behind it."""

    def __init__(self, host: str, port: int, devices: Sequence[SimulatedModbusDevice]) -> None:
        self.host = host
        self.port = port
        self.devices = list(devices)
        #: Client connections accepted so far (devices sharing a bus share one).
        self.connections = 0
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        self._server = ModbusTcpServer(
            [d.sim_device() for d in self.devices], address=(self.host, self.port), trace_connect=self._connected
        )
        await self._server.serve_forever(background=True)
        units = ", ".join(f"{d.name}@{d.unit}" for d in self.devices)
        log.info("simulated Modbus server on %s:%d (%s)", self.host, self.port, units)

    def _connected(self, up: bool) -> None:
        if up:
            self.connections += 1

    async def stop(self) -> None:
        if self._server is not None:
            for device in self.devices:  # release requests left hanging
                device.start_answering()
            await self._server.shutdown()
            self._server = None


class SimulatedModbusSerialServer:
    """Modbus RTU on one serial line, the devices on it answering to their unit ids.

    `line` is the agent's side of the line (a gateway config's `serial` path). When that path is
    not an existing terminal, a virtual line is made: `line` becomes a symlink to one end and the
    server listens on the other. An existing terminal (a USB-RS485 adapter wired to the gateway's)
    is served directly. Framing (baud rate, parity, ...) is the address's.
    """

    def __init__(self, line: ModbusAddress, devices: Sequence[SimulatedModbusDevice]) -> None:
        assert line.serial is not None
        self.line = line
        self.path = line.serial
        self.devices = list(devices)
        self.virtual: VirtualSerialLine | None = None
        self._units: set[int] = set()
        self._server: ModbusSerialServer | None = None

    async def start(self) -> None:
        port = self.path
        if not _is_terminal(Path(self.path)):
            self.virtual = VirtualSerialLine(link_a=self.path).start()
            port = self.virtual.b_path
        units = {d.unit for d in self.devices}
        sim_devices = [d.sim_device() for d in self.devices]
        if 0 not in units:  # pymodbus answers unknown units from device 0; this one's answers are dropped
            sim_devices.append(_catch_all())
        self._units = units
        self._server = ModbusSerialServer(
            sim_devices,
            framer=FramerType.RTU,
            port=port,
            baudrate=self.line.baudrate,
            bytesize=self.line.bytesize,
            parity=self.line.parity,
            stopbits=self.line.stopbits,
            trace_packet=self._only_our_units,
        )
        await self._server.serve_forever(background=True)
        names = ", ".join(f"{d.name}@{d.unit}" for d in self.devices)
        how = f"virtual line, server end {port}" if self.virtual else "terminal"
        log.info("simulated Modbus RTU on %s (%s; %s)", self.path, how, names)

    def _only_our_units(self, sending: bool, packet: bytes) -> bytes:
        """On a serial line a unit that is not there is silent: drop answers in the name of others."""
        if sending and packet and packet[0] not in self._units:
            return b""
        return packet

    async def stop(self) -> None:
        if self._server is not None:
            for device in self.devices:
                device.start_answering()
            await self._server.shutdown()
            self._server = None
        if self.virtual is not None:
            self.virtual.stop()
            self.virtual = None


def _catch_all() -> SimDevice:
    """Device 0, which pymodbus's simulator answers for every unit id it does not know."""
    bits = SimData(0, count=16, values=False, datatype=DataType.BITS)
    registers = SimData(0, count=1, values=0, datatype=DataType.REGISTERS)
    return SimDevice(id=0, simdata=([bits], [bits], [registers], [registers]))


def _is_terminal(path: Path) -> bool:
    """An existing character device that is not a leftover link of ours."""
    if path.is_symlink() and not path.exists():
        return False
    try:
        return stat.S_ISCHR(path.stat().st_mode) and not path.is_symlink()
    except OSError:
        return False


class ModbusSimulation:
    """The Modbus devices of a gateway config that live on loopback or a serial line, served by pymodbus."""

    def __init__(self, gateway: LoadedGatewayConfig, *, only: Iterable[str] | None = None) -> None:
        wanted = set(only) if only is not None else None
        self.devices: dict[str, SimulatedModbusDevice] = {}
        by_port: dict[tuple[str, int], list[SimulatedModbusDevice]] = {}
        by_line: dict[str, tuple[ModbusAddress, list[SimulatedModbusDevice]]] = {}
        for config in gateway.config.devices:
            profile = gateway.profile_of(config)
            if config.modbus is None or not isinstance(profile, ModbusProfile):
                continue
            if wanted is not None and config.name not in wanted:
                continue
            address = config.modbus
            if address.serial is not None:
                device = SimulatedModbusDevice(config.name, address.unit, profile)
                by_line.setdefault(address.serial, (address, []))[1].append(device)
            elif address.host is not None and is_loopback(address.host):
                device = SimulatedModbusDevice(config.name, address.unit, profile)
                by_port.setdefault((address.host, address.port), []).append(device)
            else:
                log.info("device %s is at %s, not on loopback: not simulated", config.name, address.host)
                continue
            self.devices[config.name] = device
        self.servers: list[SimulatedModbusServer | SimulatedModbusSerialServer] = [
            SimulatedModbusServer(host, port, devs) for (host, port), devs in by_port.items()
        ]
        self.servers += [SimulatedModbusSerialServer(line, devs) for line, devs in by_line.values()]

    def device(self, name: str) -> SimulatedModbusDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no simulated Modbus device {name!r} (simulated: {', '.join(self.devices)})") from None

    def set(self, device: str, metric: str, value: Value) -> None:
        self.device(device).set(metric, value)

    def get(self, device: str, metric: str) -> Value:
        return self.device(device).get(metric)

    def stop_answering(self, device: str) -> None:
        self.device(device).stop_answering()

    def start_answering(self, device: str) -> None:
        self.device(device).start_answering()

    async def start(self) -> None:
        for server in self.servers:
            await server.start()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    async def __aenter__(self) -> "ModbusSimulation":
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
