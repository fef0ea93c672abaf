"""Which department a ticket goes to, and who in it takes the work.

Routing rules match on category, subcategory, building and site; the most specific matching
rule wins (then the lower `position`). A rule may name a skill and ask for automatic
assignment: the ticket then goes to an on-duty member of the department who works at the
ticket's site and has the skill, chosen by round robin (the one assigned longest ago) or by
least load (the fewest open tickets), ties broken by the other measure and then by id.
"""

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class Route:
    rule_id: int
    department_id: int
    skill: str | None
    auto_assign: bool
    strategy: str


def find_route(
    conn: psycopg.Connection,
    *,
    site_id: str | None,
    category: str,
    subcategory: str | None,
    building_id: int | None,
) -> Route | None:
    row = conn.execute(
        """SELECT id, department_id, skill, auto_assign, strategy FROM routing_rules
           WHERE active
             AND (site_id IS NULL OR site_id = %(site)s)
             AND (category IS NULL OR category = %(category)s)
             AND (subcategory IS NULL OR subcategory = %(subcategory)s)
             AND (building_id IS NULL OR building_id = %(building)s)
           ORDER BY (subcategory IS NOT NULL)::int + (building_id IS NOT NULL)::int
                    + (category IS NOT NULL)::int + (site_id IS NOT NULL)::int DESC,
                    position, id
           LIMIT 1""",
        {"site": site_id, "category": category, "subcategory": subcategory, "building": building_id},
    ).fetchone()
    if row is None:
        return None
    return Route(row["id"], row["department_id"], row["skill"], row["auto_assign"], row["strategy"])


def route_for(conn: psycopg.Connection, ticket: dict) -> Route | None:
    """The rule for a ticket's site, category, subcategory and building."""
    return find_route(
        conn,
        site_id=ticket["site_id"],
        category=ticket["category"],
        subcategory=ticket["subcategory"],
        building_id=ticket["building_id"],
    )


#: a person's open load: tickets assigned to them that still need work
OPEN_LOAD = """(SELECT count(*) FROM tickets t
                WHERE t.assignee_id = u.id AND t.status NOT IN ('resolved', 'closed', 'cancelled', 'redirected'))"""


def pick_assignee(
    conn: psycopg.Connection, *, department_id: int, site_id: str | None, skill: str | None, strategy: str
) -> dict | None:
    """An on-duty technician or guard of the department at the site, with the skill; None when nobody fits."""
    order = (
        "s.last_assigned_at NULLS FIRST, load, u.id"
        if strategy == "round_robin"
        else "load, s.last_assigned_at NULLS FIRST, u.id"
    )
    return conn.execute(
        f"""SELECT u.id AS user_id, p.id AS person_id, p.full_name, {OPEN_LOAD} AS load
            FROM staff s JOIN people p ON p.id = s.person_id JOIN users u ON u.person_id = p.id
            WHERE s.department_id = %(dept)s AND s.on_duty AND u.active
              AND u.role IN ('technician', 'guard')
              AND (%(site)s::text IS NULL OR EXISTS (SELECT 1 FROM staff_sites ss
                                                     WHERE ss.person_id = p.id AND ss.site_id = %(site)s))
              AND (%(skill)s::text IS NULL OR %(skill)s = ANY(s.skills))
            ORDER BY {order}
            LIMIT 1
            FOR UPDATE OF s""",
        {"dept": department_id, "site": site_id, "skill": skill},
    ).fetchone()


def mark_assigned(conn: psycopg.Connection, person_id: int, now: datetime) -> None:
    conn.execute("UPDATE staff SET last_assigned_at = %s WHERE person_id = %s", (now, person_id))
