"""Patrol checkpoint readers: every tag read becomes a `patrol_scan` event through the outbox.

A checkpoint reader (NFC or QR, docs/patrol.md "Scan paths") reaches the gateway like a door
reader (edge/access/readers.py): on the local broker (`mqtt`) or as lines from a serial port or a
keyboard-wedge FIFO/terminal (`serial`, `keyboard`). Its input is the tag, bare or as JSON
`{"tag": "...", "card": "..."}` (the guard's card, when the reader asks for one). Each read is an
`EventMessage` of kind `patrol_scan` (contract/patrol.py) with `ts` = when it was read and
`device` = the reader, put in the durable outbox's control lane: it survives an outage and a
restart, and never waits behind telemetry. Nothing is decided here: the cloud matches the tag to
a checkpoint and a round. Malformed input is logged with the reader's name, counted and dropped.
"""

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable

from pydantic import ValidationError

from contract.clock import Clock
from contract.envelope import Envelope
from contract.gateway_config import CheckpointReaderConfig
from contract.messages import EventMessage
from contract.patrol import PATROL_SCAN_EVENT, PatrolScanData
from contract.topics import Kind
from edge.access.readers import BadInput, LineReader, MqttReaders, input_text, stop_task
from edge.settings import MqttEndpoint

log = logging.getLogger(__name__)

Emit = Callable[[Kind, Envelope], None]


def parse_scan(data: bytes | str) -> PatrolScanData:
    """A checkpoint reader's message or line as scan data, or BadInput saying why."""
    text = input_text(data)
    document: object = text
    if text.startswith(("{", '"')):
        try:
            document = json.loads(text)
        except ValueError:
            raise BadInput("not valid JSON") from None
    if isinstance(document, str):  # the bare tag, or a JSON string
        document = {"tag": document}
    if not isinstance(document, dict):
        raise BadInput('JSON must be an object with "tag" (and optionally "card") or a string')
    if isinstance(document.get("card"), int) and not isinstance(document.get("card"), bool):
        document = {**document, "card": str(document["card"])}  # a decimal card number sent as a number
    try:
        return PatrolScanData.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "(input)"
        raise BadInput(f"{field}: {_why(field, first['type'], first['msg'])}") from None


def _why(field: str, error: str, message: str) -> str:
    if field == "tag" and error in ("string_pattern_mismatch", "string_too_long", "string_too_short"):
        return "a tag is 1 to 200 printable characters without spaces"
    if field == "card" and error == "string_pattern_mismatch":
        return "a card number is 4 to 32 decimal or hexadecimal digits"
    return message


class PatrolReaders:
    """The checkpoint readers of one gateway config: MQTT ones on one local client, line ones as tasks."""

    def __init__(
        self,
        readers: list[CheckpointReaderConfig],
        *,
        emit: Emit,
        clock: Clock,
        endpoint: MqttEndpoint | None,
        client_id: str,
    ) -> None:
        self.emit = emit
        self.clock = clock
        #: Scans sent per reader since these readers started.
        self.scans: Counter[str] = Counter()
        #: Inputs dropped as malformed (each is logged with its reader's name).
        self.ignored = 0
        mqtt_readers = [r for r in readers if r.kind == "mqtt"]
        self.mqtt: MqttReaders | None = None
        if mqtt_readers:
            assert endpoint is not None
            self.mqtt = MqttReaders(
                mqtt_readers, endpoint, client_id, self.scan, parse=self._parse, label="checkpoint readers"
            )  # type: ignore[arg-type]
        self.lines = [LineReader(r, self.scan, parse=self._parse) for r in readers if r.kind != "mqtt"]
        self._tasks: list[asyncio.Task[None]] = []

    def _parse(self, data: bytes | str) -> PatrolScanData:
        try:
            return parse_scan(data)
        except BadInput:
            self.ignored += 1
            raise

    def scan(self, reader: CheckpointReaderConfig, data: PatrolScanData) -> None:
        """A tag read at `reader`: a `patrol_scan` event, stamped now, into the outbox."""
        event = EventMessage(
            ts=self.clock.now(), device=reader.name, kind=PATROL_SCAN_EVENT, data=data.model_dump(exclude_none=True)
        )
        self.emit(Kind.EVENT, event)
        self.scans[reader.name] += 1
        log.info("checkpoint reader %s: tag %s read", reader.name, data.tag)

    async def start(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.start()
        for reader in self.lines:
            self._tasks.append(asyncio.create_task(reader.run(), name=f"checkpoint-{reader.reader.name}"))

    async def stop(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.stop()
        for task in self._tasks:
            await stop_task(task)
        self._tasks.clear()
