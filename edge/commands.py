"""Commands from the cloud: validated and acknowledged by the contract.

No profile defines a command yet (Modbus writes come in a later release), so every valid command
is answered `rejected` with the reason, which is what the cloud shows the person who sent it.
"""

import logging
from collections.abc import Mapping

from contract.clock import Clock
from contract.messages import CommandAck, CommandMessage, InvalidMessage, decode
from contract.profiles import DeviceProfile
from contract.topics import Kind

log = logging.getLogger(__name__)

NO_COMMANDS = "commands arrive in a later release: profile defines none"


class CommandHandler:
    def __init__(self, devices: Mapping[str, DeviceProfile], clock: Clock) -> None:
        self.devices = devices
        self.clock = clock

    def handle(self, payload: bytes) -> CommandAck | None:
        """The acknowledgement for a command payload; None when it is not a command at all (logged)."""
        try:
            command = decode(Kind.COMMAND, payload)
        except InvalidMessage as exc:
            log.warning("command refused, not acknowledged: %s", exc.reason)
            return None
        assert isinstance(command, CommandMessage)
        reason = self._rejection(command)
        log.info("command %s %s for device %s: rejected (%s)", command.id, command.command, command.device, reason)
        return CommandAck(ts=self.clock.now(), command_id=command.id, status="rejected", reason=reason)

    def _rejection(self, command: CommandMessage) -> str:
        if command.device not in self.devices:
            return "unknown device"
        if command.expires_at is not None and command.expires_at <= self.clock.now():
            return "expired"
        return NO_COMMANDS
