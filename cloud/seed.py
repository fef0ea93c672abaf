"""A ready-to-use estate: buildings and units, departments, staff and residents with logins for
every role, routing rules, an office-hours calendar and SLA policies.

`make demo` seeds one so that every kind of user can log in at once; the workflow tests seed two
(to show that a guard at one estate sees nothing of the other). Seeding is idempotent per site.
"""

from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg

from cloud.domain import people, records, sla
from cloud.domain.business_hours import Holiday, WeeklySchedule
from cloud.security.passwords import hash_password
from cloud.security.pii import PiiCipher

ACTOR = "seed"
DEPARTMENTS = {
    "Engineering": "Repairs and building equipment: pumps, lifts, electrics, plumbing.",
    "Security": "Guards, access control, patrols, fire safety.",
    "Environment": "Cleaning, waste, greenery, pests.",
    "Customer service": "The service desk: registration, triage, follow-up visits.",
}
#: (category, subcategory, department, skill, auto_assign)
ROUTES = [
    ("facility", "elevator", "Engineering", "elevator", True),
    ("facility", "plumbing", "Engineering", "plumbing", True),
    ("facility", "electrical", "Engineering", "electrical", True),
    ("facility", None, "Engineering", None, True),
    ("safety", None, "Security", None, True),
    ("environment", None, "Environment", None, True),
    ("service", None, "Customer service", None, False),
    ("other", None, "Customer service", None, False),
]
#: (category, priority, response minutes, resolution minutes, office hours?)
POLICIES = [
    ("safety", None, 15, 4 * 60, False),
    (None, "urgent", 30, 8 * 60, False),
    # a category's own policy wins over the any-category urgent one: urgent rows per category
    ("facility", "urgent", 30, 8 * 60, False),
    ("environment", "urgent", 30, 8 * 60, False),
    ("service", "urgent", 60, 9 * 60, True),
    ("facility", None, 2 * 60, 3 * 9 * 60, True),
    ("environment", None, 4 * 60, 2 * 9 * 60, True),
    ("service", None, 4 * 60, 3 * 9 * 60, True),
    (None, None, 4 * 60, 5 * 9 * 60, True),
]
OFFICE_HOURS = WeeklySchedule.every_day("08:30", "17:30", days=("mon", "tue", "wed", "thu", "fri", "sat"))
HOLIDAYS = [
    Holiday(day=date(2026, 12, 25), name="Christmas Day"),
    Holiday(day=date(2027, 1, 1), name="New Year's Day"),
    *[Holiday(day=date(2027, 2, d), name="Spring Festival") for d in range(6, 13)],
]


@dataclass
class Estate:
    site_id: str
    #: role or name -> (username, password)
    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)
    buildings: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)


def _department_ids(conn: psycopg.Connection, now: datetime) -> dict[str, int]:
    ids = {}
    for name, description in DEPARTMENTS.items():
        row = conn.execute("SELECT id FROM departments WHERE name = %s", (name,)).fetchone()
        if row is None:
            row = records.insert(conn, "departments", {"name": name, "description": description}, actor=ACTOR, now=now)
        ids[name] = row["id"]
    return ids


def _shared_rules(conn: psycopg.Connection, departments: dict[str, int], now: datetime) -> None:
    """Rules and policies for every site, made once."""
    if conn.execute("SELECT 1 FROM routing_rules WHERE site_id IS NULL LIMIT 1").fetchone() is None:
        for position, (category, sub, dept, skill, auto) in enumerate(ROUTES):
            records.insert(
                conn,
                "routing_rules",
                {
                    "category": category,
                    "subcategory": sub,
                    "department_id": departments[dept],
                    "skill": skill,
                    "auto_assign": auto,
                    "strategy": "least_load",
                    "position": position,
                },
                actor=ACTOR,
                now=now,
            )
    if conn.execute("SELECT 1 FROM sla_policies WHERE site_id IS NULL LIMIT 1").fetchone() is None:
        row = conn.execute("SELECT id FROM business_calendars WHERE name = 'Office hours'").fetchone()
        calendar_id = row["id"] if row else sla.create_calendar(conn, "Office hours", OFFICE_HOURS, HOLIDAYS)
        for category, priority, response, resolution, office in POLICIES:
            records.insert(
                conn,
                "sla_policies",
                {
                    "category": category,
                    "priority": priority,
                    "response_minutes": response,
                    "resolution_minutes": resolution,
                    "calendar_id": calendar_id if office else None,
                },
                actor=ACTOR,
                now=now,
            )


def _user(conn: psycopg.Connection, username: str, password: str, role: str, person_id: int) -> int:
    row = conn.execute(
        "INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, %s, %s) RETURNING id",
        (username, hash_password(password), role, person_id),
    ).fetchone()
    assert row is not None
    return row["id"]


def seed_estate(
    conn: psycopg.Connection,
    cipher: PiiCipher,
    *,
    site_id: str,
    site_name: str,
    timezone: str,
    prefix: str,
    now: datetime,
    password: str = "community-demo",
    with_admin: bool = True,
) -> Estate:
    """Seed one estate (idempotent: a second call for the same site returns what exists)."""
    estate = Estate(site_id)
    conn.execute(
        "INSERT INTO sites (id, name, timezone) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (site_id, site_name, timezone),
    )
    departments = _department_ids(conn, now)
    _shared_rules(conn, departments, now)
    for code, name in (("1", "Building 1"), ("2", "Building 2"), ("PR", "Plant room")):
        row = conn.execute(
            """INSERT INTO buildings (site_id, code, name) VALUES (%s, %s, %s)
               ON CONFLICT (site_id, code) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
            (site_id, code, name),
        ).fetchone()
        estate.buildings[code] = row["id"]  # type: ignore[index]
    for building, number, floor, area in (
        ("1", "101", "1", 89.5),
        ("1", "102", "1", 120.0),
        ("1", "1801", "18", 143.2),
        ("2", "201", "2", 76.0),
    ):
        row = conn.execute(
            """INSERT INTO units (building_id, number, floor, area_m2) VALUES (%s, %s, %s, %s)
               ON CONFLICT (building_id, number) DO UPDATE SET floor = EXCLUDED.floor RETURNING id""",
            (estate.buildings[building], number, floor, area),
        ).fetchone()
        estate.units[f"{building}-{number}"] = row["id"]  # type: ignore[index]

    staff = [
        # key, name, role, department, skills, phone, email
        ("manager", "Wang Fang", "manager", "Customer service", [], "+86 138 0000 0001", "manager"),
        ("desk", "Li Na", "service_desk", "Customer service", [], "+86 138 0000 0002", "desk"),
        ("tech1", "Zhang Wei", "technician", "Engineering", ["plumbing", "electrical"], "+86 138 0000 0003", "tech1"),
        ("tech2", "Liu Yang", "technician", "Engineering", ["elevator", "electrical"], "+86 138 0000 0004", "tech2"),
        ("env1", "Chen Jing", "technician", "Environment", ["cleaning"], "+86 138 0000 0005", "env1"),
        ("guard", "Zhao Lei", "guard", "Security", ["patrol"], "+86 138 0000 0006", "guard"),
    ]
    residents = [
        ("resident", "Sun Mei", "1-101", "owner", "+86 139 1111 0001", "110101199001011234"),
        ("resident2", "Zhou Min", "1-102", "tenant", "+86 139 1111 0002", "110101198505051234"),
    ]
    existing = conn.execute("SELECT 1 FROM users WHERE username = %s", (f"{prefix}manager",)).fetchone()
    if existing is None:
        for key, name, role, dept, skills, phone, mail in staff:
            person = people.create(
                conn,
                cipher,
                kind="staff",
                full_name=name,
                data={"phone": phone, "email": f"{prefix}{mail}@{site_id}.example"},
                actor=ACTOR,
                now=now,
            )
            conn.execute(
                "INSERT INTO staff (person_id, department_id, title, skills) VALUES (%s, %s, %s, %s)",
                (person["id"], departments[dept], role.replace("_", " "), skills),
            )
            conn.execute("INSERT INTO staff_sites (person_id, site_id) VALUES (%s, %s)", (person["id"], site_id))
            _user(conn, f"{prefix}{key}", password, role, person["id"])
        for key, name, unit, relation, phone, id_number in residents:
            person = people.create(
                conn,
                cipher,
                kind="resident",
                full_name=name,
                data={"phone": phone, "id_number": id_number, "email": f"{prefix}{key}@{site_id}.example"},
                actor=ACTOR,
                now=now,
            )
            conn.execute(
                "INSERT INTO unit_occupants (unit_id, person_id, relation) VALUES (%s, %s, %s)",
                (estate.units[unit], person["id"], relation),
            )
            _user(conn, f"{prefix}{key}", password, "resident", person["id"])
        manager = conn.execute("SELECT id FROM users WHERE username = %s", (f"{prefix}manager",)).fetchone()
        for name in DEPARTMENTS:
            conn.execute(
                "UPDATE departments SET manager_user_id = %s WHERE name = %s AND manager_user_id IS NULL",
                (manager["id"], name),  # type: ignore[index]
            )
    if with_admin and conn.execute("SELECT 1 FROM users WHERE username = 'admin'").fetchone() is None:
        person = people.create(
            conn, cipher, kind="staff", full_name="Platform administrator", data={}, actor=ACTOR, now=now
        )
        _user(conn, "admin", password, "admin", person["id"])
    for key in ["admin"] * with_admin + [k for k, *_ in staff] + [k for k, *_ in residents]:
        username = key if key == "admin" else f"{prefix}{key}"
        row = conn.execute("SELECT id, person_id FROM users WHERE username = %s", (username,)).fetchone()
        if row is not None:
            estate.accounts[key] = (username, password)
            estate.users[key] = row["id"]
            estate.people[key] = row["person_id"]
    return estate
