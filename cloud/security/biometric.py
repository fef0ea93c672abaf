"""Face encodings at rest: AES-GCM with a key of their own, bound to the person they belong to.

An encoding is biometric data: it is stored only encrypted, decrypted only to build gateway
whitelists and to refuse enrolling one face under two people, and never returned by the API.
The key is COMMUNITY_FACE_KEY when set, else derived (HKDF) from the personal-data key with a
purpose of its own, so it is never the key that encrypts phone numbers. The person's id is the
associated data: a ciphertext copied onto another person does not decrypt.
"""

import os
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contract.access import FACE_DIMENSIONS

_VERSION = b"\x01"
#: 128 little-endian doubles: the encoding exactly as computed
_PACK = struct.Struct(f"<{FACE_DIMENSIONS}d")


class FaceCipher:
    def __init__(self, key: bytes, *, derive: bool = True) -> None:
        if len(key) != 32:
            raise ValueError("the face key must be 32 bytes")
        if derive:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"community-face/encrypt").derive(key)
        self._aead = AESGCM(key)

    @staticmethod
    def _aad(person_id: int) -> bytes:
        return f"face-encoding:{person_id}".encode()

    def encrypt(self, person_id: int, encoding: Sequence[float]) -> bytes:
        values = [float(v) for v in encoding]
        if len(values) != FACE_DIMENSIONS:
            raise ValueError(f"a face encoding has {FACE_DIMENSIONS} values, not {len(values)}")
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, _PACK.pack(*values), self._aad(person_id))

    def seal(self, context: str, data: bytes) -> bytes:
        """Encrypt other data that carries encodings (a whitelist message), bound to `context`."""
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, data, context.encode())

    def open(self, context: str, blob: bytes) -> bytes:
        blob = bytes(blob)
        if blob[:1] != _VERSION:
            raise ValueError(f"{context}: unknown ciphertext version")
        return self._aead.decrypt(blob[1:13], blob[13:], context.encode())

    def decrypt(self, person_id: int, blob: bytes) -> list[float]:
        blob = bytes(blob)
        if blob[:1] != _VERSION:
            raise ValueError("face encoding: unknown ciphertext version")
        return list(_PACK.unpack(self._aead.decrypt(blob[1:13], blob[13:], self._aad(person_id))))


def face_cipher_from(face_key: str | None, data_key: bytes) -> FaceCipher:
    """COMMUNITY_FACE_KEY (base64, 32 bytes) used as is, else a key derived from the data key."""
    if face_key:
        from cloud.security.keys import _decode_key

        return FaceCipher(_decode_key(face_key, "COMMUNITY_FACE_KEY"), derive=False)
    return FaceCipher(data_key)
