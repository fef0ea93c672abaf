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
            # times are checked below against the injectable clock, not the machine's
            options={"require": ["sub", "exp", "iat"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    if payload["exp"] <= now.timestamp():
        raise InvalidToken("token expired")
    if payload["iat"] > now.timestamp() + 60:
        raise InvalidToken("token issued in the future")
    try:
        return TokenClaims(user_id=int(payload["sub"]), role=str(payload["role"]), version=int(payload["ver"]))
    except (KeyError, ValueError, TypeError):
        raise InvalidToken("token claims are incomplete") from None
