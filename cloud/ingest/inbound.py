"""One message as the ingest holds it between the MQTT thread and the writers."""

from collections.abc import Callable
from dataclasses import dataclass

from contract.topics import ParsedTopic


@dataclass(slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    #: Which MQTT connection delivered it: an ack is sent only on that same connection.
    generation: int
    parsed: ParsedTopic | None
    #: Acknowledges it to the broker, on the connection that delivered it.
    acker: Callable[["Inbound"], None]

    def ack(self) -> None:
        self.acker(self)
