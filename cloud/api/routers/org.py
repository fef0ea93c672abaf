"""The organisation: departments, staff (department, skills, sites) and logins with their roles."""

from datetime import datetime
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, EmailStr, Field

from cloud.api.deps import CipherDep, ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.api.routers.people import Name, Phone
from cloud.domain import audit, people, records
from cloud.domain.access import MANAGEMENT, OFFICE, STAFF, Principal, Role
from cloud.security.passwords import MIN_LENGTH, hash_password
from cloud.security.pii import PiiCipher

router = APIRouter(prefix="/api/v1", tags=["organisation"])

Skill = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")]
Username = Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=200)]
#: roles a manager may hand out; only an admin makes managers and admins
MANAGER_GRANTS = {Role.SERVICE_DESK, Role.TECHNICIAN, Role.GUARD, Role.RESIDENT}


class DepartmentIn(BaseModel):
    name: Name
    description: Annotated[str, Field(max_length=1000)] = ""
    manager_user_id: int | None = None


class DepartmentPatch(BaseModel):
    name: Name | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    manager_user_id: int | None = None


class DepartmentOut(BaseModel):
    id: int
    name: str
    description: str
    manager_user_id: int | None


class LoginIn(BaseModel):
    username: Username
    password: Password
    role: Role


class StaffIn(BaseModel):
    full_name: Name
    phone: Phone | None = None
    email: EmailStr | None = None
    department_id: int | None = None
    title: Annotated[str, Field(max_length=100)] = ""
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    sites: list[Annotated[str, Field(max_length=63)]] = Field(min_length=1, max_length=100)
    on_duty: bool = True
    login: LoginIn | None = None


class StaffPatch(BaseModel):
    department_id: int | None = None
    title: Annotated[str, Field(max_length=100)] | None = None
    skills: list[Skill] | None = Field(default=None, max_length=50)
    sites: list[Annotated[str, Field(max_length=63)]] | None = Field(default=None, min_length=1, max_length=100)
    on_duty: bool | None = None


class StaffOut(BaseModel):
    person_id: int
    full_name: str
    phone: str | None
    email: str | None
    department_id: int | None
    title: str
    skills: list[str]
    sites: list[str]
    on_duty: bool
    user_id: int | None
    username: str | None
    role: str | None


class UserIn(BaseModel):
    person_id: int
    username: Username
    password: Password
    role: Role


class UserPatch(BaseModel):
    role: Role | None = None
    active: bool | None = None
    password: Password | None = None


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    person_id: int
    full_name: str
    active: bool


_STAFF_SQL = """
    SELECT p.id AS person_id, p.full_name, p.phone_enc, p.email_enc, s.department_id, s.title, s.skills, s.on_duty,
           ARRAY(SELECT site_id FROM staff_sites ss WHERE ss.person_id = p.id ORDER BY site_id) AS sites,
           u.id AS user_id, u.username, u.role
    FROM staff s JOIN people p ON p.id = s.person_id LEFT JOIN users u ON u.person_id = p.id
"""


def _staff_out(row: dict, cipher: PiiCipher, masked: bool = True) -> dict:
    shown = people.view(
        {**row, "id": row["person_id"], "kind": "staff", "created_at": None, "updated_at": None}, cipher, masked=masked
    )
    return {**row, "phone": shown["phone"], "email": shown["email"]}


def _check_grant(who: Principal, role: Role) -> None:
    if who.role != Role.ADMIN and role not in MANAGER_GRANTS:
        raise ApiError(403, f"only an admin may make a user with the role {role.value}")


def _check_sites(conn: psycopg.Connection, who: Principal, sites: list[str]) -> None:
    for site in sites:
        if records.fetch(conn, "sites", site) is None or not who.reaches_site(site):
            raise ApiError(404, f"site {site} does not exist")


def _check_department(conn: psycopg.Connection, department_id: int | None) -> None:
    if department_id is not None and records.fetch(conn, "departments", department_id) is None:
        raise ApiError(404, f"department {department_id} does not exist")


def _username_free(conn: psycopg.Connection, username: str) -> None:
    if conn.execute("SELECT 1 FROM users WHERE username = %s", (username.lower(),)).fetchone():
        raise ApiError(409, f"the username {username.lower()} is taken")


def _staff_in_reach(conn: psycopg.Connection, who: Principal, person_id: int) -> dict:
    row = conn.execute(_STAFF_SQL + " WHERE p.id = %s", (person_id,)).fetchone()
    if row is None or (who.site_ids is not None and not (set(row["sites"]) & who.site_ids)):
        raise ApiError(404, f"staff member {person_id} does not exist")
    return row


@router.get("/departments", response_model=list[DepartmentOut])
def list_departments(conn: Conn, _who: Annotated[Principal, Depends(allow(*STAFF))]) -> list[dict]:
    return conn.execute("SELECT id, name, description, manager_user_id FROM departments ORDER BY name").fetchall()


@router.post("/departments", response_model=DepartmentOut, status_code=201)
def create_department(
    body: DepartmentIn, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> dict:
    if conn.execute("SELECT 1 FROM departments WHERE name = %s", (body.name,)).fetchone():
        raise ApiError(409, f"a department {body.name!r} exists")
    if body.manager_user_id is not None and records.fetch(conn, "users", body.manager_user_id) is None:
        raise ApiError(404, f"user {body.manager_user_id} does not exist")
    return records.insert(conn, "departments", body.model_dump(), actor=who, now=clock.now())


@router.patch("/departments/{department_id}", response_model=DepartmentOut)
def update_department(
    department_id: int,
    body: DepartmentPatch,
    conn: Conn,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*MANAGEMENT))],
) -> dict:
    _check_department(conn, department_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("manager_user_id") is not None and records.fetch(conn, "users", changes["manager_user_id"]) is None:
        raise ApiError(404, f"user {changes['manager_user_id']} does not exist")
    try:
        with conn.transaction():
            return records.update(
                conn,
                "departments",
                department_id,
                changes,
                columns=("name", "description", "manager_user_id"),
                actor=who,
                now=clock.now(),
            )
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, f"a department {body.name!r} exists") from None


@router.get("/staff", response_model=list[StaffOut])
def list_staff(
    conn: Conn,
    cipher: CipherDep,
    who: Annotated[Principal, Depends(allow(*OFFICE))],
    site: Annotated[str | None, Query(max_length=63)] = None,
    department_id: int | None = None,
    skill: Annotated[str | None, Query(max_length=40)] = None,
) -> list[dict]:
    """Staff of the sites within reach, personal data masked."""
    rows = conn.execute(
        _STAFF_SQL
        + """ WHERE (%(all)s OR EXISTS (SELECT 1 FROM staff_sites ss WHERE ss.person_id = p.id
                                        AND ss.site_id = ANY(%(sites)s)))
              AND (%(site)s::text IS NULL OR EXISTS (SELECT 1 FROM staff_sites ss WHERE ss.person_id = p.id
                                                     AND ss.site_id = %(site)s))
              AND (%(dept)s::bigint IS NULL OR s.department_id = %(dept)s)
              AND (%(skill)s::text IS NULL OR %(skill)s = ANY(s.skills))
            ORDER BY p.full_name""",
        {
            "all": who.site_ids is None,
            "sites": who.site_list() or [],
            "site": site,
            "dept": department_id,
            "skill": skill,
        },
    ).fetchall()
    return [_staff_out(r, cipher) for r in rows]


@router.post("/staff", response_model=StaffOut, status_code=201)
def create_staff(
    body: StaffIn,
    conn: Conn,
    cipher: CipherDep,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*MANAGEMENT))],
) -> dict:
    """Add a member of staff: department, skills, the sites they work at, and optionally their login."""
    now = clock.now()
    _check_sites(conn, who, body.sites)
    _check_department(conn, body.department_id)
    if body.login is not None:
        _check_grant(who, body.login.role)
        if body.login.role == Role.RESIDENT:
            raise ApiError(422, "login.role: staff cannot have the role resident")
        _username_free(conn, body.login.username)
    person = people.create(
        conn,
        cipher,
        kind="staff",
        full_name=body.full_name,
        data=body.model_dump(include={"phone", "email"}),
        actor=who,
        now=now,
    )
    records.insert(
        conn,
        "staff",
        {
            "person_id": person["id"],
            "department_id": body.department_id,
            "title": body.title,
            "skills": sorted(set(body.skills)),
            "on_duty": body.on_duty,
        },
        actor=who,
        now=now,
    )
    for site in sorted(set(body.sites)):
        conn.execute("INSERT INTO staff_sites (person_id, site_id) VALUES (%s, %s)", (person["id"], site))
    if body.login is not None:
        _create_user(conn, who, person["id"], body.login.username, body.login.password, body.login.role, now)
    return _staff_out(_staff_in_reach(conn, who, person["id"]), cipher)


@router.patch("/staff/{person_id}", response_model=StaffOut)
def update_staff(
    person_id: int,
    body: StaffPatch,
    conn: Conn,
    cipher: CipherDep,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*MANAGEMENT))],
) -> dict:
    now = clock.now()
    before = _staff_in_reach(conn, who, person_id)
    changes = body.model_dump(exclude_unset=True)
    sites = changes.pop("sites", None)
    if "department_id" in changes:
        _check_department(conn, changes["department_id"])
    if "skills" in changes:
        changes["skills"] = sorted(set(changes["skills"] or []))
    records.update(
        conn,
        "staff",
        person_id,
        changes,
        columns=("department_id", "title", "skills", "on_duty"),
        actor=who,
        now=now,
        key="person_id",
    )
    if sites is not None:
        _check_sites(conn, who, sites)
        # a manager moves staff only among the sites they manage themselves
        kept = [s for s in before["sites"] if not who.reaches_site(s)]
        conn.execute("DELETE FROM staff_sites WHERE person_id = %s", (person_id,))
        for site in sorted(set(sites) | set(kept)):
            conn.execute("INSERT INTO staff_sites (person_id, site_id) VALUES (%s, %s)", (person_id, site))
        audit.record(
            conn,
            actor=who,
            action="update",
            entity="staff_sites",
            entity_id=person_id,
            now=now,
            before={"sites": before["sites"]},
            after={"sites": sorted(set(sites) | set(kept))},
        )
    return _staff_out(_staff_in_reach(conn, who, person_id), cipher)


def _create_user(
    conn: psycopg.Connection, who: Principal, person_id: int, username: str, password: str, role: Role, now: datetime
) -> dict:
    row = conn.execute(
        """INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, %s, %s)
           RETURNING id, username, role, person_id, active""",
        (username.lower(), hash_password(password), role.value, person_id),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=who, action="create", entity="users", entity_id=row["id"], now=now, after=row)
    return row


@router.get("/users", response_model=list[UserOut])
def list_users(conn: Conn, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]) -> list[dict]:
    return conn.execute(
        f"""SELECT u.id, u.username, u.role, u.person_id, p.full_name, u.active
            FROM users u JOIN people p ON p.id = u.person_id
            WHERE {people.REACH_SQL} ORDER BY u.username""",
        people.reach_params(who),
    ).fetchall()


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*OFFICE))]) -> dict:
    """Give a person a login. The service desk gives residents theirs; managers give staff roles below theirs."""
    if who.role == Role.SERVICE_DESK and body.role != Role.RESIDENT:
        raise ApiError(403, "the service desk may only give residents a login")
    _check_grant(who, body.role)
    person = conn.execute(
        f"SELECT p.id, p.kind, p.full_name FROM people p WHERE p.id = %(id)s AND {people.REACH_SQL}",
        {"id": body.person_id, **people.reach_params(who)},
    ).fetchone()
    if person is None:
        raise ApiError(404, f"person {body.person_id} does not exist")
    if (person["kind"] == "resident") != (body.role == Role.RESIDENT):
        raise ApiError(422, f"role: a {person['kind']} cannot have the role {body.role.value}")
    if conn.execute("SELECT 1 FROM users WHERE person_id = %s", (body.person_id,)).fetchone():
        raise ApiError(409, f"person {body.person_id} already has a login")
    _username_free(conn, body.username)
    row = _create_user(conn, who, body.person_id, body.username, body.password, body.role, clock.now())
    return {**row, "full_name": person["full_name"]}


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(
    user_id: int, body: UserPatch, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> dict:
    """Change a user's role, deactivate them, or set a new password (their tokens stop working)."""
    target = conn.execute(
        f"""SELECT u.*, p.full_name FROM users u JOIN people p ON p.id = u.person_id
            WHERE u.id = %(id)s AND {people.REACH_SQL}""",
        {"id": user_id, **people.reach_params(who)},
    ).fetchone()
    if target is None:
        raise ApiError(404, f"user {user_id} does not exist")
    _check_grant(who, Role(target["role"]))
    changes: dict = {}
    if body.role is not None:
        _check_grant(who, body.role)
        if (body.role == Role.RESIDENT) != (target["role"] == Role.RESIDENT.value):
            raise ApiError(422, "role: residents and staff cannot swap roles")
        changes["role"] = body.role.value
    if body.active is not None:
        changes["active"] = body.active
    if body.password is not None:
        changes["password_hash"] = hash_password(body.password)
    if "password_hash" in changes or changes.get("active") is False or "role" in changes:
        changes["token_version"] = target["token_version"] + 1
    row = records.update(
        conn,
        "users",
        user_id,
        changes,
        columns=("role", "active", "password_hash", "token_version"),
        actor=who,
        now=clock.now(),
    )
    return {**row, "full_name": target["full_name"]}
