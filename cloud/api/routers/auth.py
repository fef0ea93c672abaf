"""Login (OAuth2 password flow) and the logged-in user's own account."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, PrincipalDep
from cloud.api.errors import ApiError
from cloud.domain import audit
from cloud.security import tokens
from cloud.security.passwords import MIN_LENGTH, hash_password, verify_password

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str


class Me(BaseModel):
    user_id: int
    username: str
    role: str
    person_id: int
    name: str
    sites: list[str] | None
    department_id: int | None
    units: list[int]


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=200)
    new_password: str = Field(min_length=MIN_LENGTH, max_length=200)


@router.post("/auth/token", response_model=Token)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, conn: Conn, clock: ClockDep
) -> Token:
    """Exchange a username and password for a bearer token (OAuth2 password flow)."""
    username = form.username.strip().lower()[:100]
    row = conn.execute(
        "SELECT id, password_hash, role, active, token_version FROM users WHERE username = %s", (username,)
    ).fetchone()
    ok = verify_password(form.password[:200], row["password_hash"] if row else None)
    if not ok or row is None or not row["active"]:
        log.warning("failed login for %r", username)
        raise ApiError(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    now = clock.now()
    settings = request.app.state.settings
    conn.execute("UPDATE users SET last_login_at = %s WHERE id = %s", (now, row["id"]))
    audit.record(conn, actor=username, action="login", entity="user", entity_id=row["id"], now=now)
    token = tokens.issue(
        request.app.state.secrets.jwt_secret,
        user_id=row["id"],
        role=row["role"],
        version=row["token_version"],
        now=now,
        minutes=settings.token_minutes,
    )
    return Token(access_token=token, expires_in=settings.token_minutes * 60, role=row["role"])


@router.get("/me", response_model=Me, tags=["people"])
def me(who: PrincipalDep) -> Me:
    """Who is logged in: role, sites, department, units."""
    return Me(
        user_id=who.user_id,
        username=who.username,
        role=who.role.value,
        person_id=who.person_id,
        name=who.name,
        sites=who.site_list(),
        department_id=who.department_id,
        units=sorted(who.unit_ids),
    )


@router.post("/me/password", status_code=204, tags=["people"])
def change_password(body: PasswordChange, who: PrincipalDep, conn: Conn, clock: ClockDep) -> None:
    """Change one's own password; every token issued before stops working."""
    row = conn.execute("SELECT password_hash FROM users WHERE id = %s", (who.user_id,)).fetchone()
    if row is None or not verify_password(body.current_password, row["password_hash"]):
        raise ApiError(422, "current_password: does not match")
    conn.execute(
        "UPDATE users SET password_hash = %s, token_version = token_version + 1 WHERE id = %s",
        (hash_password(body.new_password), who.user_id),
    )
    audit.record(conn, actor=who, action="change_password", entity="user", entity_id=who.user_id, now=clock.now())
