"""The cloud's secrets: the token-signing secret and the personal-data key.

Taken from the settings when given (COMMUNITY_JWT_SECRET, COMMUNITY_DATA_KEY). Otherwise they
are generated once and kept in `data_dir/secrets.json` (mode 0600), so that `make demo` and a
first `community cloud` work on embedded defaults and every process of one installation agrees.
Losing the data key makes stored phone and ID numbers unreadable: back the file up.
"""

import base64
import fcntl
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cloud.settings import CloudSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secrets:
    jwt_secret: str
    data_key: bytes  # 32 bytes


def _decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError(f"{source}: the data key is not base64") from exc
    if len(key) != 32:
        raise ValueError(f"{source}: the data key must be 32 bytes (44 base64 characters), not {len(key)}")
    return key


def load_secrets(settings: CloudSettings) -> Secrets:
    jwt_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    data_key = _decode_key(settings.data_key.get_secret_value(), "COMMUNITY_DATA_KEY") if settings.data_key else None
    if jwt_secret and data_key:
        return Secrets(jwt_secret, data_key)
    path = Path(settings.data_dir) / "secrets.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # several processes start at once (API, ingest): one of them makes the file
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            stored = json.loads(path.read_text())
        else:
            stored = {
                "jwt_secret": secrets.token_urlsafe(48),
                "data_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(stored, f)
            log.warning(
                "generated a token secret and a personal-data key in %s: back this file up, or set "
                "COMMUNITY_JWT_SECRET and COMMUNITY_DATA_KEY",
                path,
            )
    return Secrets(
        jwt_secret=jwt_secret or stored["jwt_secret"],
        data_key=data_key or _decode_key(stored["data_key"], str(path)),
    )
