"""Dependencies every router shares: a database connection, the clock, and who is acting.

`principal` reads the bearer token (POST /api/v1/auth/token) — or the web screens' session cookie,
which holds the same token — checks it against the injectable clock and the user's current token
version, and loads what the user reaches. `allow(...)` turns a list of roles into a dependency that
refuses the others with a 403.

The cookie is HttpOnly and SameSite=Strict; on top of that, a request authenticated by the cookie
that changes something (any method but GET, HEAD, OPTIONS) must carry `X-Requested-With:
community-web`, which a page of another origin cannot add without a CORS preflight this API never
grants: the guard against cross-site request forgery (docs/web.md).
"""

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from cloud.api.errors import ApiError
from cloud.domain.access import Principal, Role, load_principal
from cloud.security import tokens
from cloud.security.pii import PiiCipher
from contract.clock import Clock

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
_BEARER = {"WWW-Authenticate": "Bearer"}

#: the web screens' login cookie (cloud/web/pages.py sets it): the bearer token itself
SESSION_COOKIE = "community_session"
#: the header (and its value) every state-changing request authenticated by the cookie must carry
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "community-web"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def db_slot(request: Request) -> AsyncIterator[None]:
    """Wait, on the event loop, for one of the pool's connections to be free.

    Without this, requests waiting for a connection would each hold one of the thread pool's
    threads, and with enough of them the requests that hold connections could get no thread to
    finish on: the API would stall. Waiting here takes no thread.
    """
    async with request.app.state.db_slots:
        yield


def get_conn(
    request: Request, _slot: Annotated[None, Depends(db_slot, scope="function")]
) -> Iterator[psycopg.Connection]:
    """A pooled connection for one request: one transaction, committed when the handler returns
    normally (before the response is sent), rolled back when it raises."""
    pool = request.app.state.pool
    with pool.connection() as conn:
        yield conn


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def get_cipher(request: Request) -> PiiCipher:
    return request.app.state.cipher


#: function scope: the transaction commits when the handler returns, before the answer leaves
Conn = Annotated[psycopg.Connection, Depends(get_conn, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
CipherDep = Annotated[PiiCipher, Depends(get_cipher)]


def principal(
    request: Request, conn: Conn, clock: ClockDep, token: Annotated[str | None, Depends(oauth2)] = None
) -> Principal:
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        if token and request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
            raise ApiError(
                403, f"a request with the session cookie that changes something needs {CSRF_HEADER}: {CSRF_VALUE}"
            )
    if not token:
        raise ApiError(401, "not logged in: send a bearer token from POST /api/v1/auth/token", headers=_BEARER)
    return principal_of_token(request, conn, clock, token)


def principal_of_token(request: Request, conn: psycopg.Connection, clock: Clock, token: str) -> Principal:
    """The principal a token stands for (401 when it is invalid, expired, revoked or the user inactive)."""
    try:
        claims = tokens.read(request.app.state.secrets.jwt_secret, token, now=clock.now())
    except tokens.InvalidToken:
        raise ApiError(401, "the token is invalid or has expired: log in again", headers=_BEARER) from None
    loaded = load_principal(conn, claims.user_id)
    if loaded is None:
        raise ApiError(401, "the token is invalid or has expired: log in again", headers=_BEARER)
    who, version, active = loaded
    if not active or version != claims.version:
        raise ApiError(401, "the token is no longer valid: log in again", headers=_BEARER)
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only these roles through (403 for the others, 401 without login)."""
    allowed = frozenset(roles)

    def check(who: PrincipalDep) -> Principal:
        if who.role not in allowed:
            raise ApiError(403, f"not allowed for the role {who.role.value}")
        return who

    check.__name__ = "allow_" + "_".join(r.value for r in roles)
    return check
