"""Personal data at rest: AES-GCM encryption, a keyed hash for exact lookups, masking for lists.

Each value is encrypted with a fresh 96-bit nonce and the field's name as associated data, so a
ciphertext copied into another column does not decrypt. Beside it a keyed HMAC-SHA256 of the
normalised value lets the service desk find a caller by phone number without decrypting every
row. Both keys derive from the one data key (HKDF), never stored in the database.
"""

import hashlib
import hmac
import os
import re
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Field = Literal["phone", "id_number", "email"]
_VERSION = b"\x01"


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"community-pii/" + purpose).derive(key)


def normalise(field: Field, value: str) -> str:
    """The form that is hashed and stored: phone digits (with a leading +), upper-case ID, lower-case e-mail."""
    value = value.strip()
    if field == "phone":
        plus = value.startswith("+")
        digits = re.sub(r"\D", "", value)
        return ("+" if plus else "") + digits
    if field == "id_number":
        return re.sub(r"\s", "", value).upper()
    return value.lower()


class PiiCipher:
    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"encrypt"))
        self._mac_key = _derive(data_key, b"lookup")

    def encrypt(self, field: Field, value: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, normalise(field, value).encode(), field.encode())

    def decrypt(self, field: Field, blob: bytes) -> str:
        blob = bytes(blob)
        if blob[:1] != _VERSION:
            raise ValueError(f"{field}: unknown ciphertext version")
        return self._aead.decrypt(blob[1:13], blob[13:], field.encode()).decode()

    def lookup_hash(self, field: Field, value: str) -> bytes:
        return hmac.new(
            self._mac_key, field.encode() + b":" + normalise(field, value).encode(), hashlib.sha256
        ).digest()

    def seal(self, field: Field, value: str | None) -> tuple[bytes | None, bytes | None]:
        """(ciphertext, lookup hash) for a column pair; (None, None) for no value."""
        if value is None or not value.strip():
            return None, None
        return self.encrypt(field, value), self.lookup_hash(field, value)


def mask(field: Field, value: str | None) -> str | None:
    """What list views show: enough to recognise, not enough to use."""
    if not value:
        return value
    if field == "email":
        name, _, domain = value.partition("@")
        return (name[:1] + "***@" + domain) if domain else "***"
    keep_start = 3 if field == "phone" else 4
    keep_end = 4
    if len(value) <= keep_start + keep_end:
        return value[:1] + "*" * (len(value) - 1)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]
