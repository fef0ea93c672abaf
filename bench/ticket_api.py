"""Ticket API under concurrent load: filing, listing and reading tickets over HTTP, with 10,000 tickets and
100,000 timeline entries in the database.

1. A fresh database (embedded PostgreSQL, or a new database on DATABASE_URL's server), migrated; estates
   seeded by `cloud.seed.seed_estate` and enlarged (six buildings of 72 flats each, a resident or two per
   flat with a login, more technicians); then 10,000 tickets whose states follow from simulated
   lifecycles over a year, and exactly 100,000 timeline entries, loaded by COPY; VACUUM ANALYZE.
2. The API as deployed: `python -m community cloud --role api` (uvicorn), its own process.
3. One client process (this one) drives N keep-alive connections (asyncio + httpx2), each sending its
   next request as soon as the last one is answered, phase after phase: `GET /healthz` (the baseline:
   the framework and one database round trip), ticket listing as a technician and as the service desk,
   a ticket's detail with its timeline, and residents filing tickets.

For each phase: requests/s, p50/p90/p99/max latency, errors, the rate beside the baseline's, the CPU each
process used and what the API's database sessions were doing. The last line is the figures as
name=value pairs. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import harness
import httpx2 as httpx
import psycopg
from harness import CpuMeter, Stack, log
from psycopg import sql
from psycopg.rows import dict_row

from cloud.domain import people, sla, tickets
from cloud.domain.access import load_principal, ticket_scope
from cloud.domain.business_hours import BusinessCalendar, add_business_time
from cloud.security.passwords import hash_password
from cloud.security.pii import PiiCipher
from cloud.seed import ROUTES, Estate, seed_estate
from community.broker import free_port

PASSWORD = "community-demo"
ACTOR = "bench"
ESTATE_NAMES = ["Sunny Gardens", "Harbour View", "Lotus Court", "Maple Heights"]
TIMEZONE = "Asia/Shanghai"
BUILDINGS = ("1", "2", "3", "4", "5", "6")  # 1 and 2 come from the seed; PR (plant room) has no flats
FLOORS = 18
FLATS_PER_FLOOR = 4
#: technicians, environment staff and guards added to each estate: (key, name, department, role, skills)
EXTRA_STAFF = [
    ("tech3", "Huang Qiang", "Engineering", "technician", ["plumbing"]),
    ("tech4", "Wu Gang", "Engineering", "technician", ["elevator"]),
    ("tech5", "Xu Jun", "Engineering", "technician", ["electrical", "plumbing"]),
    ("tech6", "Sun Tao", "Engineering", "technician", []),
    ("env2", "Ma Li", "Environment", "technician", ["greenery"]),
    ("guard2", "Zhu Hai", "Security", "guard", ["patrol"]),
]
SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "He",
    "Gao",
    "Lin",
    "Luo",
]
GIVEN = [
    "Wei",
    "Fang",
    "Na",
    "Min",
    "Jing",
    "Li",
    "Qiang",
    "Lei",
    "Jun",
    "Yang",
    "Yan",
    "Jie",
    "Tao",
    "Ming",
    "Chao",
    "Xia",
    "Hua",
    "Ping",
    "Gang",
    "Hui",
]

#: what gets reported, per category: (subcategory, weight, titles)
TOPICS: dict[str, list[tuple[str | None, float, list[str]]]] = {
    "facility": [
        (
            "plumbing",
            0.35,
            [
                "Leaking pipe under the kitchen sink",
                "Bathroom drain blocked",
                "No hot water",
                "Water stain on the ceiling",
                "Toilet keeps running",
            ],
        ),
        (
            "electrical",
            0.25,
            ["Power socket not working", "Corridor light out", "Breaker keeps tripping", "Doorbell not working"],
        ),
        ("elevator", 0.15, ["Lift stuck between floors", "Lift doors close too fast", "Grinding noise in the lift"]),
        (None, 0.25, ["Front door lock broken", "Window will not close", "Crack in the wall", "Intercom not working"]),
    ],
    "environment": [
        ("cleaning", 0.4, ["Stairwell needs cleaning", "Spilled paint in the lobby"]),
        ("waste", 0.3, ["Rubbish not collected", "Bins overflowing by building gate"]),
        ("greenery", 0.15, ["Overgrown hedge by the playground", "Fallen branch on the path"]),
        ("pests", 0.15, ["Cockroaches in the basement", "Rats near the bins"]),
    ],
    "service": [
        ("fees", 0.3, ["Question about the property fee", "Wrong amount on the fee notice"]),
        ("noise", 0.3, ["Neighbour noise at night", "Renovation noise on Sunday"]),
        ("parking", 0.25, ["Parking space taken", "Car blocking the garage exit"]),
        (None, 0.15, ["Access card for a visitor", "Package delivered to the wrong flat"]),
    ],
    "safety": [
        (
            None,
            1.0,
            [
                "Fire exit blocked by bicycles",
                "Smell of gas in the stairwell",
                "Broken railing on the roof",
                "Stranger trying doors at night",
            ],
        ),
    ],
    "other": [
        (None, 1.0, ["Suggestion for the community garden", "Lost and found", "Delivery lockers full"]),
    ],
}
CATEGORY_WEIGHTS = {"facility": 0.5, "environment": 0.2, "service": 0.15, "safety": 0.08, "other": 0.07}
PRIORITY_UP = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}
DONE = ("resolved", "closed", "cancelled", "redirected")

TICKET_COLUMNS = (
    "number",
    "type",
    "category",
    "subcategory",
    "channel",
    "status",
    "priority",
    "title",
    "description",
    "site_id",
    "building",
    "floor",
    "location",
    "created_at",
    "updated_at",
    "closed_at",
    "complainant_id",
    "created_by",
    "unit_id",
    "building_id",
    "department_id",
    "assignee_id",
    "sla_policy_id",
    "response_due_at",
    "resolution_due_at",
    "response_warn_at",
    "resolution_warn_at",
    "response_warned_at",
    "resolution_warned_at",
    "response_breached_at",
    "resolution_breached_at",
    "escalation_level",
    "on_hold_since",
    "held_from_status",
    "paused_seconds",
    "first_response_at",
    "triaged_at",
    "assigned_at",
    "started_at",
    "resolved_at",
    "cancelled_at",
    "redirect_reason",
    "redirect_to",
    "plan",
    "plan_owner_id",
    "work_done",
    "result_note",
    "cause_kind",
    "cause_code",
    "cause_note",
    "rating",
    "rating_comment",
    "rated_at",
    "reopen_count",
)
EVENT_COLUMNS = ("ticket_id", "at", "actor", "kind", "body", "data", "actor_user_id", "visibility")


# --- the estates ----------------------------------------------------------------------------


@dataclass
class Member:
    """A user the load or the timeline needs: login, ids, name."""

    username: str
    user_id: int
    person_id: int
    name: str
    skills: tuple[str, ...] = ()


@dataclass
class Place:
    """One estate as the loader sees it."""

    estate: Estate
    tz: ZoneInfo
    #: (unit id, building id, building code, floor)
    units: list[tuple[int, int, str, str]] = field(default_factory=list)
    #: (resident, their unit's index in `units`)
    residents: list[tuple[Member, int]] = field(default_factory=list)
    #: department name -> the members who take its work (technicians, guards; the desk for service)
    workers: dict[str, list[Member]] = field(default_factory=dict)
    desk: Member | None = None
    buildings: dict[str, int] = field(default_factory=dict)


def _name(rng: random.Random) -> str:
    """A plausible full name."""
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}{rng.choice(['', rng.choice(GIVEN).lower()])}"


def _member(conn: psycopg.Connection, username: str) -> Member:
    """A user by login name, with the skills of their staff record."""
    row = conn.execute(
        """SELECT u.id, u.person_id, p.full_name, coalesce(s.skills, '{}') AS skills FROM users u
           JOIN people p ON p.id = u.person_id LEFT JOIN staff s ON s.person_id = u.person_id
           WHERE u.username = %s""",
        (username,),
    ).fetchone()
    assert row is not None, username
    return Member(username, row["id"], row["person_id"], row["full_name"], tuple(row["skills"]))


def seed_places(
    conn: psycopg.Connection, cipher: PiiCipher, estates: int, now: datetime, rng: random.Random
) -> list[Place]:
    """Seeded estates, enlarged to a realistic size: flats, residents with logins, more staff."""
    password_hash = hash_password(PASSWORD)  # one hash for every added login: argon2 is slow on purpose
    places = []
    for i in range(estates):
        letter = chr(ord("a") + i)
        site_id, prefix = f"estate-{letter}", f"{letter}."
        estate = seed_estate(
            conn,
            cipher,
            site_id=site_id,
            site_name=ESTATE_NAMES[i % len(ESTATE_NAMES)],
            timezone=TIMEZONE,
            prefix=prefix,
            now=now,
            with_admin=i == 0,
        )
        place = Place(estate, ZoneInfo(TIMEZONE), buildings=dict(estate.buildings))
        for code in BUILDINGS:
            row = conn.execute(
                """INSERT INTO buildings (site_id, code, name) VALUES (%s, %s, %s)
                   ON CONFLICT (site_id, code) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
                (site_id, code, f"Building {code}"),
            ).fetchone()
            place.buildings[code] = row["id"]  # type: ignore[index]
            for floor in range(1, FLOORS + 1):
                for flat in range(1, FLATS_PER_FLOOR + 1):
                    unit = conn.execute(
                        """INSERT INTO units (building_id, number, floor, area_m2) VALUES (%s, %s, %s, %s)
                           ON CONFLICT (building_id, number) DO UPDATE SET floor = EXCLUDED.floor RETURNING id""",
                        (place.buildings[code], f"{floor}{flat:02d}", str(floor), rng.choice([76.0, 89.5, 120.0])),
                    ).fetchone()
                    place.units.append((unit["id"], place.buildings[code], code, str(floor)))  # type: ignore[index]
        unit_index = {u[0]: n for n, u in enumerate(place.units)}
        for key in ("resident", "resident2"):
            member = _member(conn, estate.accounts[key][0])
            place.residents.append((member, unit_index[estate.units[{"resident": "1-101", "resident2": "1-102"}[key]]]))
        occupied = {estate.units["1-101"], estate.units["1-102"]}
        n = 0
        for idx, (unit_id, *_rest) in enumerate(place.units):
            if unit_id in occupied:
                continue
            for relation in ["owner", "family"][: rng.choice([1, 1, 2])]:
                n += 1
                username = f"{prefix}r{n:04d}"
                name = _name(rng)
                person = people.create(
                    conn,
                    cipher,
                    kind="resident",
                    full_name=name,
                    actor=ACTOR,
                    now=now,
                    data={"phone": f"+86 139 {rng.randrange(10**8):08d}", "email": f"{username}@{site_id}.example"},
                )
                conn.execute(
                    "INSERT INTO unit_occupants (unit_id, person_id, relation) VALUES (%s, %s, %s)",
                    (unit_id, person["id"], relation),
                )
                user = conn.execute(
                    "INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, 'resident', %s)"
                    " RETURNING id",
                    (username, password_hash, person["id"]),
                ).fetchone()
                place.residents.append((Member(username, user["id"], person["id"], name), idx))  # type: ignore[index]
        departments = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM departments").fetchall()}
        for key, name, dept, role, skills in EXTRA_STAFF:
            person = people.create(
                conn,
                cipher,
                kind="staff",
                full_name=name,
                actor=ACTOR,
                now=now,
                data={"phone": f"+86 138 {rng.randrange(10**8):08d}", "email": f"{prefix}{key}@{site_id}.example"},
            )
            conn.execute(
                "INSERT INTO staff (person_id, department_id, title, skills) VALUES (%s, %s, %s, %s)",
                (person["id"], departments[dept], role, skills),
            )
            conn.execute("INSERT INTO staff_sites (person_id, site_id) VALUES (%s, %s)", (person["id"], site_id))
            conn.execute(
                "INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, %s, %s)",
                (f"{prefix}{key}", password_hash, role, person["id"]),
            )
        staff = conn.execute(
            """SELECT u.username, d.name AS department, u.role FROM users u JOIN staff s ON s.person_id = u.person_id
               JOIN staff_sites ss ON ss.person_id = u.person_id JOIN departments d ON d.id = s.department_id
               WHERE ss.site_id = %s ORDER BY u.id""",
            (site_id,),
        ).fetchall()
        for row in staff:
            if row["role"] in ("technician", "guard"):
                place.workers.setdefault(row["department"], []).append(_member(conn, row["username"]))
        place.desk = _member(conn, estate.accounts["desk"][0])
        place.workers["Customer service"] = [place.desk]
        places.append(place)
    return places


# --- the tickets and their timelines --------------------------------------------------------


@dataclass
class Sla:
    """SLA lookups the loader repeats: the policy per (category, priority) and the calendars."""

    conn: psycopg.Connection
    policies: dict[tuple[str, str, str], sla.SlaPolicy | None] = field(default_factory=dict)
    calendars: dict[int | None, BusinessCalendar] = field(default_factory=dict)

    def policy(self, site: str, category: str, priority: str) -> sla.SlaPolicy | None:
        """The policy intake would find (cloud.domain.sla.find_policy), once per combination."""
        key = (site, category, priority)
        if key not in self.policies:
            self.policies[key] = sla.find_policy(self.conn, site_id=site, category=category, priority=priority)
        return self.policies[key]

    def calendar(self, calendar_id: int | None) -> BusinessCalendar:
        """A stored calendar in the estates' time zone (None: around the clock)."""
        if calendar_id not in self.calendars:
            self.calendars[calendar_id] = sla.load_calendar(self.conn, calendar_id, TIMEZONE)
        return self.calendars[calendar_id]


def _hours(rng: random.Random, median: float, sigma: float = 1.0) -> timedelta:
    """A log-normal duration around `median` hours: most are short, a few very long."""
    return timedelta(hours=median * math.exp(rng.gauss(0, sigma)))


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    """One key, drawn with its weight."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


#: a column change that takes the step's time, and one that keeps an earlier value when there is one
AT = "<at>"
FIRST = "<first>"


class Lifecycle:
    """One ticket's life simulated from its creation, cut at `now`: its columns and its timeline."""

    def __init__(self, row: dict[str, Any], now: datetime) -> None:
        self.row = row
        self.now = now
        self.events: list[tuple[datetime, str, str, str, dict[str, Any], int | None, str]] = []
        self.at: datetime = row["created_at"]
        self.cut = False

    def step(
        self,
        after: timedelta,
        actor: Member | None,
        kind: str,
        body: str,
        *,
        shared: bool = True,
        data: dict[str, Any] | None = None,
        **changes: Any,
    ) -> bool:
        """The next step, `after` the last one: its column changes and its timeline entry. False, and
        nothing recorded from then on, once a step would lie in the future."""
        at = self.at + after
        if self.cut or at >= self.now:
            self.cut = True
            return False
        self.at = at
        for key, value in changes.items():
            if value == AT:
                changes[key] = at
            elif value == FIRST:
                changes[key] = self.row[key] or at
        self.row.update(changes, updated_at=at)
        plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()}
        data = {**(data or {}), **({"changes": plain} if plain else {})}
        user = (actor.username, actor.user_id) if actor else ("system", None)
        self.events.append((at, user[0], kind, body, data, user[1], "shared" if shared else "internal"))
        return True


def simulate(
    rng: random.Random, place: Place, slas: Sla, created_at: datetime, now: datetime, departments: dict[str, int]
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """A ticket with a plausible history: filed, routed and timed as intake does, then worked on (or
    redirected, cancelled, put on hold, reopened) with durations drawn at random; whatever would happen
    after `now` has not happened yet."""
    category = _pick(rng, CATEGORY_WEIGHTS)
    topics = TOPICS[category]
    subcategory, _w, titles = rng.choices(topics, weights=[t[1] for t in topics])[0]
    title = rng.choice(titles)
    channel = _pick(rng, {"app": 0.55, "web": 0.1, "phone": 0.25, "walk_in": 0.1})
    resident, unit_idx = rng.choice(place.residents)
    unit_id, building_id, building, floor = place.units[unit_idx]
    assert place.desk is not None
    desk = place.desk
    filer = resident if channel in ("app", "web") else desk
    if category == "safety":
        ticket_type = "safety" if channel in ("phone", "walk_in") and rng.random() < 0.5 else "complaint"
        priority = "urgent" if rng.random() < 0.2 else "high"
    else:
        ticket_type = "repair" if category == "facility" and rng.random() < 0.8 else "complaint"
        # residents cannot set a priority; the desk does for callers
        by_phone = channel in ("phone", "walk_in")
        priority = _pick(rng, {"normal": 0.8, "low": 0.08, "high": 0.09, "urgent": 0.03}) if by_phone else "normal"
    in_flat = category == "facility" and rng.random() < 0.75
    location = None if in_flat else rng.choice(["lobby", "stairwell", "car park", "garden", "roof", "entrance"])
    if not in_flat and rng.random() < 0.4:
        unit_id = None  # about the estate, not about a flat
        if location in ("car park", "garden"):
            building_id, building = None, None
    _cat, _sub, dept_name, skill, auto = next(r for r in ROUTES if r[0] == category and r[1] in (subcategory, None))
    workers = place.workers[dept_name]
    assignee = rng.choice([m for m in workers if skill is None or skill in m.skills] or workers)
    policy = slas.policy(place.estate.site_id, category, priority)
    calendar = slas.calendar(policy.calendar_id if policy else None)
    row: dict[str, Any] = dict.fromkeys(TICKET_COLUMNS)
    row.update(
        type=ticket_type,
        category=category,
        subcategory=subcategory,
        channel=channel,
        status="new",
        priority=priority,
        title=title,
        description=f"{title}. Reported by {resident.name}.",
        site_id=place.estate.site_id,
        building=building,
        floor=floor if unit_id else None,
        location=location,
        created_at=created_at,
        updated_at=created_at,
        complainant_id=resident.person_id,
        created_by=filer.user_id,
        unit_id=unit_id,
        building_id=building_id,
        department_id=departments[dept_name],
        escalation_level=0,
        paused_seconds=0.0,
        reopen_count=0,
    )
    if policy is not None:
        row["sla_policy_id"] = policy.id
        row["response_due_at"], row["resolution_due_at"] = sla.compute_deadlines(created_at, policy, calendar)
        row["response_warn_at"] = add_business_time(created_at, policy.response_minutes * 48, calendar)
        row["resolution_warn_at"] = add_business_time(created_at, policy.resolution_minutes * 48, calendar)
    life = Lifecycle(row, now)
    local = created_at.astimezone(place.tz).isoformat()
    life.step(
        timedelta(0),
        filer,
        "created",
        f"Registered ({channel}): {title}",
        data={"channel": channel, "local_time": local},
    )
    assigned = {"status": "assigned", "assignee_id": assignee.user_id, "assigned_at": AT, "triaged_at": FIRST}
    data = {"assignee_id": assignee.user_id}
    fate = rng.random()
    if auto:  # intake assigns by itself
        life.step(
            timedelta(0),
            None,
            "assigned",
            f"Assigned to {assignee.name}. (assigned automatically)",
            data=data,
            **assigned,
        )
    elif fate < 0.06:  # out of scope
        where = rng.choice(["the district office", "the gas company", "the police (110)"])
        life.step(
            _hours(rng, 0.5),
            desk,
            "redirected",
            f"Not ours to handle: out of scope. Please turn to: {where}.",
            status="redirected",
            redirect_reason="out of scope",
            redirect_to=where,
            triaged_at=AT,
            first_response_at=FIRST,
        )
    else:
        life.step(
            _hours(rng, 0.5), desk, "triaged", "Accepted.", status="triaged", triaged_at=AT, first_response_at=FIRST
        )
        life.step(
            _hours(rng, 0.5),
            desk,
            "assigned",
            f"Assigned to {assignee.name}.",
            data=data,
            first_response_at=FIRST,
            **assigned,
        )
    if row["status"] == "assigned" and fate > 0.97:
        life.step(
            _hours(rng, 2),
            desk,
            "cancelled",
            "Cancelled: the resident solved it themselves.",
            status="cancelled",
            cancelled_at=AT,
        )
    rounds = 2 if rng.random() < 0.05 else 1  # a rejected fix: the work is done twice
    for attempt in range(rounds):
        if row["status"] not in ("assigned", "reopened"):
            break
        wait = _hours(rng, 0.5 if priority in ("urgent", "high") else 1.5)
        life.step(
            wait, assignee, "started", "Work started.", status="in_progress", started_at=FIRST, first_response_at=FIRST
        )
        if rng.random() < 0.5:
            life.step(_hours(rng, 0.5), assignee, "investigation", f"Checked on site: {title.lower()}.", shared=False)
        if rng.random() < 0.3:
            plan = "Replace the faulty part."
            life.step(_hours(rng, 0.3), assignee, "plan", plan, shared=False, plan=plan, plan_owner_id=assignee.user_id)
        hold = _hours(rng, 2)
        if rng.random() < 0.15 and life.step(
            hold,
            assignee,
            "on_hold",
            "On hold: waiting for parts.",
            status="on_hold",
            on_hold_since=AT,
            held_from_status="in_progress",
        ):
            held_at, long = life.at, rng.random() < 0.2  # a few wait for weeks
            if life.step(
                _hours(rng, 24 * 20 if long else 24),
                assignee,
                "resumed",
                "Work resumed.",
                status="in_progress",
                on_hold_since=None,
                held_from_status=None,
            ):
                row["paused_seconds"] += sla.paused_business_seconds(held_at, life.at, calendar)
                if policy is not None:  # the deadlines move back by the working time on hold
                    due = sla.compute_deadlines(created_at, policy, calendar, paused_seconds=row["paused_seconds"])
                    row["response_due_at"], row["resolution_due_at"] = due
        work = "Replaced the faulty part and tested it."
        life.step(
            _hours(rng, 10 if category == "facility" else 3), assignee, "work", work, shared=False, work_done=work
        )
        result = "The problem is fixed. Thank you for your patience."
        cause = rng.choice(["wear", "misuse", "weather", "installation", "third_party"])
        life.step(
            _hours(rng, 0.2),
            assignee,
            "resolved",
            f"Resolved: {result}",
            status="resolved",
            resolved_at=AT,
            result_note=result,
            cause_kind="external" if cause == "third_party" else "internal",
            cause_code=cause,
        )
        if row["status"] == "resolved" and attempt + 1 < rounds:
            life.step(
                _hours(rng, 12),
                resident,
                "reopened",
                "The fix was rejected: it is leaking again.",
                status="reopened",
                reopen_count=row["reopen_count"] + 1,
                resolved_at=None,
            )
    if row["status"] == "resolved":
        if rng.random() < 0.7:
            rating = rng.choices([5, 4, 3, 2, 1], weights=[50, 30, 10, 5, 5])[0]
            if life.step(_hours(rng, 12), resident, "rated", f"Rated {rating}/5.", rating=rating, rated_at=AT):
                life.step(
                    timedelta(0),
                    resident,
                    "closed",
                    "Closed after the resident's rating.",
                    status="closed",
                    closed_at=AT,
                )
        else:
            life.step(
                timedelta(days=7, seconds=rng.uniform(0, 10)),
                None,
                "closed",
                "Closed: no answer from the resident within 7 days.",
                status="closed",
                closed_at=AT,
            )
    _deadlines(life, rng)
    return row, life.events


def _deadlines(life: Lifecycle, rng: random.Random) -> None:
    """What the scheduler would have marked: warnings and breaches (each raises the priority once)."""
    row = life.row
    stopped = row["resolved_at"] or row["closed_at"] or row["cancelled_at"]
    if row["status"] == "redirected":
        stopped = row["triaged_at"]
    for which, met in (("response", row["first_response_at"]), ("resolution", row["resolved_at"])):
        due, warn = row[f"{which}_due_at"], row[f"{which}_warn_at"]
        if due is None:
            continue
        end = min(t for t in (met, stopped, life.now) if t is not None)
        if warn < end:  # the scheduler runs every 10 s
            at = min(warn + timedelta(seconds=rng.uniform(0, 10)), end)
            row[f"{which}_warned_at"] = at
            life.events.append(
                (at, "system", f"{which}_due_soon", f"The {which} deadline ({due}) is near.", {}, None, "internal")
            )
        if due < end:
            at = min(due + timedelta(seconds=rng.uniform(0, 10)), end)
            before, row["priority"] = row["priority"], PRIORITY_UP[row["priority"]]
            row[f"{which}_breached_at"] = at
            row["updated_at"] = max(row["updated_at"], at)
            row["escalation_level"] += 1
            body = (
                f"The {which} deadline ({due.isoformat()}) was missed: escalated to the department manager, "
                f"priority {before} -> {row['priority']}."
            )
            life.events.append(
                (at, "system", f"{which}_breached", body, {"priority": row["priority"]}, None, "internal")
            )


def comment_fill(rng: random.Random, rows: list[dict], timelines: list[list[tuple]], total: int, now: datetime) -> None:
    """Comments (staff and residents, internal and shared) until the timelines hold `total` entries between
    them; a few tickets attract many (a skewed share), as real discussions do."""
    have = sum(len(t) for t in timelines)
    extra = total - have
    if extra < 0:
        raise ValueError(f"the lifecycles alone make {have} timeline entries, more than --events {total}")
    weights = [min(rng.paretovariate(1.5), 20.0) for _ in rows]  # capped: no ticket with hundreds
    chosen = rng.choices(range(len(rows)), weights=weights, k=extra)
    texts = [
        "Called the resident, will visit tomorrow.",
        "Any news on this?",
        "Parts ordered.",
        "Photo attached by the resident.",
        "Checked again, still fine.",
        "Please come after 6 pm.",
    ]
    for i in chosen:
        row, events = rows[i], timelines[i]
        start = row["created_at"]
        end = max(row["updated_at"], start + timedelta(minutes=1))
        end = min(end, now)
        at = start + (end - start) * rng.random()
        resident_side = rng.random() < 0.3
        actor = events[0][1] if resident_side else (events[-1][1] if events[-1][1] != "system" else "system")
        user_id = events[0][5] if resident_side else events[-1][5]
        events.append(
            (
                at,
                actor,
                "comment",
                rng.choice(texts),
                {},
                user_id,
                "shared" if resident_side or rng.random() < 0.4 else "internal",
            )
        )


def bulk_load(
    conn: psycopg.Connection,
    places: list[Place],
    *,
    count: int,
    events: int,
    days: float,
    now: datetime,
    rng: random.Random,
) -> dict[str, int]:
    """`count` tickets filed over the last `days` days and `events` timeline entries, by COPY; numbers
    `T-YYYYMMDD-NNNN` per local day, and the day counters set so the API numbers on from them."""
    departments = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM departments").fetchall()}
    slas = Sla(conn)
    span = days * 86400
    rows: list[dict] = []
    timelines: list[list[tuple]] = []
    for _ in range(count):
        place = rng.choice(places)
        # more during the day: a local hour drawn from a day-shaped curve
        day = now - timedelta(seconds=rng.uniform(0, span))
        local = day.astimezone(place.tz)
        hour = min(max(rng.gauss(13, 4), 0), 23.99)
        created = local.replace(hour=int(hour), minute=int(hour % 1 * 60), second=rng.randrange(60))
        created = min(created.astimezone(UTC), now - timedelta(minutes=5))
        row, timeline = simulate(rng, place, slas, created, now, departments)
        rows.append(row)
        timelines.append(timeline)
    comment_fill(rng, rows, timelines, events, now)
    # numbers by the site's local day, in order of filing (one counter per day, as next_number keeps it)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["created_at"])
    per_day: Counter[date] = Counter()
    for i in order:
        d = rows[i]["created_at"].astimezone(ZoneInfo(TIMEZONE)).date()
        per_day[d] += 1
        rows[i]["number"] = f"T-{d:%Y%m%d}-{per_day[d]:04d}"
    with conn.cursor() as cur:
        columns = sql.SQL(", ").join(map(sql.Identifier, TICKET_COLUMNS))
        with cur.copy(sql.SQL("COPY tickets ({}) FROM STDIN").format(columns)) as copy:
            for i in order:
                copy.write_row([rows[i][c] for c in TICKET_COLUMNS])
        ids = {r["number"]: r["id"] for r in conn.execute("SELECT id, number FROM tickets").fetchall()}
        entries = [(ids[rows[i]["number"]], *e) for i in order for e in sorted(timelines[i], key=lambda e: e[0])]
        entries.sort(key=lambda e: e[1])  # as they would have been written: in time order
        columns = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
        with cur.copy(sql.SQL("COPY ticket_events ({}) FROM STDIN").format(columns)) as copy:
            for ticket_id, at, actor, kind, body, data, user_id, visibility in entries:
                copy.write_row([ticket_id, at, actor, kind, body, json.dumps(data), user_id, visibility])
        cur.executemany(
            """INSERT INTO ticket_counters (day, last_value) VALUES (%s, %s)
               ON CONFLICT (day) DO UPDATE
               SET last_value = greatest(ticket_counters.last_value, EXCLUDED.last_value)""",
            list(per_day.items()),
        )
    return {"tickets": len(rows), "events": len(entries)}


def describe_data(conn: psycopg.Connection) -> str:
    """What was loaded, for the output: statuses, categories, timeline lengths, sizes."""
    statuses = conn.execute("SELECT status, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 2 DESC").fetchall()
    cats = conn.execute("SELECT category, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 2 DESC").fetchall()
    per = conn.execute(
        """SELECT avg(n)::numeric(6,1) AS avg, percentile_disc(0.5) WITHIN GROUP (ORDER BY n) AS p50,
                  percentile_disc(0.99) WITHIN GROUP (ORDER BY n) AS p99, max(n) AS max
           FROM (SELECT count(*) AS n FROM ticket_events GROUP BY ticket_id) x"""
    ).fetchone()
    sizes = conn.execute(
        """SELECT pg_size_pretty(pg_total_relation_size('tickets')) AS t,
                  pg_size_pretty(pg_total_relation_size('ticket_events')) AS e,
                  (SELECT count(*) FROM users WHERE role = 'resident') AS residents,
                  (SELECT count(*) FROM units) AS units,
                  (SELECT min(created_at)::date FROM tickets) AS since"""
    ).fetchone()
    assert per is not None and sizes is not None
    return (
        "statuses: " + ", ".join(f"{r['status']} {r['n']}" for r in statuses) + "\n"
        "categories: " + ", ".join(f"{r['category']} {r['n']}" for r in cats) + "\n"
        f"timeline entries per ticket: mean {per['avg']}, p50 {per['p50']}, p99 {per['p99']}, max {per['max']}; "
        f"tickets {sizes['t']}, ticket_events {sizes['e']} on disk; {sizes['units']} flats, "
        f"{sizes['residents']} resident logins; tickets since {sizes['since']}"
    )


def print_environment(stack: Stack) -> None:
    """The machine and the PostgreSQL version (harness.print_environment without Mosquitto)."""
    with stack.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    print("machine: " + json.dumps({**harness.machine(), "postgresql": str(row[0]) if row else "unknown"}))


# --- the API --------------------------------------------------------------------------------


class ApiProcess(harness.CloudProcess):
    """The API as deployed: uvicorn in its own process (own GIL)."""

    def __init__(self, stack: Stack, *, jwt_secret: str, data_key: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            stack,
            role="api",
            name="api",
            env={
                "COMMUNITY_HTTP_HOST": "127.0.0.1",
                "COMMUNITY_HTTP_PORT": str(self.port),
                "COMMUNITY_JWT_SECRET": jwt_secret,
                "COMMUNITY_DATA_KEY": data_key,
                "COMMUNITY_SCHEDULER_ENABLED": "false",
            },
            prefix_var="BENCH_API_PREFIX",
        )
        log(f"  api process {self.proc.pid} on {self.url} (log {self.log_path})")

    @property
    def pid(self) -> int:
        """The uvicorn process (under a prefix tool: its child)."""
        if os.environ.get("BENCH_API_PREFIX"):
            with contextlib.suppress(Exception):
                import psutil

                children = psutil.Process(self.proc.pid).children()
                if children:
                    return int(children[0].pid)
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer within {timeout:.0f} s:\n{self.tail()}")


def login(url: str, username: str) -> dict[str, str]:
    """Log in through the API (OAuth2 password flow); returns the bearer header."""
    resp = httpx.post(url + "/api/v1/auth/token", data={"username": username, "password": PASSWORD}, timeout=30)
    if resp.status_code != 200:
        raise RuntimeError(f"login as {username}: {resp.status_code} {resp.text}")
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


# --- the load -------------------------------------------------------------------------------

#: one request: method, path, headers, JSON body
Request = tuple[str, str, dict[str, str], dict[str, Any] | None]


@dataclass
class Phase:
    """A kind of request, sent again and again: `make` draws the next one."""

    name: str
    what: str
    expect: int
    make: Callable[[random.Random], Request]


@dataclass
class Outcome:
    """One phase's figures."""

    name: str
    what: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    cpu: dict[str, float]
    cpu_text: str
    sessions: dict[str, float]
    error_samples: list[str]

    @property
    def rps(self) -> float:
        """Responses a second within the measured window."""
        return self.requests / self.seconds

    def p(self, q: float) -> float:
        """The q-th percentile of the latencies, in ms."""
        return harness.percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")


class SessionSampler(threading.Thread):
    """What the API's database sessions are doing, sampled every 50 ms from pg_stat_activity: running,
    waiting (for a lock: with the statement that waits), idle in transaction (waiting for the API), idle."""

    def __init__(self, database_url: str) -> None:
        super().__init__(name="pg-sampler", daemon=True)
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.counts: Counter[str] = Counter()
        self.running = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            if self.running.is_set():
                self.counts["_samples"] += 1
                rows = self.conn.execute(
                    r"""SELECT state, wait_event_type, wait_event,
                              left(regexp_replace(query, '\s+', ' ', 'g'), 40) AS query
                       FROM pg_stat_activity
                       WHERE datname = current_database() AND backend_type = 'client backend'
                         AND pid <> pg_backend_pid()"""
                ).fetchall()
                for state, wtype, wevent, query in rows:
                    if state != "active":
                        key = str(state)
                    elif wtype == "Lock":
                        key = f"waiting {wtype}:{wevent} in '{query}'"
                    else:
                        key = f"waiting {wtype}:{wevent}" if wtype else "running"
                    self.counts[key] += 1
            self._halt.wait(0.05)

    def take(self) -> dict[str, float]:
        """Average sessions in each state since the last call."""
        counts, self.counts = self.counts, Counter()
        samples = max(counts.pop("_samples", 0), 1)
        return {k: v / samples for k, v in counts.most_common()}

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.conn.close()


class Tally:
    """The requests that complete inside the measured window: their latencies and their errors."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def add(self, sent: float, done: float, problem: str | None) -> None:
        if self.start <= done <= self.end:
            self.latencies.append((done - sent) * 1000)
            if problem is not None:
                self.errors.append(problem)


def _problem(phase: Phase, resp: httpx.Response) -> str | None:
    """None for the expected status, else the status and the start of the body."""
    return None if resp.status_code == phase.expect else f"{resp.status_code} {resp.text[:200]}"


async def _load_asyncio(url: str, phase: Phase, concurrency: int, tally: Tally) -> None:
    """One event loop, `concurrency` tasks sharing one client and its connections. SIGTERM and SIGHUP
    cancel the tasks and end in KeyboardInterrupt, as Ctrl-C does (asyncio.run handles SIGINT)."""
    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    assert main is not None
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda sig=sig: (signals.append(sig), main.cancel()))
    try:
        await _requests_asyncio(url, phase, concurrency, tally)
    except asyncio.CancelledError:
        if signals:
            raise KeyboardInterrupt from None
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        harness.install_signal_handlers()  # removing them left the default (terminate) in place


async def _requests_asyncio(url: str, phase: Phase, concurrency: int, tally: Tally) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def worker(n: int) -> None:
            rng = random.Random(n * 7919 + len(phase.name))
            while time.perf_counter() < tally.end:
                method, path, headers, body = phase.make(rng)
                sent = time.perf_counter()
                try:
                    problem = _problem(phase, await client.request(method, path, headers=headers, json=body))
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                tally.add(sent, time.perf_counter(), problem)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))


def _load_threads(url: str, phase: Phase, concurrency: int, tally: Tally) -> None:
    """`concurrency` threads sharing one blocking client and its connections (for comparison)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, limits=limits, timeout=60.0) as client:

        def worker(n: int) -> None:
            rng = random.Random(n * 7919 + len(phase.name))
            while time.perf_counter() < tally.end:
                method, path, headers, body = phase.make(rng)
                sent = time.perf_counter()
                try:
                    problem = _problem(phase, client.request(method, path, headers=headers, json=body))
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                tally.add(sent, time.perf_counter(), problem)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def drive(
    url: str,
    phase: Phase,
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    cpu: CpuMeter,
    sampler: SessionSampler,
    client: str,
) -> Outcome:
    """`concurrency` connections, each sending its next request as soon as the last is answered, for
    warmup + seconds; the figures count what completes in the last `seconds`."""
    t0 = time.perf_counter()
    tally = Tally(t0 + warmup, t0 + warmup + seconds)

    def meter() -> None:
        time.sleep(max(tally.start - time.perf_counter(), 0))
        cpu.start()
        sampler.take()
        sampler.running.set()
        time.sleep(max(tally.end - time.perf_counter(), 0))
        sampler.running.clear()
        cpu.stop()

    metering = threading.Thread(target=meter, name="meter", daemon=True)
    metering.start()
    if client == "threads":
        _load_threads(url, phase, concurrency, tally)
    else:
        asyncio.run(_load_asyncio(url, phase, concurrency, tally))
    metering.join()
    return Outcome(
        phase.name,
        phase.what,
        len(tally.latencies),
        len(tally.errors),
        seconds,
        tally.latencies,
        dict(cpu.cores),
        cpu.describe(),
        sampler.take(),
        tally.errors[:5],
    )


def make_phases(
    url: str, places: list[Place], numbers: dict[str, list[str]], residents: int, rng: random.Random
) -> list[Phase]:
    """The requests of each phase, with the logins they need."""
    desks = [login(url, p.estate.accounts["desk"][0]) for p in places]
    techs = [login(url, p.estate.accounts[k][0]) for p in places for k in ("tech1", "tech2")]
    desk_of = {p.estate.site_id: h for p, h in zip(places, desks, strict=True)}
    pool = [m for p in places for m, _u in p.residents]
    filers = [login(url, m.username) for m in rng.sample(pool, min(residents, len(pool)))]
    listing = "/api/v1/tickets?order=urgency&limit=50"
    sites = list(numbers)

    def health(_r: random.Random) -> Request:
        return "GET", "/healthz", {}, None

    def list_tech(r: random.Random) -> Request:
        return "GET", listing, r.choice(techs), None

    def list_desk(r: random.Random) -> Request:
        return "GET", listing, r.choice(desks), None

    def detail(r: random.Random) -> Request:
        site = r.choice(sites)
        return "GET", f"/api/v1/tickets/{r.choice(numbers[site])}", desk_of[site], None

    def create(r: random.Random) -> Request:
        category = _pick(r, {"facility": 0.55, "environment": 0.2, "service": 0.15, "safety": 0.05, "other": 0.05})
        sub, _w, titles = r.choices(TOPICS[category], weights=[t[1] for t in TOPICS[category]])[0]
        title = r.choice(titles)
        body = {
            "type": "repair" if category == "facility" else "complaint",
            "category": category,
            "title": title,
            "description": f"{title}. Since this morning.",
            "channel": r.choice(["app", "app", "web"]),
        }
        if sub:
            body["subcategory"] = sub
        return "POST", "/api/v1/tickets", r.choice(filers), body

    return [
        Phase("healthz", "GET /healthz (baseline)", 200, health),
        Phase("list_tech", "GET /api/v1/tickets?order=urgency&limit=50 as a technician", 200, list_tech),
        Phase("list_desk", "GET /api/v1/tickets?order=urgency&limit=50 as the service desk", 200, list_desk),
        Phase("detail", "GET /api/v1/tickets/{number} (with timeline) as the service desk", 200, detail),
        Phase("create", "POST /api/v1/tickets as residents", 201, create),
    ]


# --- query plans ----------------------------------------------------------------------------


class _Explain:
    """A connection stand-in that runs EXPLAIN ANALYZE instead of the query the domain code sends."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.plans: list[str] = []

    def execute(self, query: Any, params: Any = None) -> Any:
        text = query if isinstance(query, sql.Composable) else sql.SQL(query)  # type: ignore[arg-type]
        rows = self.conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + text, params).fetchall()
        self.plans.append("\n".join(r["QUERY PLAN"] for r in rows))
        return self.conn.execute(query, params)


def explain(database_url: str, places: list[Place], number: str) -> str:
    """EXPLAIN ANALYZE of the listing (technician, service desk) and the detail queries, as the API runs them."""
    out = []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for key in ("tech1", "desk"):
            loaded = load_principal(conn, places[0].estate.users[key])
            assert loaded is not None
            who = loaded[0]
            fake = _Explain(conn)
            tickets.list_tickets(fake, ticket_scope(who), filters={}, order="urgency", limit=50)  # type: ignore[arg-type]
            out.append(f"-- list_tickets as {who.username} ({who.role.value}), order=urgency limit=50\n{fake.plans[0]}")
        loaded = load_principal(conn, places[0].estate.users["desk"])
        assert loaded is not None
        fake = _Explain(conn)
        tickets.get_ticket(fake, ticket_scope(loaded[0]), number, staff_view=True)  # type: ignore[arg-type]
        out.extend(f"-- get_ticket {number}, query {i + 1}\n{plan}" for i, plan in enumerate(fake.plans))
    return "\n\n".join(out)


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000, help="tickets loaded before the load")
    parser.add_argument("--events", type=int, default=100_000, help="timeline entries loaded before the load")
    parser.add_argument("--days", type=float, default=365.0, help="the loaded tickets were filed over this many days")
    parser.add_argument("--estates", type=int, default=2, help="estates (sites) the tickets belong to")
    parser.add_argument("--concurrency", type=int, default=16, help="connections sending requests at once")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration of each phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds at the start of each phase")
    parser.add_argument("--residents", type=int, default=50, help="residents who file tickets in the create phase")
    parser.add_argument("--phases", default="list_tech,list_desk,detail,create", help="phases after the baseline")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the list and detail queries")
    parser.add_argument(
        "--client",
        choices=("asyncio", "threads"),
        default="asyncio",
        help="the load generator: one event loop (default), or a thread per connection (for comparison)",
    )
    parser.add_argument(
        "--sql",
        action="append",
        default=[],
        help="a statement to run after the load, before VACUUM ANALYZE (e.g. a CREATE INDEX to try); repeatable",
    )
    args = parser.parse_args()
    harness.install_signal_handlers()
    rng = random.Random(11)
    jwt_secret = "bench-" + base64.urlsafe_b64encode(os.urandom(30)).decode()
    data_key = base64.b64encode(os.urandom(32)).decode()
    try:
        with Stack("tickets", broker=False) as stack:
            print_environment(stack)
            now = datetime.now(UTC)
            log(f"seeding {args.estates} estates; loading {args.tickets:,} tickets, {args.events:,} timeline entries")
            t0 = time.monotonic()
            with psycopg.connect(stack.database_url, row_factory=dict_row) as conn:
                places = seed_places(conn, PiiCipher(base64.b64decode(data_key)), args.estates, now, rng)
                conn.commit()
                t1 = time.monotonic()
                loaded = bulk_load(
                    conn, places, count=args.tickets, events=args.events, days=args.days, now=now, rng=rng
                )
                conn.commit()
            t2 = time.monotonic()
            with psycopg.connect(stack.database_url, autocommit=True, row_factory=dict_row) as conn:
                for statement in args.sql:
                    print(f"extra SQL: {statement}")
                    conn.execute(statement)  # type: ignore[call-overload]
                conn.execute("VACUUM (ANALYZE)")
                conn.execute("CHECKPOINT")
                print(
                    f"data: {loaded['tickets']:,} tickets, {loaded['events']:,} timeline entries "
                    f"(seeded in {t1 - t0:.1f} s, loaded in {t2 - t1:.1f} s, vacuumed and analyzed in "
                    f"{time.monotonic() - t2:.1f} s)"
                )
                print(describe_data(conn))
                numbers: dict[str, list[str]] = {}
                for r in conn.execute("SELECT site_id, number FROM tickets ORDER BY id").fetchall():
                    numbers.setdefault(r["site_id"], []).append(r["number"])
            if args.explain:
                print(explain(stack.database_url, places, numbers[places[0].estate.site_id][-1]))

            api = ApiProcess(stack, jwt_secret=jwt_secret, data_key=data_key)
            api.wait_ready()
            phases = {p.name: p for p in make_phases(api.url, places, numbers, args.residents, rng)}
            wanted = ["healthz", *[p for p in args.phases.split(",") if p and p != "healthz"]]
            unknown = set(wanted) - set(phases)
            if unknown:
                parser.error(f"unknown phases: {', '.join(sorted(unknown))}; known: {', '.join(phases)}")
            cpu = CpuMeter({"api": api.pid, "client": os.getpid()}, postgres=stack.postgres_pid())
            sampler = SessionSampler(stack.database_url)
            sampler.start()
            stack.on_close(sampler.stop)
            print(
                f"load: {args.concurrency} connections from one client process ({args.client}, httpx2), each phase "
                f"{args.warmup:g} s warm-up + {args.seconds:g} s measured"
            )
            results: list[Outcome] = []
            for name in wanted:
                phase = phases[name]
                log(f"phase {name}: {phase.what} ...")
                out = drive(
                    api.url,
                    phase,
                    concurrency=args.concurrency,
                    warmup=args.warmup,
                    seconds=args.seconds,
                    cpu=cpu,
                    sampler=sampler,
                    client=args.client,
                )
                if api.proc.poll() is not None:
                    raise RuntimeError(f"the API exited with {api.proc.returncode}:\n{api.tail()}")
                results.append(out)
                ratio = out.rps / results[0].rps if results[0].rps else float("nan")
                print(
                    f"{name:10s} {out.rps:8,.0f} req/s ({ratio:5.3f} of the baseline) p50 {out.p(50):6.1f} ms "
                    f"p90 {out.p(90):6.1f} ms p99 {out.p(99):6.1f} ms max {max(out.latencies_ms, default=0):6.1f} ms "
                    f"errors {out.errors} of {out.requests} -- {out.what}"
                )
                print(f"           cpu (cores): {out.cpu_text}")
                busy = ", ".join(f"{k} {v:.1f}" for k, v in out.sessions.items())
                print(f"           database sessions (average): {busy}")
                for sample in out.error_samples:
                    print(f"           error: {sample}")
            if "create" in wanted:
                with psycopg.connect(stack.database_url) as conn:
                    row = conn.execute("SELECT count(*) FROM tickets").fetchone()
                print(f"tickets after the run: {row[0] if row else '?'}")
            figures: dict[str, float | int | str] = {}
            for out in results:
                figures[f"{out.name}_rps"] = out.rps
                figures[f"{out.name}_p50_ms"] = out.p(50)
                figures[f"{out.name}_p99_ms"] = out.p(99)
                if out.name != "healthz":
                    figures[f"{out.name}_ratio"] = out.rps / results[0].rps if results[0].rps else float("nan")
            stalled = [o.name for o in results if o.requests == 0]
            if stalled:
                print(f"no response at all within the measured seconds of: {', '.join(stalled)} (the API stalled)")
            figures.update(
                errors=sum(o.errors for o in results),
                stalled=len(stalled),
                concurrency=args.concurrency,
                tickets=loaded["tickets"],
                events=loaded["events"],
            )
            print(harness.pairs(figures), flush=True)
            return 1 if figures["errors"] or stalled else 0
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
