"""Commands from the cloud, executed at the edge as Modbus writes and acknowledged by the contract.

A command names a device and one of the commands its profile defines (`ModbusCommand`). It is
`rejected` without touching the device when the device or command is unknown, when it has
expired, or when its parameter is missing, of the wrong type or outside the profile's limits.
Otherwise the write goes through the device's bus (one request at a time with the pollers, under
the device's timeout) and the answer is `succeeded`, or `failed` with the reason: the line cannot
be reached, the device did not answer in time, or it answered with a Modbus exception code.
Nothing waits longer than the device's timeout per request, so a command never hangs.

`pulse_coil` switches the coil on, waits `pulse` seconds and switches it off; the off-write is
made even when the command is cancelled (the agent stopping), because a door relay left
energised is worse than a late acknowledgement.
"""

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from contract.clock import Clock
from contract.common import Value
from contract.gateway_config import ModbusAddress
from contract.messages import CommandAck, CommandMessage, InvalidMessage, decode
from contract.profiles import DeviceProfile, ModbusCommand, ModbusProfile
from contract.topics import Kind
from edge.drivers.modbus.bus import BusError, ModbusBus
from edge.drivers.modbus.codec import EncodeError, encode_command

log = logging.getLogger(__name__)

#: The reason for a command the device's profile does not define (MQTT devices define none).
NO_COMMANDS = "the device's profile defines no such command"
UNKNOWN_DEVICE = "unknown device"
EXPIRED = "expired"
#: How many command ids the handler remembers to recognise a repeat (delivery is at least once).
REMEMBERED_COMMANDS = 1000


class CommandFailed(Exception):
    """The write was attempted and did not succeed; the message is the reason."""


@dataclass(frozen=True)
class ModbusTarget:
    """Where a device's commands go: its profile, its address and the bus it shares."""

    profile: ModbusProfile
    address: ModbusAddress
    bus: ModbusBus


class CommandHandler:
    """Checks and executes commands; `execute(payload)` is the whole path from payload to acknowledgement."""

    def __init__(
        self,
        devices: Mapping[str, DeviceProfile],
        clock: Clock,
        targets: Mapping[str, ModbusTarget] | None = None,
    ) -> None:
        self.devices = devices
        self.clock = clock
        self.targets = dict(targets or {})
        #: Recent command ids and their acknowledgements (None while running), oldest first.
        self._seen: OrderedDict[UUID, CommandAck | None] = OrderedDict()

    async def execute(self, payload: bytes) -> CommandAck | None:
        """Check, perform and acknowledge one command payload.

        None when there is nothing to send: not a command at all (logged), or a repeat of a command
        still running. Delivery is at least once, so a command id seen before is not run again: its
        acknowledgement (the same message, the same id) is returned once more.
        """
        try:
            command = decode(Kind.COMMAND, payload)
        except InvalidMessage as exc:
            log.warning("command refused, not acknowledged: %s", exc.reason)
            return None
        assert isinstance(command, CommandMessage)
        if command.id in self._seen:
            earlier = self._seen[command.id]
            log.info(
                "command %s arrived again: %s", command.id, "still running" if earlier is None else "answered again"
            )
            return earlier
        self._seen[command.id] = None
        while len(self._seen) > REMEMBERED_COMMANDS:
            self._seen.popitem(last=False)
        ack = await self._run(command)
        self._seen[command.id] = ack
        return ack

    async def _run(self, command: CommandMessage) -> CommandAck:
        reason = self._rejection(command)
        if reason is not None:
            log.info("command %s %s for device %s: rejected (%s)", command.id, command.command, command.device, reason)
            return self._ack(command, "rejected", reason)
        target = self.targets[command.device]
        spec = _command(target.profile, command.command)
        assert spec is not None
        try:
            result = await self._perform(target, spec, command.params)
        except CommandFailed as exc:
            log.warning("command %s %s for device %s: failed: %s", command.id, spec.name, command.device, exc)
            return self._ack(command, "failed", str(exc))
        except asyncio.CancelledError:
            log.warning(
                "command %s %s for device %s: cancelled (agent stopping)", command.id, spec.name, command.device
            )
            # Said rather than left pending; a pulsed coil has been switched off again by then.
            return self._ack(command, "failed", "the agent stopped before the command finished")
        log.info("command %s %s for device %s: succeeded %s", command.id, spec.name, command.device, result)
        return self._ack(command, "succeeded", None, result)

    def _ack(
        self, command: CommandMessage, status: str, reason: str | None, result: dict[str, Value] | None = None
    ) -> CommandAck:
        return CommandAck(
            ts=self.clock.now(),
            command_id=command.id,
            status=status,  # type: ignore[arg-type]
            reason=reason[:500] if reason else None,
            result=result or {},
        )

    # -- checks --------------------------------------------------------------------------------

    def _rejection(self, command: CommandMessage) -> str | None:
        if command.device not in self.devices:
            return UNKNOWN_DEVICE
        if command.expires_at is not None and command.expires_at <= self.clock.now():
            return EXPIRED
        target = self.targets.get(command.device)
        spec = _command(target.profile, command.command) if target is not None else None
        if spec is None or target is None:
            return NO_COMMANDS
        return _param_problem(spec, command.params, target.profile)

    # -- writes --------------------------------------------------------------------------------

    async def _perform(
        self, target: ModbusTarget, spec: ModbusCommand, params: Mapping[str, Value]
    ) -> dict[str, Value]:
        if spec.action == "pulse_coil":
            return await self._pulse(target, spec)
        value = _value_of(spec, params)
        if spec.action == "write_coil":
            await self._write(target, "write_coil", spec.address, bool(value))
            return {"value": bool(value)}
        assert isinstance(value, int | float) and not isinstance(value, bool)
        registers = encode_command(spec, value, target.profile)  # checked in _param_problem: it fits
        if len(registers) == 1:
            await self._write(target, "write_register", spec.address, registers[0])
        else:
            await self._write(target, "write_registers", spec.address, registers)
        result: dict[str, Value] = {"value": value}
        if len(registers) == 1:
            result["raw"] = registers[0]
        else:
            result["raw"] = " ".join(f"{r:04X}" for r in registers)
        return result

    async def _pulse(self, target: ModbusTarget, spec: ModbusCommand) -> dict[str, Value]:
        switched_on = False
        try:
            await self._write(target, "write_coil", spec.address, True)
            switched_on = True
            await asyncio.sleep(spec.pulse)
        finally:
            # Shielded: a second cancellation cannot stop the coil going off, the task finishes alone.
            off = asyncio.ensure_future(self._write(target, "write_coil", spec.address, False))
            try:
                await asyncio.shield(off)
            except CommandFailed as exc:
                if switched_on:
                    log.error(
                        "device %s: coil %d stays ON: switching it off failed: %s", target.address, spec.address, exc
                    )
                    raise CommandFailed(
                        f"coil {spec.address} switched on, but switching it off failed: {exc}"
                    ) from None
            except asyncio.CancelledError:
                # Cancelled while waiting for the off-write: it goes on in its own task; log its outcome.
                off.add_done_callback(_log_late_off)
                raise
        return {"pulse_s": spec.pulse}

    async def _write(self, target: ModbusTarget, method: str, address: int, value: object) -> None:
        timeout = target.profile.timeout
        try:
            response = await target.bus.request(method, address, value, unit=target.address.unit, timeout=timeout)
        except BusError as exc:
            raise CommandFailed(f"device unreachable: {exc}") from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise CommandFailed(f"the device refused the write with Modbus exception 0x{code:02X}")


def _log_late_off(task: "asyncio.Future[None]") -> None:
    with contextlib.suppress(asyncio.CancelledError):
        exc = task.exception()
        if exc is not None:
            log.error("a pulsed coil may stay ON: switching it off failed: %s", exc)


def _command(profile: DeviceProfile, name: str) -> ModbusCommand | None:
    if not isinstance(profile, ModbusProfile):
        return None
    return next((c for c in profile.commands if c.name == name), None)


def _value_of(spec: ModbusCommand, params: Mapping[str, Value]) -> Value:
    if spec.param is None:
        assert spec.value is not None
        return spec.value
    return params[spec.param.name]


def _param_problem(spec: ModbusCommand, params: Mapping[str, Value], profile: ModbusProfile) -> str | None:
    """Why the parameters do not fit the command, or None when they do (including that the value encodes)."""
    expected = {spec.param.name} if spec.param is not None else set()
    extra = sorted(set(params) - expected)
    if extra:
        takes = f"takes only '{spec.param.name}'" if spec.param is not None else "takes no parameters"
        return f"unknown parameter {', '.join(repr(e) for e in extra)}: {spec.name} {takes}"
    if spec.param is None:
        return None
    p = spec.param
    if p.name not in params:
        return f"missing parameter '{p.name}'"
    value = params[p.name]
    if spec.param_type == "bool":
        return None if isinstance(value, bool) else f"parameter '{p.name}' must be true or false, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"parameter '{p.name}' must be a number, got {value!r}"
    if spec.param_type == "integer" and not (isinstance(value, int) or (math.isfinite(value) and value.is_integer())):
        return f"parameter '{p.name}' must be a whole number, got {value!r}"
    unit = f" {p.unit}" if p.unit else ""
    if p.min is not None and value < p.min:
        return f"parameter '{p.name}' {value:g}{unit} is below the minimum {p.min:g}{unit}"
    if p.max is not None and value > p.max:
        return f"parameter '{p.name}' {value:g}{unit} is above the maximum {p.max:g}{unit}"
    if spec.action == "write_register":
        try:
            encode_command(spec, value, profile)
        except EncodeError as exc:
            return f"parameter '{p.name}': {exc}"
    return None
