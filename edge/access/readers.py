"""Card, PIN and QR readers: where credentials come from, turned into `Credential`s for the controller.

Three input paths that real readers use (docs/device-profiles.md, "Door readers"):

- `mqtt`: the reader publishes each swipe on the gateway's local broker, on its `topic`: JSON
  `{"card": "04A3B2C1"}`, `{"pin": "4711"}` or `{"qr": "token"}`, or the bare card number;
- `serial`: a reader on a serial line (`path`, `baudrate`) that sends each card number and a line
  end (CR, LF or both);
- `keyboard`: a keyboard-wedge reader whose typing reaches a FIFO or a terminal (`path`): the card
  number and Enter.

A line (serial, keyboard) may also be JSON as above, or `pin:4711` / `qr:token`. Input that is none
of these is logged with the reader's name and ignored; nothing a reader sends can stop the agent.
Serial and keyboard readers reopen their path after an error, with backoff.

The patrol's checkpoint readers (edge/patrol.py) use the same two input paths with their own
parser (`parse`): what they read is a patrol tag, not a credential.
"""

import asyncio
import contextlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt

from contract.gateway_config import ReaderInput
from edge.mqtt_client import make_client
from edge.settings import MqttEndpoint, where

log = logging.getLogger(__name__)

_CARD = re.compile(r"^[0-9A-Fa-f]{4,32}$")
_PIN = re.compile(r"^[0-9]{4,12}$")
_QR_MAX = 500
#: A line longer than this is noise, not a credential.
_LINE_MAX = 1024


@dataclass(frozen=True)
class Credential:
    """What a reader read: a card number, a PIN or a QR token."""

    kind: Literal["card", "pin", "qr"]
    value: str


class BadInput(ValueError):
    """Reader input that is not a credential; the message says why (never echoes a PIN)."""


def input_text(data: bytes | str) -> str:
    """A reader's message or line as stripped text, or BadInput (for every kind of reader)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("not UTF-8 text") from None
    text = data.strip()
    if not text:
        raise BadInput("empty")
    return text


def parse_input(data: bytes | str) -> Credential:
    """A reader's message or line as a credential, or BadInput."""
    text = input_text(data)
    if text.startswith(("{", "[", '"')):
        try:
            document = json.loads(text)
        except ValueError:
            raise BadInput("not valid JSON") from None
        if isinstance(document, str):  # a JSON string: the card number
            return _checked("card", document.strip())
        keys = [k for k in ("card", "pin", "qr") if k in document] if isinstance(document, dict) else []
        if len(keys) != 1:
            raise BadInput('JSON must have exactly one of "card", "pin" or "qr"')
        value = document[keys[0]]
        if isinstance(value, int) and not isinstance(value, bool) and keys[0] != "qr":
            value = str(value)
        if not isinstance(value, str):
            raise BadInput(f'"{keys[0]}" must be a string')
        return _checked(keys[0], value.strip())  # type: ignore[arg-type]
    for prefix in ("pin", "qr"):
        if text.lower().startswith(prefix + ":"):
            return _checked(prefix, text[len(prefix) + 1 :].strip())  # type: ignore[arg-type]
    return _checked("card", text)


def _checked(kind: Literal["card", "pin", "qr"], value: str) -> Credential:
    if kind == "card" and not _CARD.match(value):
        raise BadInput("a card number is 4 to 32 decimal or hexadecimal digits")
    if kind == "pin" and not _PIN.match(value):
        raise BadInput("a PIN is 4 to 12 digits")
    if kind == "qr" and not (0 < len(value) <= _QR_MAX):
        raise BadInput(f"a QR token is 1 to {_QR_MAX} characters")
    return Credential(kind, value)


#: Called on the loop: (reader, what `parse` made of its input: a Credential for door readers).
OnCredential = Callable[[Any, Any], None]
#: A reader's message or line as what its consumer wants, or BadInput (parse_input for door readers).
Parse = Callable[[bytes | str], object]


def _deliver(reader: ReaderInput, data: bytes | str, on_credential: OnCredential, parse: Parse) -> None:
    try:
        value = parse(data)
    except BadInput as exc:
        log.warning("reader %s: input ignored: %s", reader.name, exc)
        return
    on_credential(reader, value)


class MqttReaders:
    """Every `mqtt` reader of the gateway (door or checkpoint readers), on one client of the local broker."""

    def __init__(
        self,
        readers: list[ReaderInput],
        endpoint: MqttEndpoint,
        client_id: str,
        on_credential: OnCredential,
        *,
        parse: Parse = parse_input,
        label: str = "card readers",
    ) -> None:
        self.endpoint = endpoint
        self.on_credential = on_credential
        self.parse = parse
        self.label = label
        self._by_topic: dict[str, list[ReaderInput]] = {}
        for reader in readers:
            assert reader.topic is not None
            self._by_topic.setdefault(reader.topic, []).append(reader)
        self._client = make_client(client_id, endpoint, clean_session=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.on_subscribe = lambda *_a: self._loop.call_soon_threadsafe(self.subscribed.set)  # type: ignore[union-attr]
        self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self._client.loop_start()

    async def stop(self) -> None:
        await asyncio.to_thread(self._disconnect)

    def _disconnect(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: broker %s refused the connection: %s", self.label, where(self.endpoint), reason)
            return
        log.info("%s: listening on %s for %d topic(s)", self.label, where(self.endpoint), len(self._by_topic))
        client.subscribe([(t, 1) for t in self._by_topic])

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle, message.topic, bytes(message.payload))

    def _handle(self, topic: str, payload: bytes) -> None:
        for reader in self._by_topic.get(topic, []):
            _deliver(reader, payload, self.on_credential, self.parse)


class LineReader:
    """A `serial` or `keyboard` reader: lines from a serial port, a FIFO or a terminal, on the loop.

    The descriptor is watched by the event loop (no thread); after an error or the end of the
    input the path is reopened, waiting `retry` seconds, doubling up to `retry_cap`.
    """

    def __init__(
        self,
        reader: ReaderInput,
        on_credential: OnCredential,
        *,
        parse: Parse = parse_input,
        retry: float = 0.5,
        retry_cap: float = 30.0,
    ) -> None:
        assert reader.path is not None
        self.reader = reader
        self.on_credential = on_credential
        self.parse = parse
        self.retry = retry
        self.retry_cap = retry_cap
        self.opened = asyncio.Event()
        self._buffer = b""

    async def run(self) -> None:
        delay = self.retry
        while True:
            try:
                await self._session()
                delay = self.retry
            except OSError as exc:
                log.warning("reader %s: %s: %s; retrying in %.1f s", self.reader.name, self.reader.path, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_cap)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        port, fd = self._open()
        closed = loop.create_future()
        self._buffer = b""

        def readable() -> None:
            try:
                chunk = port.read(port.in_waiting or 1) if port is not None else os.read(fd, 4096)
            except Exception as exc:
                if not closed.done():
                    closed.set_exception(OSError(str(exc)))
                return
            if not chunk:
                if port is None and not closed.done():
                    closed.set_exception(OSError("end of input"))
                return
            self._feed(chunk)

        try:
            loop.add_reader(fd, readable)
            self.opened.set()
            log.info("reader %s: reading %s", self.reader.name, self.reader.path)
            await closed
        finally:
            self.opened.clear()
            loop.remove_reader(fd)  # (nothing to remove when add_reader failed)
            if port is not None:
                port.close()
            else:
                os.close(fd)

    def _open(self) -> tuple[object, int]:
        assert self.reader.path is not None
        if self.reader.kind == "serial":
            import serial  # pyserial comes with pymodbus[serial]

            try:
                port = serial.Serial(self.reader.path, self.reader.baudrate, timeout=0)
            except serial.SerialException as exc:
                raise OSError(str(exc)) from None
            return port, port.fileno()
        # A FIFO opened read-write never reads end-of-file when a writer closes it.
        mode = stat.S_IFMT(os.stat(self.reader.path).st_mode)
        if mode == stat.S_IFREG:
            raise OSError("a regular file cannot be watched for typing: use a FIFO (mkfifo) or a terminal device")
        flags = (os.O_RDWR if mode == stat.S_IFIFO else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOCTTY
        return None, os.open(self.reader.path, flags)

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *lines, self._buffer = re.split(rb"[\r\n]", self._buffer)
        if len(self._buffer) > _LINE_MAX:
            log.warning("reader %s: input ignored: a line longer than %d bytes", self.reader.name, _LINE_MAX)
            self._buffer = b""
        for line in lines:
            if line.strip():
                _deliver(self.reader, line, self.on_credential, self.parse)


async def stop_task(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
