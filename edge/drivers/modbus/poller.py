"""One coordinator per Modbus device (TCP or RTU): poll it on its own schedule, report values and state.

Each device has its own task, schedule, online state and backoff; devices on the same line share
its connection (`bus.ModbusBus`), one request at a time, and every request runs under the device's
timeout, so a device that hangs or vanishes delays the others by at most its timeout. The bus
reconnects itself (with exponential backoff and jitter); the poller tells the agent when a device
is gone and when it is back, and keeps the figures of `health()`.
"""

import asyncio
import logging
import math
import random
import time
from datetime import datetime

from contract.clock import Clock, SystemClock
from contract.common import Value
from contract.gateway_config import DeviceConfig
from contract.messages import DeviceHealth, Reading
from contract.profiles import BIT_TABLES, ModbusProfile
from edge.drivers.modbus.bus import BusDown, BusError, ModbusBus, NoAnswer
from edge.drivers.modbus.codec import decode_span
from edge.drivers.modbus.planner import ReadRequest, plan_reads
from edge.drivers.sink import DeviceSink

log = logging.getLogger(__name__)

#: Exception codes that mean "the device did not answer" rather than "the profile asks for
#: something this device does not have": device failure, busy, and a TCP gateway whose serial
#: device is silent (0x0A, 0x0B).
DEVICE_FAILURE_CODES = {0x04, 0x06, 0x0A, 0x0B}

_READERS = {
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
    "holding_register": "read_holding_registers",
    "input_register": "read_input_registers",
}
_FUNCTION_CODES = {"coil": 1, "discrete_input": 2, "holding_register": 3, "input_register": 4}


class PollFailed(Exception):
    """The device did not answer as a device should; it counts as offline until it does."""


class ModbusPoller:
    """Polls one device; `run()` until cancelled.

    `bus` is the line the device shares with others (from a `BusPool`); without one the poller
    makes a bus of its own and closes it when it stops.
    """

    def __init__(
        self,
        device: DeviceConfig,
        profile: ModbusProfile,
        sink: DeviceSink,
        *,
        bus: ModbusBus | None = None,
        clock: Clock | None = None,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
        plan: bool = True,
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
        self._owns_bus = bus is None
        self.bus = bus or ModbusBus(self.address, backoff_base=min(self.interval, 0.5), backoff_cap=backoff_cap)
        self.bus.attach(self.address.unit)
        #: The planned reads; `plan=False` reads one metric per request (the benchmark's baseline).
        self.requests = plan_reads(profile) if plan else _one_per_metric(profile)
        self._rng = rng or random.Random()
        self._failures_in_a_row = 0
        self._refused: set[tuple[str, int]] = set()
        #: None until the first poll, then whether the device answers.
        self.online: bool | None = None
        self.polls_ok = 0
        self.polls_failed = 0
        self.points = 0
        self.last_error: str | None = None
        self._latency_sum = 0.0
        self._latency_max = 0.0

    @property
    def name(self) -> str:
        return self.device.name

    async def run(self) -> None:
        """Poll at a fixed rate (next = previous + interval) until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                started = time.perf_counter()
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
                self._succeeded(ts, values, time.perf_counter() - started)
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
        values: dict[str, Value] = {}
        for request in self.requests:
            data = await self._read(request)
            if data is not None:
                values.update(decode_span(self.name, self.profile, request.metrics, request.address, data))
        return ts, values

    def close(self) -> None:
        """Close the connection if it is the poller's own; a shared bus is closed by its pool."""
        if self._owns_bus:
            self.bus.close()

    def health(self) -> DeviceHealth:
        """How polling this device went since the poller started (counts, rate and latency alike).

        Latency is the wall time of a whole successful poll (every request of the device, including
        waiting for the line), in milliseconds.
        """
        total = self.polls_ok + self.polls_failed
        return DeviceHealth(
            device=self.name,
            online=self.online,
            polls_ok=self.polls_ok,
            polls_failed=self.polls_failed,
            success_rate=self.polls_ok / total if total else None,
            latency_ms_mean=1000 * self._latency_sum / self.polls_ok if self.polls_ok else None,
            latency_ms_max=1000 * self._latency_max if self.polls_ok else None,
            last_error=self.last_error[:500] if self.last_error else None,
        )

    async def _read(self, request: ReadRequest) -> list[int] | list[bool] | None:
        """One request's registers or bits; None when the device refuses this range (logged once)."""
        where = f"{request.table} {request.address}-{request.end - 1} (unit {self.address.unit})"
        try:
            response = await self.bus.request(
                _READERS[request.table], request.address, count=request.count,
                unit=self.address.unit, timeout=self.timeout,
            )  # fmt: skip
        except NoAnswer as exc:
            raise PollFailed(f"{exc} reading {where}") from None
        except BusDown as exc:
            raise PollFailed(str(exc)) from None
        except BusError as exc:
            raise PollFailed(f"reading {where}: {exc}") from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            if code in DEVICE_FAILURE_CODES:
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
        # A late answer to an earlier, timed-out request on the line is not this request's answer.
        if response.function_code != _FUNCTION_CODES[request.table]:
            raise PollFailed(f"answer with function {response.function_code} reading {where}")
        data = list(response.bits[: request.count]) if request.table in BIT_TABLES else list(response.registers)
        if len(data) < request.count:
            raise PollFailed(f"{len(data)} of {request.count} values in the answer reading {where}")
        self._refused.discard((request.table, request.address))
        return data

    def _succeeded(self, ts: datetime, values: dict[str, Value], latency: float) -> None:
        self.polls_ok += 1
        self.points += len(values)
        self._latency_sum += latency
        self._latency_max = max(self._latency_max, latency)
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
        self.last_error = reason
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


def _one_per_metric(profile: ModbusProfile) -> list[ReadRequest]:
    """One request per metric: what a reader without a planner does."""
    return [ReadRequest(m.table, m.address, m.register_count, (m,)) for m in profile.metrics]
