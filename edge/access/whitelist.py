"""The gateway's copy of the cloud's whitelist: applied from full and delta messages, kept on disk.

The state is held as a full `WhitelistMessage` (base_version None) at the current version and
written atomically (temporary file, fsync, rename) after every change, so a restart decides with
what was last applied. Visitor-pass uses are counted down locally (a PIN works `uses` times even
offline); a whitelist from the cloud that names the pass again replaces the count with the
cloud's.

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

from contract.access import Card, TimeProfile, WhitelistMessage, WhitelistPass, WhitelistPerson

if TYPE_CHECKING:
    import numpy

log = logging.getLogger(__name__)


def card_key(number: str) -> str:
    """Card numbers compare without regard to case (hexadecimal readers differ)."""
    return number.strip().upper()


class Whitelist:
    """One whitelist version, indexed for the door's lookups. Read-only for deciders."""

    def __init__(self, message: WhitelistMessage) -> None:
        self.message = message
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


class WhitelistStore:
    """The current whitelist, on disk under the agent's state folder; `apply` takes the cloud's messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.current: Whitelist | None = None
        self._faces: tuple[Any, Any] | None = None
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
            self.current = Whitelist(WhitelistMessage.model_validate_json(text))
        except ValidationError as exc:
            log.error("whitelist: %s is not a valid whitelist (%s); asking the cloud for a full one", self.path, exc)
            return
        log.info("whitelist: version %d from %s (%d people)", self.current.version, self.path, len(self.current.people))
        _settle()

    def _save(self, message: WhitelistMessage) -> None:
        """Write to a temporary file, flush it to disk, then rename over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(message.model_dump_json(exclude_none=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _set(self, message: WhitelistMessage) -> None:
        self._save(message)
        self.current = Whitelist(message)
        self._faces = None
        _settle()

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
            self._set(msg)
        else:
            if self.current is None or msg.base_version != held:
                log.warning("whitelist: delta %d->%d does not apply to version %s", msg.base_version, msg.version, held)
                return False
            self._set(_merge(self.current.message, msg))
        assert self.current is not None
        log.info(
            "whitelist: version %d applied (%s; %d people, %d passes)",
            msg.version, "full" if msg.base_version is None else f"delta from {msg.base_version}",
            len(self.current.people), len(self.current.passes),
        )  # fmt: skip
        return True

    def use_pass(self, pass_id: UUID) -> int:
        """Count one use of a visitor pass down, on disk; the uses left."""
        assert self.current is not None
        message = self.current.message
        passes = [p.model_copy(update={"uses": max(0, p.uses - 1)}) if p.id == pass_id else p for p in message.passes]
        self._set(message.model_copy(update={"passes": passes}))
        return self.current.passes[pass_id].uses

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


def _settle() -> None:
    """Take what is alive now out of the cyclic garbage collector's scans (`gc.freeze`).

    A whitelist of 100,000 people is millions of objects; a full collection over them stops the
    event loop for about half a second, which would be a swipe waiting that long. They are
    long-lived and freed by reference counting when a new version replaces them, so the
    collector has no reason to look at them.
    """
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
