"""SMS behind one small interface; the shipped provider writes each message to a log file."""

import json
import threading
from datetime import UTC
from pathlib import Path
from typing import Protocol

from cloud.notify import SendError
from cloud.settings import CloudSettings
from contract.clock import Clock, SystemClock


class SmsProvider(Protocol):
    def send(self, phone: str, text: str) -> None:
        """Send one text message or raise SendError."""


class LogSmsProvider:
    """Appends one JSON line per message (UTC time, number, text) to a file.

    This stands in for an SMS gateway on a machine that has none, so it records the number and
    the text in full: it is what would have been sent. A real deployment replaces it with an
    adapter for its provider's API (implementing SmsProvider) and keeps this file out of backups
    or rotates it, as it holds phone numbers.
    """

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> None:
        at = self._clock.now().astimezone(UTC).isoformat().replace("+00:00", "Z")
        line = json.dumps({"at": at, "to": phone, "text": text}, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one write in append mode: lines from several processes do not interleave
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            raise SendError(f"SMS log {self.path}: {exc}") from exc


def sms_provider_from(settings: CloudSettings, data_dir: Path | None = None) -> SmsProvider | None:
    """The configured provider: `log` writes to `sms_log_file` (default data_dir/sms.log), `none` gives None."""
    if settings.sms_provider == "none":
        return None
    if settings.sms_provider == "log":
        return LogSmsProvider(settings.sms_log_file or Path(data_dir or settings.data_dir) / "sms.log")
    raise ValueError(f"unknown SMS provider {settings.sms_provider!r}")
