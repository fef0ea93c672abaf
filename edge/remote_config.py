"""Configuration pushed by the cloud: check it, keep the last good one on disk, say what runs.

The cloud publishes each gateway's configuration retained on its `config` topic with a version.
The agent validates a new version completely before touching anything it runs; a bad one is
refused with the reason (file-and-field, like a bad local file) and the last good configuration
keeps running. An applied version is saved on disk, so a restarted agent comes back with it even
while the broker is unreachable. The site and gateway identity always
come from the local file: the cloud cannot move a gateway.
"""

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from contract.clock import Clock
from contract.gateway_config import LoadedGatewayConfig, apply_remote_config
from contract.messages import ConfigMessage, ConfigState, InvalidMessage, decode
from contract.profiles import ProfileError
from contract.topics import Kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredConfig:
    version: int
    document: dict


class ConfigStore:
    """The last good pushed configuration, in one JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> StoredConfig | None:
        """The saved configuration, or None when there is none or it cannot be read (logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return StoredConfig(version=int(data["version"]), document=dict(data["config"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("remote config: %s cannot be read (%s); running the local file", self.path, exc)
            return None

    def save(self, stored: StoredConfig) -> None:
        """Write to a temporary file, flush it to disk, then rename over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump({"version": stored.version, "config": stored.document}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class RemoteConfigHandler:
    """Turns config payloads into an applied configuration and the ConfigState to report."""

    def __init__(
        self,
        local: LoadedGatewayConfig,
        store: ConfigStore,
        apply: Callable[[LoadedGatewayConfig], Awaitable[None]],
        clock: Clock,
    ) -> None:
        self.local = local
        self.store = store
        self._apply = apply
        self.clock = clock
        self.running: LoadedGatewayConfig = local

    @property
    def running_version(self) -> int | None:
        return self.running.version

    def initial(self) -> LoadedGatewayConfig:
        """What to start with: the saved pushed configuration when it is still valid, else the local file."""
        stored = self.store.load()
        if stored is None:
            return self.local
        try:
            self.running = apply_remote_config(self.local, stored.document, version=stored.version)
        except ProfileError as exc:
            log.error("remote config: the saved version %d no longer loads, running the local file: %s",
                      stored.version, exc)  # fmt: skip
            return self.local
        log.info("remote config: starting with version %d saved from the cloud", stored.version)
        return self.running

    async def handle(self, payload: bytes) -> ConfigState | None:
        """Check and apply one config payload; the state to report, or None for an empty retained message."""
        if not payload:
            return None  # the cloud removed the retained config: keep running what runs
        try:
            message = decode(Kind.CONFIG, payload)
        except InvalidMessage as exc:
            log.error("remote config refused: %s", exc.reason)
            version = _version_of(payload)
            if version is None:
                return None  # not even a version to answer about; logged
            return self._state(version, "refused", f"not a config message: {exc.reason}")
        assert isinstance(message, ConfigMessage)
        if message.version == self.running.version:
            return self._state(message.version, "applied")  # a retained copy after a reconnect
        if self.running.version is not None and message.version < self.running.version:
            reason = f"version {message.version} is older than the running version {self.running.version}"
            log.warning("remote config refused: %s", reason)
            return self._state(message.version, "refused", reason)
        try:
            loaded = apply_remote_config(self.local, message.config, version=message.version)
        except ProfileError as exc:
            log.error("remote config version %d refused, keeping %s: %s", message.version, self._describe(), exc)
            return self._state(message.version, "refused", str(exc))
        try:
            await self._apply(loaded)
        except Exception as exc:  # validated, yet the agent could not run it: go back to what ran
            log.exception(
                "remote config version %d could not be applied; back to %s", message.version, self._describe()
            )
            await self._apply(self.running)
            return self._state(message.version, "refused", f"could not be applied: {type(exc).__name__}: {exc}")
        self.running = loaded
        self.store.save(StoredConfig(version=message.version, document=message.config))
        log.info("remote config: version %d applied (%d device(s))", message.version, len(loaded.config.devices))
        return self._state(message.version, "applied")

    def _describe(self) -> str:
        return "the local file" if self.running.version is None else f"version {self.running.version}"

    def _state(self, version: int, status: str, reason: str | None = None) -> ConfigState:
        return ConfigState(
            ts=self.clock.now(),
            version=version,
            status=status,  # type: ignore[arg-type]
            running_version=self.running.version,
            reason=reason[:4000] if reason else None,
        )


def _version_of(payload: bytes) -> int | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) and version >= 1 else None
