"""Password hashing with Argon2 (pwdlib's recommended hasher)."""

from pwdlib import PasswordHash

_hasher = PasswordHash.recommended()
#: Verified against when the user does not exist, so a login takes as long either way.
_DUMMY = _hasher.hash("a password nobody has")

MIN_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _DUMMY)
        return False
    return _hasher.verify(password, password_hash)
