"""The gateway's copy of the cloud's whitelist: applied from full and delta messages, kept on disk.

The state is held as a full `WhitelistMessage` (base_version None) at the current version and
written atomically (temporary file, fsync, rename) after every change, so a restart decides with
what was last applied. Visitor-pass uses are counted down locally (a PIN works `uses` times even
offline), in a small file of their own beside it (`….uses.json`: uses spent per pass since the
cloud last sent it), so a use does not rewrite the whole whitelist; a whitelist from the cloud
that names the pass again brings the cloud's count and the local one starts again from it.

Lookups are indexed: cards by number (case-insensitive), people by id, and for cameras a face
index (ids and a float32 matrix) rebuilt lazily after each change.
"""

import gc
import json
import logging
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from contract.access import Card, TimeProfile, WhitelistMessage, WhitelistPass, WhitelistPerson, WhitelistRequest
from contract.clock import Clock
from contract.messages import InvalidMessage, decode
from contract.topics import Kind

if TYPE_CHECKING:
    import numpy

log = logging.getLogger(__name__)


def card_key(number: str) -> str:
    """Card numbers compare without regard to case (hexadecimal readers differ)."""
    return number.strip().upper()


class Whitelist:
    """One whitelist version, indexed for the door's lookups. Read-only for deciders."""

    def __init__(self, message: WhitelistMessage, spent: dict[UUID, int] | None = None) -> None:
        self.message = message
        #: Uses of each pass made at this gateway since the cloud sent the pass (the store's).
        self.spent = spent if spent is not None else {}
        self.version = message.version
        self.timezone = message.timezone
        self.time_profiles: dict[str, TimeProfile] = {p.id: p for p in message.time_profiles or []}
        self.holidays: set[date] = set(message.holidays or [])
        self.people: dict[int, WhitelistPerson] = {p.id: p for p in message.people}
        self.passes: dict[UUID, WhitelistPass] = {p.id: p for p in message.passes}
        self.cards: dict[str, tuple[WhitelistPerson, Card]] = {}
        for person in message.people:
            for card in person.cards:
                key = card_key(card.number)
                if key in self.cards:
                    log.warning("whitelist v%d: card %s is listed twice; the last one counts", self.version, key[-4:])
                self.cards[key] = (person, card)

    def card(self, number: str) -> tuple[WhitelistPerson, Card] | None:
        return self.cards.get(card_key(number))

    def uses_left(self, visitor_pass: WhitelistPass) -> int:
        return max(0, visitor_pass.uses - self.spent.get(visitor_pass.id, 0))


class WhitelistStore:
    """The current whitelist, on disk under the agent's state folder; `apply` takes the cloud's messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.uses_path = self.path.with_suffix(".uses.json")
        self.current: Whitelist | None = None
        self._faces: tuple[Any, Any] | None = None
        self._spent: dict[UUID, int] = {}
        self._load()

    @property
    def version(self) -> int | None:
        return self.current.version if self.current is not None else None

    # -- disk ----------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("whitelist: %s cannot be read (%s); asking the cloud for a full one", self.path, exc)
            return
        try:
            spent = json.loads(self.uses_path.read_text(encoding="utf-8")) if self.uses_path.exists() else {}
            self._spent = {UUID(k): int(v) for k, v in spent.items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error(
                "whitelist: %s cannot be read (%s); pass uses count from the cloud's figures", self.uses_path, exc
            )
        try:
            self.current = Whitelist(WhitelistMessage.model_validate_json(text), self._spent)
        except ValidationError as exc:
            log.error("whitelist: %s is not a valid whitelist (%s); asking the cloud for a full one", self.path, exc)
            return
        log.info("whitelist: version %d from %s (%d people)", self.current.version, self.path, len(self.current.people))
        _settle(self.current)

    def _save(self, message: WhitelistMessage) -> None:
        _write_atomically(self.path, message.model_dump_json(exclude_none=True))

    def _save_spent(self) -> None:
        _write_atomically(self.uses_path, json.dumps({str(k): v for k, v in self._spent.items()}))

    def _set(self, message: WhitelistMessage) -> None:
        self._save(message)
        self._save_spent()
        self.current = Whitelist(message, self._spent)
        self._faces = None
        _settle(self.current)

    # -- applying ------------------------------------------------------------------------------

    def apply(self, msg: WhitelistMessage) -> bool:
        """Apply a full whitelist, or a delta whose base is the version held.

        False when a delta does not apply to what is held (the caller asks for a full one);
        True when applied, or when `msg` is not newer than what is held (a repeat: nothing to do).
        """
        held = self.version
        if held is not None and msg.version <= held:
            log.info("whitelist: version %d ignored, version %d is held", msg.version, held)
            return True
        if msg.base_version is None:
            self._spent.clear()  # every pass comes with the cloud's count
            self._set(msg)
        else:
            if self.current is None or msg.base_version != held:
                log.warning("whitelist: delta %d->%d does not apply to version %s", msg.base_version, msg.version, held)
                return False
            for pass_id in [*(p.id for p in msg.passes), *msg.removed_passes]:
                self._spent.pop(pass_id, None)
            self._set(_merge(self.current.message, msg))
        assert self.current is not None
        log.info(
            "whitelist: version %d applied (%s; %d people, %d passes)",
            msg.version, "full" if msg.base_version is None else f"delta from {msg.base_version}",
            len(self.current.people), len(self.current.passes),
        )  # fmt: skip
        return True

    def receive(self, payload: bytes) -> str | None:
        """Apply a whitelist payload from the cloud; why a full one is needed, or None.

        A payload that is not a whitelist is logged and dropped; a disk that cannot take it keeps
        the version held (the next delta will not fit, and that asks)."""
        try:
            message = decode(Kind.ACCESS_WHITELIST, payload)
        except InvalidMessage as exc:
            log.error("whitelist refused: %s", exc.reason)
            return None
        assert isinstance(message, WhitelistMessage)
        try:
            applied = self.apply(message)
        except OSError as exc:
            log.error("whitelist version %d could not be saved (%s); keeping version %s", message.version, exc,
                      self.version)  # fmt: skip
            return None
        return None if applied else f"delta from {message.base_version} does not apply to version {self.version}"

    def request(self, clock: Clock, reason: str) -> WhitelistRequest:
        """The message that asks the cloud for the full whitelist."""
        log.info("whitelist: asking the cloud for a full one (%s)", reason)
        return WhitelistRequest(ts=clock.now(), have_version=self.version, reason=reason)

    def use_pass(self, pass_id: UUID) -> int:
        """Count one use of a visitor pass down, on disk; the uses left."""
        assert self.current is not None
        self._spent[pass_id] = self._spent.get(pass_id, 0) + 1
        self._save_spent()
        return self.current.uses_left(self.current.passes[pass_id])

    # -- faces ---------------------------------------------------------------------------------

    def face_index(self) -> "tuple[numpy.ndarray, numpy.ndarray]":
        """(person ids int64 [N], encodings float32 [N,128]) of everyone with a face; a person with
        several encodings appears once per encoding. Rebuilt after the whitelist changes."""
        import numpy

        if self._faces is None:
            ids: list[int] = []
            rows: list[list[float]] = []
            for person in self.current.people.values() if self.current else []:
                for encoding in person.faces:
                    ids.append(person.id)
                    rows.append(encoding)
            self._faces = (
                numpy.asarray(ids, dtype=numpy.int64),
                numpy.asarray(rows, dtype=numpy.float32).reshape(len(rows), 128),
            )
        return self._faces

    def dump(self) -> dict[str, Any]:
        """The held whitelist as JSON data (for logs and tests)."""
        return json.loads(self.current.message.model_dump_json()) if self.current else {}


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file, flush it to disk, then rename over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


#: Entries (people and passes) from which a whitelist is taken out of the garbage collector's scans.
FREEZE_FROM = 1000


def _settle(whitelist: Whitelist) -> None:
    """Take what is alive now out of the cyclic garbage collector's scans (`gc.freeze`), for a large
    whitelist.

    A whitelist of 100,000 people is millions of objects; a full collection over them stops the
    event loop for about half a second, which would be a swipe waiting that long. They are
    long-lived and freed by reference counting when a new version replaces them, so the
    collector has no reason to look at them. (What else is alive at that moment is frozen too:
    cyclic garbage it later becomes is not collected, which is why small whitelists, cheap to
    scan, are left alone.)
    """
    if len(whitelist.people) + len(whitelist.passes) >= FREEZE_FROM:
        gc.freeze()


def _merge(base: WhitelistMessage, delta: WhitelistMessage) -> WhitelistMessage:
    """`base` with `delta`'s upserts and removals: a full whitelist at the delta's version."""
    people = {p.id: p for p in base.people}
    for person_id in delta.removed_people:
        people.pop(person_id, None)
    for person in delta.people:
        people[person.id] = person
    passes = {p.id: p for p in base.passes}
    for pass_id in delta.removed_passes:
        passes.pop(pass_id, None)
    for visitor_pass in delta.passes:
        passes[visitor_pass.id] = visitor_pass
    return WhitelistMessage(
        id=delta.id,
        ts=delta.ts,
        version=delta.version,
        base_version=None,
        timezone=delta.timezone,
        time_profiles=delta.time_profiles if delta.time_profiles is not None else base.time_profiles,
        holidays=delta.holidays if delta.holidays is not None else base.holidays,
        people=list(people.values()),
        passes=list(passes.values()),
    )
