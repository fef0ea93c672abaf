"""One connection per Modbus line, shared by every device on it, one request at a time.

Several unit ids behind one Modbus TCP gateway, or several devices daisy-chained on one RS-485
line, are one *bus*: one TCP connection or one serial port. A serial line is half-duplex and
many TCP gateways serve one request at a time, so the bus holds a lock around each request: a
request from one device never interleaves with another's. Every request runs under the asking
device's timeout, so a silent unit holds the line for its timeout and no longer.

We connect and reconnect ourselves (pymodbus's own reconnect is off): a bus that cannot connect
fails every request at once with the reason, and tries again after an exponential backoff with
jitter, so a dead gateway is not hammered by each of its devices.
"""

import asyncio
import logging
import random
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from contract.gateway_config import ModbusAddress

log = logging.getLogger(__name__)

Client = AsyncModbusTcpClient | AsyncModbusSerialClient

#: pymodbus's own request timeout; ours (the device's, per request) always fires first.
_CLIENT_TIMEOUT = 60.0
#: pymodbus closes a connection after this many unanswered requests in a row; we decide that ourselves.
_NEVER = 2**31


class BusError(Exception):
    """A request that got no usable answer; `str()` is the reason a person reads."""


class NoAnswer(BusError):
    """The unit did not answer within the timeout (the line itself may be fine)."""


class BusDown(BusError):
    """The connection cannot be made, or was lost."""


class ModbusBus:
    """The shared connection of one `ModbusAddress.bus`; devices call `request` with their unit id."""

    def __init__(
        self,
        address: ModbusAddress,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.key = address.bus
        self.address = address
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._client: Client | None = None
        self._units: set[int] = set()
        self._silent_in_a_row = 0
        self._connect_failures = 0
        self._retry_at = 0.0
        self._down_reason = ""
        #: Requests sent (reads and writes), for benchmarks and health.
        self.requests = 0

    @property
    def where(self) -> str:
        """The line for messages: host:port or the serial path."""
        if self.address.serial is not None:
            return self.address.serial
        return f"{self.address.host}:{self.address.port}"

    def attach(self, unit: int) -> None:
        """A device with this unit id uses the bus (the count decides when silence means a dead line)."""
        self._units.add(unit)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def request(self, method: str, *args: Any, unit: int, timeout: float, **kwargs: Any) -> ModbusPDU:
        """Call a pymodbus client method (`read_coils`, `write_register`, ...) for `unit`, alone on the line.

        Raises NoAnswer after `timeout` seconds of silence, BusDown when there is no connection.
        A response carrying a Modbus exception code is returned, not raised: it is an answer.
        """
        async with self._lock:
            client = await self._connected(timeout)
            self.requests += 1
            try:
                async with asyncio.timeout(timeout):
                    response = await getattr(client, method)(*args, device_id=unit, **kwargs)
            except TimeoutError:
                self._silent_in_a_row += 1
                # Every unit on the line got its chance and none answered: the line may be dead
                # (a half-open TCP connection, an unplugged adapter), so start it afresh.
                if self._silent_in_a_row >= max(1, len(self._units)):
                    self.close()
                raise NoAnswer(f"no answer within {timeout:g} s") from None
            except (ConnectionException, OSError) as exc:
                self.close()
                raise BusDown(f"connection to {self.where} lost: {exc}") from None
            except ModbusException as exc:
                raise BusError(str(exc)) from None
            _raise_if_cancelled()
            self._silent_in_a_row = 0
            return response

    async def _connected(self, timeout: float) -> Client:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._retry_at:
            raise BusDown(f"{self._down_reason} (next attempt in {self._retry_at - now:.1f} s)")
        client = self._make_client()
        self._client = client
        try:
            async with asyncio.timeout(timeout):
                connected = await client.connect()
        except (TimeoutError, OSError):
            connected = False
        _raise_if_cancelled()
        if not connected:
            self.close()
            self._connect_failures += 1
            self._down_reason = f"cannot connect to {self.where}"
            self._retry_at = loop.time() + self._backoff()
            if self._connect_failures == 1:
                log.warning("Modbus bus %s: %s", self.key, self._down_reason)
            raise BusDown(self._down_reason)
        if self._connect_failures:
            log.info("Modbus bus %s: connected again after %d failed attempt(s)", self.key, self._connect_failures)
        self._connect_failures = 0
        self._silent_in_a_row = 0
        return client

    def _make_client(self) -> Client:
        a = self.address
        common: dict[str, Any] = {
            "timeout": _CLIENT_TIMEOUT,
            "retries": 0,  # a retry would only double the wait for a silent unit; we poll again anyway
            "reconnect_delay": 0,  # reconnecting is ours to do, with backoff and offline reports
            "reconnect_delay_max": 0,
            "name": f"modbus-{self.key}",
        }
        client: Client
        if a.serial is not None:
            client = AsyncModbusSerialClient(
                a.serial,
                framer=FramerType.RTU,
                baudrate=a.baudrate,
                bytesize=a.bytesize,
                parity=a.parity,
                stopbits=a.stopbits,
                **common,
            )
        else:
            assert a.host is not None
            client = AsyncModbusTcpClient(a.host, port=a.port, **common)
        client.set_max_no_responses(_NEVER)
        return client

    def _backoff(self) -> float:
        """Exponential from `backoff_base` up to `backoff_cap`, with jitter so buses do not retry in step."""
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (self._connect_failures - 1))
        return delay / 2 + self._rng.uniform(0, delay / 2)


class BusPool:
    """The buses of one agent, by `ModbusAddress.bus`: devices on the same line get the same bus.

    The serial framing (baud rate, parity, ...) of a line is that of its first device; a later
    device on the same port with other framing is refused, naming both.
    """

    def __init__(self, *, backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.buses: dict[str, ModbusBus] = {}

    def bus_for(self, address: ModbusAddress) -> ModbusBus:
        bus = self.buses.get(address.bus)
        if bus is None:
            bus = ModbusBus(address, backoff_base=self.backoff_base, backoff_cap=self.backoff_cap)
            self.buses[address.bus] = bus
        elif address.serial is not None and _framing(bus.address) != _framing(address):
            raise ValueError(
                f"serial line {address.serial}: framing {_framing(address)} differs from "
                f"{_framing(bus.address)} of another device on the same line"
            )
        bus.attach(address.unit)
        return bus

    def close(self) -> None:
        for bus in self.buses.values():
            bus.close()

    @property
    def requests(self) -> int:
        return sum(b.requests for b in self.buses.values())


def _raise_if_cancelled() -> None:
    """Deliver a cancellation that pymodbus swallowed.

    pymodbus waits with `asyncio.wait_for`, which in Python 3.11 returns the result instead of
    raising when the answer and our cancellation arrive together; the task would then poll on
    and never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _framing(a: ModbusAddress) -> str:
    return f"{a.baudrate} {a.bytesize}{a.parity}{a.stopbits}"
