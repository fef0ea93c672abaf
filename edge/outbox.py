"""Where the agent puts every message for the cloud: the seam for a durable outbox.

Today's `MemoryOutbox` hands each message to paho, whose in-memory queue keeps it until the
broker acknowledges it, across reconnects. What is not yet acknowledged is lost if the process
dies (kill -9, power loss). A later step puts a SQLite outbox behind the same interface: write
first, send, delete on acknowledgement.
"""

from typing import Protocol

from contract.messages import Envelope, encode
from contract.topics import Kind
from edge.uplink import Uplink


class Outbox(Protocol):
    def put(self, kind: Kind, message: Envelope, *, retain: bool = False) -> None:
        """Take a message for delivery (QoS 1); returns at once."""

    def pending(self) -> int:
        """Messages taken and not yet acknowledged by the broker."""

    def wait_drained(self, timeout: float) -> bool:
        """Block until nothing is pending, or `timeout` seconds; whether it drained."""


class MemoryOutbox:
    """The outbox that relies on paho's queue; see the module docstring for what it cannot survive."""

    def __init__(self, uplink: Uplink) -> None:
        self.uplink = uplink

    def put(self, kind: Kind, message: Envelope, *, retain: bool = False) -> None:
        self.uplink.publish(kind, encode(message), retain=retain)

    def pending(self) -> int:
        return self.uplink.unacked()

    def wait_drained(self, timeout: float) -> bool:
        return self.uplink.wait_delivered(timeout)
