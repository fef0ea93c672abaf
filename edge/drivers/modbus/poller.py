"""One coordinator per Modbus TCP device: poll it on its own schedule, report values and state.

Each device has its own connection and its own task, and every request runs under a timeout,
so a device that hangs or vanishes delays nobody but itself. We reconnect ourselves (with
exponential backoff and jitter) instead of letting pymodbus do it, so that the agent knows when a
device is gone and can say so.
"""

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from contract.clock import Clock, SystemClock
from contract.common import Value
from contract.gateway_config import DeviceConfig
from contract.messages import Reading
from contract.profiles import ModbusProfile
from edge.drivers.modbus.codec import decode_span
from edge.drivers.modbus.planner import ReadRequest, plan_reads
from edge.drivers.sink import DeviceSink

log = logging.getLogger(__name__)

#: Exception codes that mean "the device did not answer" rather than "the profile asks for
#: something this device does not have": device failure, busy, and a TCP gateway whose serial
#: device is silent (0x0A, 0x0B).
_DEVICE_FAILURE_CODES = {0x04, 0x06, 0x0A, 0x0B}


class PollFailed(Exception):
    """The device did not answer as a device should; it counts as offline until it does."""


class ModbusPoller:
    """Polls one device; `run()` until cancelled."""

    def __init__(
        self,
        device: DeviceConfig,
        profile: ModbusProfile,
        sink: DeviceSink,
        *,
        clock: Clock | None = None,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if device.modbus is None:
            raise ValueError(f"device {device.name}: no Modbus address")
        self.device = device
        self.profile = profile
        self.sink = sink
        self.clock = clock or SystemClock()
        self.address = device.modbus
        self.interval = device.poll_interval or profile.poll_interval
        self.timeout = profile.timeout
        self.backoff_cap = backoff_cap
        self.requests = plan_reads(profile)
        self._rng = rng or random.Random()
        self._client: AsyncModbusTcpClient | None = None
        self._failures_in_a_row = 0
        self._refused: set[tuple[str, int]] = set()
        #: None until the first poll, then whether the device answers.
        self.online: bool | None = None
        self.polls_ok = 0
        self.polls_failed = 0

    @property
    def name(self) -> str:
        return self.device.name

    async def run(self) -> None:
        """Poll at a fixed rate (next = previous + interval) until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                try:
                    ts, values = await self.poll_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not isinstance(exc, PollFailed):
                        log.exception("device %s: unexpected error while polling", self.name)
                    self._failed(str(exc) or type(exc).__name__)
                    await asyncio.sleep(self._backoff())
                    next_at = loop.time()
                    continue
                self._succeeded(ts, values)
                next_at += self.interval
                now = loop.time()
                if next_at <= now:  # the poll overran its slot: skip missed slots, keep the phase
                    next_at += (math.floor((now - next_at) / self.interval) + 1) * self.interval
                await asyncio.sleep(next_at - now)
        finally:
            self.close()

    async def poll_once(self) -> tuple[datetime, dict[str, Value]]:
        """Read every planned request once: when it began, and the values.

        Raises PollFailed when the device does not answer.
        """
        ts = self.clock.now()
        client = await self._connected_client()
        values: dict[str, Value] = {}
        for request in self.requests:
            data = await self._read(client, request)
            if data is not None:
                values.update(decode_span(self.name, self.profile, request.metrics, request.address, data))
        return ts, values

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _connected_client(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = AsyncModbusTcpClient(
            self.address.host,
            port=self.address.port,
            timeout=self.timeout,
            retries=0,  # a retry would only double the wait for a silent device; we poll again anyway
            reconnect_delay=0,  # reconnecting is ours to do, with backoff and an offline report
            reconnect_delay_max=0,
            name=f"modbus-{self.name}",
        )
        self._client = client
        try:
            connected = await asyncio.wait_for(client.connect(), self.timeout)
        except TimeoutError:
            connected = False
        if not connected:
            raise PollFailed(f"cannot connect to {self.address.host}:{self.address.port}")
        return client

    async def _read(self, client: AsyncModbusTcpClient, request: ReadRequest) -> list[int] | list[bool] | None:
        """One request's registers or bits; None when the device refuses this range (logged once)."""
        readers: dict[str, Callable[..., Awaitable[Any]]] = {
            "coil": client.read_coils,
            "discrete_input": client.read_discrete_inputs,
            "holding_register": client.read_holding_registers,
            "input_register": client.read_input_registers,
        }
        where = f"{request.table} {request.address}-{request.end - 1} (unit {self.address.unit})"
        try:
            response = await asyncio.wait_for(
                readers[request.table](request.address, count=request.count, device_id=self.address.unit),
                self.timeout,
            )
        except TimeoutError:
            raise PollFailed(f"no answer within {self.timeout:g} s reading {where}") from None
        except (ModbusException, OSError) as exc:
            raise PollFailed(f"reading {where}: {exc}") from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            if code in _DEVICE_FAILURE_CODES:
                raise PollFailed(f"exception 0x{code:02X} reading {where}")
            key = (request.table, request.address)
            if key not in self._refused:
                self._refused.add(key)
                names = ", ".join(m.name for m in request.metrics)
                log.warning(
                    "device %s (profile %s): the device refuses %s with exception 0x%02X; "
                    "metrics %s are skipped until it answers (check their table and address)",
                    self.name, self.profile.id, where, code, names,
                )  # fmt: skip
            return None
        self._refused.discard((request.table, request.address))
        if request.table in ("coil", "discrete_input"):
            return list(response.bits[: request.count])
        return list(response.registers)

    def _succeeded(self, ts: datetime, values: dict[str, Value]) -> None:
        self.polls_ok += 1
        self._failures_in_a_row = 0
        if self.online is not True:
            was_offline = self.online is False
            self.online = True
            log.info("device %s: online (%s)", self.name, "answering again" if was_offline else "first answer")
            self.sink.state(self.name, True, "answering again" if was_offline else "first answer")
        if values:
            self.sink.reading(Reading(device=self.name, ts=ts, values=values))

    def _failed(self, reason: str) -> None:
        self.polls_failed += 1
        self._failures_in_a_row += 1
        self.close()
        if self.online is not False:
            self.online = False
            log.warning("device %s: offline: %s", self.name, reason)
            self.sink.state(self.name, False, reason)
        else:
            log.debug("device %s: still offline: %s", self.name, reason)

    def _backoff(self) -> float:
        """Exponential from min(interval, 1 s) up to the cap, with jitter so devices do not retry in step."""
        base = min(self.interval, 1.0)
        delay = min(self.backoff_cap, base * 2 ** (self._failures_in_a_row - 1))
        return delay / 2 + self._rng.uniform(0, delay / 2)
