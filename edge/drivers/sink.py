"""What every driver reports to the agent: readings, and a device going online or offline."""

from typing import Protocol

from contract.messages import Reading


class DeviceSink(Protocol):
    def reading(self, reading: Reading) -> None:
        """One poll's (or one message's) values of one device."""

    def state(self, device: str, online: bool, reason: str) -> None:
        """The device started or stopped answering; called on changes only."""
