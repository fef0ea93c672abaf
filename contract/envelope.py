"""What every MQTT payload carries: schema version, the id made once at the edge, and when it was made."""

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from contract import SCHEMA_VERSION
from contract.common import Strict
from contract.ids import uuid7


class Envelope(Strict):
    v: Literal[1] = SCHEMA_VERSION
    id: UUID = Field(default_factory=uuid7)
    ts: AwareDatetime
