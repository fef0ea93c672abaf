"""Who is acting, and what they may see: roles and the rows each role reaches.

Every endpoint checks the role (may this kind of user do this at all?) and the row (is this
ticket, device or person within what this user reaches?). Rows out of reach answer exactly like
rows that do not exist, so a refusal tells nothing about what is there.
"""

from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg import sql


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    SERVICE_DESK = "service_desk"
    TECHNICIAN = "technician"
    GUARD = "guard"
    RESIDENT = "resident"


STAFF = (Role.ADMIN, Role.MANAGER, Role.SERVICE_DESK, Role.TECHNICIAN, Role.GUARD)
OFFICE = (Role.ADMIN, Role.MANAGER, Role.SERVICE_DESK)
MANAGEMENT = (Role.ADMIN, Role.MANAGER)


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    person_id: int
    name: str
    #: sites the user works at (staff) or lives at (residents); None: every site (admin)
    site_ids: frozenset[str] | None
    department_id: int | None
    unit_ids: frozenset[int]

    @property
    def actor(self) -> str:
        return self.username

    def reaches_site(self, site_id: str | None) -> bool:
        if self.site_ids is None:
            return True
        return site_id is not None and site_id in self.site_ids

    def site_list(self) -> list[str] | None:
        return None if self.site_ids is None else sorted(self.site_ids)


def load_principal(conn: psycopg.Connection, user_id: int) -> tuple[Principal, int, bool] | None:
    """The principal of a user, with the user's token version and whether the account is active."""
    row = conn.execute(
        """SELECT u.id, u.username, u.role, u.person_id, u.token_version, u.active, p.full_name,
                  s.department_id,
                  ARRAY(SELECT ss.site_id FROM staff_sites ss WHERE ss.person_id = u.person_id) AS staff_sites,
                  ARRAY(SELECT uo.unit_id FROM unit_occupants uo WHERE uo.person_id = u.person_id) AS units,
                  ARRAY(SELECT DISTINCT b.site_id FROM unit_occupants uo
                        JOIN units un ON un.id = uo.unit_id JOIN buildings b ON b.id = un.building_id
                        WHERE uo.person_id = u.person_id) AS home_sites
           FROM users u JOIN people p ON p.id = u.person_id
           LEFT JOIN staff s ON s.person_id = u.person_id
           WHERE u.id = %s""",
        (user_id,),
    ).fetchone()
    if row is None:
        return None
    role = Role(row["role"])
    if role == Role.ADMIN:
        sites = None
    elif role == Role.RESIDENT:
        sites = frozenset(row["home_sites"])
    else:
        sites = frozenset(row["staff_sites"])
    principal = Principal(
        user_id=row["id"],
        username=row["username"],
        role=role,
        person_id=row["person_id"],
        name=row["full_name"],
        site_ids=sites,
        department_id=row["department_id"],
        unit_ids=frozenset(row["units"]),
    )
    return principal, row["token_version"], row["active"]


def ticket_scope(p: Principal, alias: str = "t") -> sql.Composed:
    """A WHERE condition on tickets (alias `t`): the tickets this principal reaches.

    admin: all; manager and service desk: their sites; technician: their sites, and assigned to
    them or to their department; guard: safety tickets (type or category) of their sites, and any
    assigned to them; resident: the tickets they filed and those about their units.
    """
    t = sql.Identifier(alias)
    if p.role == Role.ADMIN:
        return sql.SQL("TRUE")
    if p.role == Role.RESIDENT:
        return sql.SQL("({t}.complainant_id = {person} OR {t}.unit_id = ANY({units}))").format(
            t=t, person=sql.Literal(p.person_id), units=sql.Literal(sorted(p.unit_ids))
        )
    in_sites = sql.SQL("{t}.site_id = ANY({sites})").format(t=t, sites=sql.Literal(sorted(p.site_ids or ())))
    if p.role in (Role.MANAGER, Role.SERVICE_DESK):
        return in_sites
    if p.role == Role.TECHNICIAN:
        return sql.SQL("({sites} AND ({t}.assignee_id = {me} OR {t}.department_id = {dept}))").format(
            sites=in_sites, t=t, me=sql.Literal(p.user_id), dept=sql.Literal(p.department_id)
        )
    return sql.SQL("({sites} AND ({t}.type = 'safety' OR {t}.category = 'safety' OR {t}.assignee_id = {me}))").format(
        sites=in_sites, t=t, me=sql.Literal(p.user_id)
    )


def site_scope(p: Principal, column: str) -> sql.Composed:
    """A WHERE condition: the column (a site id) is one of the principal's sites."""
    if p.site_ids is None:
        return sql.SQL("TRUE")
    return sql.SQL("{col} = ANY({sites})").format(col=sql.SQL(column), sites=sql.Literal(sorted(p.site_ids)))
