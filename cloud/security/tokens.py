"""Login tokens: JWT (HS256) with the user id, role, token version and an expiry."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    role: str
    version: int


class InvalidToken(Exception):
    pass


def issue(secret: str, *, user_id: int, role: str, version: int, now: datetime, minutes: int) -> str:
    payload = {
        "sub": str(user_id),
        "role": role,
        "ver": version,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=minutes)).timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def read(secret: str, token: str, *, now: datetime) -> TokenClaims:
    """The claims of a valid token; InvalidToken when it is malformed, forged or expired."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    # expiry against the injectable clock, not the machine's
    if payload["exp"] <= now.timestamp():
        raise InvalidToken("token expired")
    try:
        return TokenClaims(user_id=int(payload["sub"]), role=str(payload["role"]), version=int(payload["ver"]))
    except (KeyError, ValueError, TypeError):
        raise InvalidToken("token claims are incomplete") from None
