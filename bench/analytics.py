"""Analytics over two years of an office's work: p50 and p99 of every analytics endpoint and grouping
with 200,000 tickets, 2,000,000 timeline entries and about 50,000 alarms in the database, beside the
same requests answered by plain full scans (index scans switched off), in the same run.

1. A fresh database (embedded PostgreSQL, or a new database on DATABASE_URL's server), migrated; three
   estates seeded by `cloud.seed.seed_estate` (Asia/Shanghai) and enlarged: 6 residential buildings of
   24 floors x 6 flats and a plant room each, a resident per flat, 10 technicians and guards per estate,
   a gateway per building with 25 devices (525 devices). Then, from one seeded random generator:
   alarms over two years (a few devices fail far more often than the rest), 40 % of them opening a
   repair or safety ticket; residents' tickets filed over the same days with a trend, a weekly and a
   yearly rhythm, lives drawn with log-normal durations (created < first response < resolved), SLA
   deadlines from the seeded policies and office-hours calendar, breaches, holds, reopens, ratings,
   causes, re-complaints by the workflow's own rule; timeline entries for every step plus comments up
   to the total asked. COPY and INSERT ... SELECT; VACUUM (ANALYZE).
2. The API in this process: `cloud.api.app.create_app` behind FastAPI's TestClient (no network, no
   uvicorn; one request at a time, so a figure is a request's own time, not a queue's), its clock fixed
   at the moment the data ends.
3. Every endpoint and grouping, over the last 30 days and the last 365, as the manager of one estate and
   as the admin over all three: `--requests` requests each after one unmeasured warm-up. Then the same
   requests again with index scans off for the database (ALTER DATABASE ... SET enable_indexscan,
   enable_bitmapscan, enable_indexonlyscan = off; a new app and pool, so every connection takes it;
   RESET afterwards), and the rows of both answers compared.

Prints a table (p50, p99, full-scan p50 and p99, their ratio, p99 < 300 ms) and, last, the figures as
name=value pairs. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import harness
import psycopg
from harness import log
from psycopg import sql
from psycopg.rows import dict_row

from cloud.domain import people, sla
from cloud.domain.business_hours import BusinessCalendar, add_business_time
from cloud.security.passwords import hash_password
from cloud.security.pii import PiiCipher
from cloud.seed import ROUTES, seed_estate
from cloud.storage.migrate import upgrade
from community.broker import free_port

PASSWORD = "community-demo"
TIMEZONE = "Asia/Shanghai"
#: (site id, name, share of the tickets); all in one time zone: analytics over every site in reach
#: needs one (cloud.analytics.scope refuses a mix unless a site is named)
ESTATES = [("estate-a", "Sunny Gardens", 0.45), ("estate-b", "Harbour View", 0.35), ("estate-c", "Lotus Court", 0.20)]
RESIDENTIAL = ("1", "2", "3", "4", "5", "6")  # 1, 2 and PR (the plant room) come from the seed
FLOORS = 24
FLATS_PER_FLOOR = 6
#: more complaints from the older buildings
BUILDING_WEIGHTS = {"1": 1.6, "2": 1.4, "3": 1.0, "4": 0.9, "5": 0.6, "6": 0.5}
#: staff added to each estate: (key, name, department, role, skills)
EXTRA_STAFF = [
    ("tech3", "Huang Qiang", "Engineering", "technician", ["plumbing"]),
    ("tech4", "Wu Gang", "Engineering", "technician", ["elevator"]),
    ("tech5", "Xu Jun", "Engineering", "technician", ["electrical", "plumbing"]),
    ("tech6", "Sun Tao", "Engineering", "technician", []),
    ("env2", "Ma Li", "Environment", "technician", ["greenery", "pests"]),
    ("guard2", "Zhu Hai", "Security", "guard", ["patrol"]),
]
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu"]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Qiang", "Lei", "Jun", "Yan", "Jie", "Tao", "Ming", "Hua", "Ping"]

#: category -> [(subcategory, weight, titles)]
TOPICS: dict[str, list[tuple[str | None, float, list[str]]]] = {
    "facility": [
        ("plumbing", 0.35, ["Leaking pipe under the sink", "Bathroom drain blocked", "No hot water", "Toilet running"]),
        ("electrical", 0.25, ["Socket not working", "Corridor light out", "Breaker keeps tripping"]),
        ("elevator", 0.15, ["Lift stuck between floors", "Lift doors close too fast", "Grinding noise in the lift"]),
        (None, 0.25, ["Front door lock broken", "Window will not close", "Crack in the wall", "Intercom broken"]),
    ],
    "environment": [
        ("cleaning", 0.4, ["Stairwell needs cleaning", "Spilled paint in the lobby"]),
        ("waste", 0.3, ["Rubbish not collected", "Bins overflowing"]),
        ("greenery", 0.15, ["Overgrown hedge", "Fallen branch on the path"]),
        ("pests", 0.15, ["Cockroaches in the basement", "Rats near the bins"]),
    ],
    "service": [
        ("fees", 0.3, ["Question about the property fee", "Wrong amount on the fee notice"]),
        ("noise", 0.3, ["Neighbour noise at night", "Renovation noise on Sunday"]),
        ("parking", 0.25, ["Parking space taken", "Car blocking the garage exit"]),
        (None, 0.15, ["Access card for a visitor", "Parcel delivered to the wrong flat"]),
    ],
    "safety": [(None, 1.0, ["Fire exit blocked", "Smell of gas in the stairwell", "Broken railing on the roof"])],
    "other": [(None, 1.0, ["Suggestion for the garden", "Lost and found", "Delivery lockers full"])],
}
CATEGORY_WEIGHTS = {"facility": 0.5, "environment": 0.2, "service": 0.15, "safety": 0.08, "other": 0.07}
CHANNEL_WEIGHTS = {"app": 0.55, "web": 0.1, "phone": 0.25, "walk_in": 0.1}
PRIORITY_UP = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}
PLACES = ["lobby", "stairwell", "car park", "garden", "roof", "entrance", "corridor"]
#: cause codes and their kind; weights
CAUSES = [
    ("wear", "internal", 0.30),
    ("installation", "internal", 0.10),
    ("maintenance_missed", "internal", 0.12),
    ("workmanship", "internal", 0.08),
    ("misuse", "external", 0.15),
    ("weather", "external", 0.10),
    ("third_party", "external", 0.10),
    ("vandalism", "external", 0.05),
]
#: devices behind each gateway (one gateway per building) and what they raise:
#: profile -> (count, room, [(rule, weight, severity, ticket type or None, subcategory)])
DEVICES: dict[str, tuple[int, str, list[tuple[str, float, str, str | None, str | None]]]] = {
    "fire-panel": (
        3,
        "fire control room",
        [
            ("zone_alarm", 0.2, "critical", "safety", None),
            ("panel_fault", 0.4, "major", "repair", None),
            ("battery_low", 0.4, "minor", None, None),
        ],
    ),
    "elevator": (
        6,
        "lift machine room",
        [
            ("passenger_trapped", 0.1, "critical", "repair", "elevator"),
            ("elevator_fault", 0.4, "major", "repair", "elevator"),
            ("door_blocked", 0.3, "minor", None, "elevator"),
            ("overload", 0.2, "warning", None, "elevator"),
        ],
    ),
    "water-pump": (
        8,
        "pump room",
        [
            ("pump_fault", 0.3, "major", "repair", "plumbing"),
            ("low_outlet_pressure", 0.3, "major", "repair", "plumbing"),
            ("high_motor_current", 0.2, "minor", None, "plumbing"),
            ("dry_running", 0.2, "critical", "repair", "plumbing"),
        ],
    ),
    "electricity-meter": (
        6,
        "meter room",
        [
            ("undervoltage", 0.3, "minor", None, "electrical"),
            ("overvoltage", 0.2, "minor", None, "electrical"),
            ("phase_loss", 0.3, "major", "repair", "electrical"),
            ("overcurrent", 0.2, "major", "repair", "electrical"),
        ],
    ),
    "water-leak-sensor": (
        2,
        "basement",
        [
            ("water_leak", 0.5, "critical", "repair", "plumbing"),
            ("low_battery", 0.4, "warning", None, None),
            ("sensor_tamper", 0.1, "minor", None, None),
        ],
    ),
}
#: the share of alarms that open a ticket (the rest: ticket type none, or their rule never opens one)
ALARM_TICKET_SHARE = 0.4


# --- the database ---------------------------------------------------------------------------


class Database(harness.Stack):
    """A migrated database: fresh and dropped at the end (as the other benchmarks), or kept by name
    (`--keep NAME`) so the next run with the same dataset options reuses it."""

    def __init__(self, keep: str | None) -> None:
        super().__init__("analytics", broker=False)
        self.keep = keep
        self.admin_url = ""
        self.dbname = ""

    def _start(self) -> None:
        admin = os.environ.get("DATABASE_URL")
        if not admin:
            if self.keep:  # a data folder that outlives the run, next to the demo's
                admin = self.start_embedded(harness.REPO_ROOT / "var" / "bench-analytics" / "pgdata", cleanup="stop")
            else:
                admin = self.start_embedded(self.tmp / "pg" / "data")
        self.admin_url = admin
        self.dbname = self.keep or f"community_bench_{uuid.uuid4().hex[:10]}"
        self.open_database(admin, self.dbname, drop=not self.keep)
        log(f"database {self.dbname} migrated")

    def recreate(self) -> None:
        """Drop the kept database (its data were made with other options) and make it again."""
        harness._drop_database(self.admin_url, self.dbname)
        harness.create_database(self.admin_url, self.dbname)
        upgrade(self.database_url)

    def stamp(self) -> dict[str, Any] | None:
        """What the kept database holds (its comment: the dataset's options, key and end), if anything."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
        with contextlib.suppress(TypeError, ValueError):
            return json.loads(row[0]) if row and row[0] else None
        return None

    def set_stamp(self, stamp: dict[str, Any]) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(self.dbname), sql.Literal(json.dumps(stamp))
                )
            )


# --- the estates ----------------------------------------------------------------------------


@dataclass
class Device:
    id: int
    gateway_id: str
    name: str
    profile: str
    building: str
    building_id: int
    floor: str
    room: str


@dataclass
class Site:
    """One estate as the generator sees it."""

    site_id: str
    share: float
    buildings: dict[str, int]
    #: (unit id, building id, building code, floor, resident person id)
    units: list[tuple[int, int, str, str, int]] = field(default_factory=list)
    unit_weights: list[float] = field(default_factory=list)
    #: department name -> [(user id, skills)]
    workers: dict[str, list[tuple[int, tuple[str, ...]]]] = field(default_factory=dict)
    desk: int = 0
    devices: list[Device] = field(default_factory=list)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}{rng.choice(['', rng.choice(GIVEN).lower()])}"


def seed_sites(conn: psycopg.Connection, cipher: PiiCipher, now: datetime, rng: random.Random) -> list[Site]:
    """The seeded estates enlarged: buildings and flats with a resident each, more staff, gateways and devices."""
    password_hash = hash_password(PASSWORD)  # one hash for every added login: argon2 is slow on purpose
    departments = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM departments").fetchall()}
    sites = []
    for i, (site_id, site_name, share) in enumerate(ESTATES):
        prefix = f"{site_id[-1]}."
        estate = seed_estate(
            conn,
            cipher,
            site_id=site_id,
            site_name=site_name,
            timezone=TIMEZONE,
            prefix=prefix,
            now=now,
            with_admin=i == 0,
        )
        if not departments:
            departments = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM departments").fetchall()}
        site = Site(site_id, share, dict(estate.buildings))
        for code in RESIDENTIAL:
            row = conn.execute(
                """INSERT INTO buildings (site_id, code, name) VALUES (%s, %s, %s)
                   ON CONFLICT (site_id, code) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
                (site_id, code, f"Building {code}"),
            ).fetchone()
            site.buildings[code] = row["id"]  # type: ignore[index]
            conn.execute(
                """INSERT INTO units (building_id, number, floor, area_m2)
                   SELECT %(b)s, f || lpad(n::text, 2, '0'), f::text,
                          (ARRAY[76.0, 89.5, 120.0, 143.2])[1 + (f + n) %% 4]
                   FROM generate_series(1, %(floors)s) f, generate_series(1, %(flats)s) n
                   ON CONFLICT (building_id, number) DO NOTHING""",
                {"b": site.buildings[code], "floors": FLOORS, "flats": FLATS_PER_FLOOR},
            )
        empty = conn.execute(
            """SELECT u.id FROM units u JOIN buildings b ON b.id = u.building_id
               WHERE b.site_id = %s AND NOT EXISTS (SELECT 1 FROM unit_occupants o WHERE o.unit_id = u.id)
               ORDER BY u.id""",
            (site_id,),
        ).fetchall()
        with conn.cursor() as cur:  # executemany runs in pipeline mode: no round trip per row
            cur.executemany(
                "INSERT INTO people (kind, full_name) VALUES ('resident', %s) RETURNING id",
                [(_name(rng),) for _ in empty],
                returning=True,
            )
            person_ids = []
            while empty:
                person_ids.append(cur.fetchone()["id"])  # type: ignore[index]
                if not cur.nextset():
                    break
            cur.executemany(
                "INSERT INTO unit_occupants (unit_id, person_id, relation) VALUES (%s, %s, 'owner')",
                [(r["id"], pid) for r, pid in zip(empty, person_ids, strict=True)],
            )
        for key, name, dept, role, skills in EXTRA_STAFF:
            person = people.create(conn, cipher, kind="staff", full_name=name, actor="bench", now=now, data={})
            conn.execute(
                "INSERT INTO staff (person_id, department_id, title, skills) VALUES (%s, %s, %s, %s)",
                (person["id"], departments[dept], role, skills),
            )
            conn.execute("INSERT INTO staff_sites (person_id, site_id) VALUES (%s, %s)", (person["id"], site_id))
            conn.execute(
                "INSERT INTO users (username, password_hash, role, person_id) VALUES (%s, %s, %s, %s)",
                (f"{prefix}{key}", password_hash, role, person["id"]),
            )
        for r in conn.execute(
            """SELECT u.id, b.id AS building_id, b.code, u.floor, min(o.person_id) AS person
               FROM units u JOIN buildings b ON b.id = u.building_id JOIN unit_occupants o ON o.unit_id = u.id
               WHERE b.site_id = %s GROUP BY u.id, b.id, b.code, u.floor ORDER BY u.id""",
            (site_id,),
        ).fetchall():
            site.units.append((r["id"], r["building_id"], r["code"], r["floor"], r["person"]))
            site.unit_weights.append(BUILDING_WEIGHTS.get(r["code"], 1.0))
        for r in conn.execute(
            """SELECT u.id, u.role, d.name AS department, s.skills FROM users u
               JOIN staff s ON s.person_id = u.person_id JOIN staff_sites ss ON ss.person_id = u.person_id
               JOIN departments d ON d.id = s.department_id
               WHERE ss.site_id = %s ORDER BY u.id""",
            (site_id,),
        ).fetchall():
            if r["role"] in ("technician", "guard"):
                site.workers.setdefault(r["department"], []).append((r["id"], tuple(r["skills"])))
        site.desk = estate.users["desk"]
        site.workers["Customer service"] = [(site.desk, ())]
        for code, building_id in sorted(site.buildings.items()):
            gateway = f"{site_id}-gw-{code.lower()}"
            conn.execute(
                "INSERT INTO gateways (id, site_id, name, version, status) VALUES (%s, %s, %s, 'bench', 'online')",
                (gateway, site_id, f"Gateway, building {code}"),
            )
            for profile, (count, room, _rules) in DEVICES.items():
                for n in range(1, count + 1):
                    floor = "B1" if profile in ("water-pump", "water-leak-sensor") else str(1 + (n * 7) % FLOORS)
                    name = f"{profile}-{n:02d}"
                    row = conn.execute(
                        """INSERT INTO devices (gateway_id, name, profile, protocol, building, floor, room, announced)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, true) RETURNING id""",
                        (
                            gateway,
                            name,
                            profile,
                            "mqtt" if profile == "water-leak-sensor" else "modbus",
                            code,
                            floor,
                            room,
                        ),
                    ).fetchone()
                    site.devices.append(Device(row["id"], gateway, name, profile, code, building_id, floor, room))  # type: ignore[index]
        sites.append(site)
    return sites


# --- working time ---------------------------------------------------------------------------


class WorkingTime:
    """`add_business_time` and `business_seconds_between` for one calendar over a fixed span, by
    bisection over the span's working intervals: the domain's functions take about 100 µs a call,
    which is minutes for 200,000 tickets. `check` compares both on a sample."""

    def __init__(self, calendar: BusinessCalendar, first: date, last: date) -> None:
        self.calendar = calendar
        self.always = calendar.around_the_clock
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.before: list[int] = []  # working µs before each interval
        done, day = 0, first
        while day <= last:
            for a, b in calendar._intervals(day):  # the calendar's own intervals (DST and holidays included)
                self.starts.append(a)
                self.ends.append(b)
                self.before.append(done)
                done += b - a
            day += timedelta(days=1)
        self.upto = [s + (e - a) for s, e, a in zip(self.before, self.ends, self.starts, strict=True)]

    @staticmethod
    def _us(at: datetime) -> int:
        return (at - EPOCH) // timedelta(microseconds=1)

    def _worked(self, t: int) -> int:
        """Working µs from the span's start to `t`."""
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return 0
        return self.before[i] + min(t, self.ends[i]) - self.starts[i]

    def add(self, start: datetime, seconds: float) -> datetime:
        need = round(seconds * 1_000_000)
        if need == 0 or self.always:
            return start + timedelta(microseconds=need)
        target = self._worked(self._us(start)) + need
        j = bisect.bisect_left(self.upto, target)
        return EPOCH + timedelta(microseconds=self.starts[j] + target - self.before[j])

    def between(self, a: datetime, b: datetime) -> float:
        if b <= a:
            return 0.0
        if self.always:
            return (b - a).total_seconds()
        return (self._worked(self._us(b)) - self._worked(self._us(a))) / 1_000_000

    def check(self, rng: random.Random, first: datetime, days: int) -> None:
        """The same answers as the domain's add_business_time on 300 random starts and durations."""
        for _ in range(300):
            start = first + timedelta(seconds=rng.uniform(0, days * 86400))
            seconds = rng.choice([0, 900, 3600, 4 * 3600, 27 * 3600, 45 * 3600]) + rng.randrange(0, 600)
            mine, theirs = self.add(start, seconds), add_business_time(start, seconds, self.calendar)
            if mine != theirs:
                raise AssertionError(f"working time: {start} + {seconds} s gives {mine}, the domain {theirs}")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- tickets and alarms ---------------------------------------------------------------------

TICKET_COLUMNS = tuple(
    """
    number type category subcategory channel status priority title description site_id building floor
    location source_type gateway_id device_id alarm_rule alarm_key alarm_id occurrences created_at
    updated_at last_occurrence_at closed_at complainant_id unit_id building_id department_id assignee_id
    sla_policy_id response_due_at resolution_due_at response_warn_at resolution_warn_at
    response_warned_at resolution_warned_at response_breached_at resolution_breached_at escalation_level
    on_hold_since held_from_status paused_seconds first_response_at triaged_at assigned_at started_at
    resolved_at cancelled_at redirect_reason redirect_to result_note cause_kind cause_code rating
    rated_at reopen_count
    """.split()  # noqa: SIM905 (a list of 56 quoted names is longer and no clearer)
)
ALARM_COLUMNS = tuple(
    """
    source_type site_id gateway_id device_id rule alarm_key severity state message ticket_type raised_at
    received_at acknowledged_at acknowledged_by cleared_at
    """.split()  # noqa: SIM905 (a list of 56 quoted names is longer and no clearer)
)


class Generator:
    """Two years of alarms and tickets from one seeded random generator, ending at `now`."""

    def __init__(self, conn: psycopg.Connection, sites: list[Site], *, now: datetime, days: int, seed: int) -> None:
        self.conn = conn
        self.sites = sites
        self.now = now
        self.tz = ZoneInfo(TIMEZONE)
        self.rng = random.Random(seed)
        today = now.astimezone(self.tz).date()
        self.days = [today - timedelta(days=days - 1 - i) for i in range(days)]
        self.departments = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM departments").fetchall()}
        self.policies: dict[tuple[str, str, str], sla.SlaPolicy | None] = {}
        self.calendars: dict[int | None, WorkingTime] = {}
        self.span = (self.days[0] - timedelta(days=3), today + timedelta(days=120))
        # a busier office every month (+50 % over two years), quieter weekends, a summer peak (leaks, pests)
        weekday = [1.15, 1.05, 1.0, 1.0, 0.95, 0.85, 0.75]
        self.day_weights = [
            (0.8 + 0.4 * i / days)
            * weekday[d.weekday()]
            * (1 + 0.25 * math.sin(2 * math.pi * (d.timetuple().tm_yday - 105) / 365.25))
            for i, d in enumerate(self.days)
        ]
        self.day_cum = list(_accumulate(self.day_weights))
        self.tickets: list[dict[str, Any]] = []
        self.alarms: list[dict[str, Any]] = []

    # -- helpers --

    def _hours(self, median: float, sigma: float = 1.0) -> timedelta:
        """A log-normal duration around `median` hours: most short, a few very long."""
        return timedelta(hours=median * math.exp(self.rng.gauss(0, sigma)))

    def _day(self) -> date:
        return self.rng.choices(self.days, cum_weights=self.day_cum)[0]

    def _moment(self, day: date, hour: float) -> datetime:
        """A local day and hour as an instant; today's only up to five minutes ago."""
        local = datetime.combine(day, datetime.min.time(), self.tz) + timedelta(hours=hour)
        at = local.astimezone(UTC)
        if at > self.now - timedelta(minutes=5):
            start = datetime.combine(day, datetime.min.time(), self.tz).astimezone(UTC)
            at = start + (self.now - timedelta(minutes=5) - start) * self.rng.random()
        return at

    def _morning(self, at: datetime) -> datetime:
        """The next opening of the office (08:30 local, not on Sunday) at or after `at`."""
        local = at.astimezone(self.tz)
        opening = local.replace(hour=8, minute=30, second=0, microsecond=0)
        if local > local.replace(hour=17, minute=30, second=0, microsecond=0) or local.weekday() == 6:
            opening += timedelta(days=1)
        while opening.weekday() == 6:
            opening += timedelta(days=1)
        return max(opening.astimezone(UTC), at)

    def _working(self, calendar_id: int | None) -> WorkingTime:
        if calendar_id not in self.calendars:
            calendar = sla.load_calendar(self.conn, calendar_id, TIMEZONE)
            wt = WorkingTime(calendar, *self.span)
            start = datetime.combine(self.days[0], datetime.min.time(), self.tz)
            wt.check(random.Random(calendar_id or 0), start, len(self.days))
            self.calendars[calendar_id] = wt
        return self.calendars[calendar_id]

    def _policy(self, site: str, category: str, priority: str) -> sla.SlaPolicy | None:
        key = (site, category, priority)
        if key not in self.policies:
            self.policies[key] = sla.find_policy(self.conn, site_id=site, category=category, priority=priority)
        return self.policies[key]

    def _assignee(self, site: Site, department: str, skill: str | None) -> int:
        workers = site.workers[department]
        able = [w for w, skills in workers if skill is None or skill in skills]
        return self.rng.choice(able or [w for w, _s in workers])

    # -- one ticket's life --

    def live(self, row: dict[str, Any], site: Site, *, auto: bool) -> None:
        """Fill in what happened to a filed ticket up to now: response, work, holds, resolution,
        reopening, rating and closing, deadlines and their breaches. Times after now are left out."""
        rng, now = self.rng, self.now
        created = row["created_at"]
        urgent = row["priority"] in ("urgent", "high")
        local = created.astimezone(self.tz)
        after_hours = not (8.5 <= local.hour + local.minute / 60 < 17.5) or local.weekday() == 6
        base = created if urgent or not after_hours else self._morning(created)
        steps: list[tuple[datetime, str]] = []  # (time, status from then on)
        t: dict[str, Any] = {}
        fate = rng.random()
        if auto:
            t["triaged_at"] = t["assigned_at"] = created
            steps.append((created, "assigned"))
            t["started_at"] = base + self._hours(0.4 if urgent else 1.2)
            t["first_response_at"] = t["started_at"]
        else:
            t["triaged_at"] = t["first_response_at"] = base + self._hours(0.4)
            steps.append((t["triaged_at"], "triaged"))
            if fate < 0.06:
                where = rng.choice(["the district office", "the gas company", "the police (110)"])
                steps[-1] = (t["triaged_at"], "redirected")
                row.update(redirect_reason="out of scope", redirect_to=where)
            else:
                t["assigned_at"] = t["triaged_at"] + self._hours(0.3)
                steps.append((t["assigned_at"], "assigned"))
                if fate > 0.97:
                    t["cancelled_at"] = t["assigned_at"] + self._hours(3)
                    steps.append((t["cancelled_at"], "cancelled"))
                else:
                    t["started_at"] = t["assigned_at"] + self._hours(0.4 if urgent else 1.0)
        policy = self._policy(row["site_id"], row["category"], row["priority"])
        working = self._working(policy.calendar_id if policy else None)
        hold: tuple[datetime, datetime] | None = None
        if "started_at" in t:
            steps.append((t["started_at"], "in_progress"))
            work = self._hours({"facility": 8, "safety": 2}.get(row["category"], 3), 1.1)
            if rng.random() < 0.12:
                held = t["started_at"] + work * rng.random()
                hold = (held, held + self._hours(24 * 20 if rng.random() < 0.2 else 24))
                steps += [(hold[0], "on_hold"), (hold[1], "in_progress")]
                work += hold[1] - hold[0]
            resolved = t["started_at"] + work
            steps.append((resolved, "resolved"))
            if rng.random() < 0.05:  # the resident rejects the fix; the work is done again
                reopened = resolved + self._hours(12)
                resolved = reopened + self._hours(4)
                steps += [(reopened, "reopened"), (resolved, "resolved")]
                t["reopened_at"] = reopened
            t["resolved_at"] = resolved
            if rng.random() < 0.7:
                t["rated_at"] = resolved + self._hours(10)
                t["closed_at"] = t["rated_at"]
            else:
                t["closed_at"] = resolved + timedelta(days=7, seconds=rng.uniform(0, 10))
            steps.append((t["closed_at"], "closed"))
        # what has happened by now
        row["status"] = "new"
        last = created
        for at, status in steps:
            if at <= now:
                row["status"], last = status, max(last, at)
        for key in (
            "triaged_at",
            "assigned_at",
            "started_at",
            "first_response_at",
            "cancelled_at",
            "rated_at",
            "closed_at",
        ):
            if key in t and t[key] <= now:
                row[key] = t[key]
        if row["status"] == "redirected":
            row["assigned_at"] = None
        if t.get("reopened_at") and t["reopened_at"] <= now:
            row["reopen_count"] = 1
        if "resolved_at" in t and t["resolved_at"] <= now:
            row["resolved_at"] = t["resolved_at"]
            row["result_note"] = "Fixed and tested."
            if rng.random() < 0.9:
                code, kind, _w = rng.choices(CAUSES, weights=[c[2] for c in CAUSES])[0]
                row["cause_kind"], row["cause_code"] = kind, code
        if hold is not None:
            if hold[0] <= now < hold[1]:
                row["on_hold_since"], row["held_from_status"] = hold[0], "in_progress"
            elif hold[1] <= now:
                row["paused_seconds"] = working.between(*hold)
        # deadlines (pushed back by the working time on hold) and what the scheduler marked
        if policy is not None:
            row["sla_policy_id"] = policy.id
            paused = row["paused_seconds"]
            for which, minutes, met in (
                ("response", policy.response_minutes, row["first_response_at"]),
                ("resolution", policy.resolution_minutes, row["resolved_at"]),
            ):
                due = working.add(created, minutes * 60 + paused)
                warn = working.add(created, minutes * 60 * 0.8)
                row[f"{which}_due_at"], row[f"{which}_warn_at"] = due, warn
                stopped = min(x for x in (met, row["cancelled_at"], now) if x is not None)
                if row["status"] == "redirected":
                    stopped = min(stopped, row["triaged_at"])
                if warn < stopped:
                    row[f"{which}_warned_at"] = warn + timedelta(seconds=rng.uniform(0, 10))
                if due < stopped:
                    row[f"{which}_breached_at"] = min(due + timedelta(seconds=rng.uniform(0, 10)), stopped)
                    row["priority"] = PRIORITY_UP[row["priority"]]
                    row["escalation_level"] += 1
                    last = max(last, row[f"{which}_breached_at"])
        if row["rated_at"] is not None:
            late = row["resolution_breached_at"] is not None or (t["resolved_at"] - created) > timedelta(days=3)
            weights = [20, 30, 20, 15, 15] if late else [55, 28, 9, 4, 4]
            row["rating"] = rng.choices([5, 4, 3, 2, 1], weights=weights)[0]
        row["updated_at"] = last

    def _row(self, site: Site, created: datetime, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(TICKET_COLUMNS)
        row.update(
            site_id=site.site_id,
            created_at=created,
            occurrences=1,
            escalation_level=0,
            paused_seconds=0.0,
            reopen_count=0,
            **values,
        )
        return row

    # -- alarms and the tickets they open --

    def make_alarms(self, target: int, ticket_share: float) -> None:
        """About `target` alarms, oldest first; repeats of an alarm not yet cleared are not new alarms, and
        an alarm whose ticket is still open attaches to it instead of opening another."""
        rng = self.rng
        devices = [d for s in self.sites for d in s.devices]
        site_of = {d.id: s for s in self.sites for d in s.devices}
        # a few devices fail far more often than the rest
        weights = [min(rng.paretovariate(1.3), 40.0) for _ in devices]
        candidates = []
        for device in rng.choices(devices, weights=weights, k=target):
            rules = DEVICES[device.profile][2]
            rule = rng.choices(rules, weights=[r[1] for r in rules])[0]
            raised = self._moment(self._day(), rng.uniform(0, 24))
            candidates.append((raised, device, rule))
        candidates.sort(key=lambda c: (c[0], c[1].id))
        cleared_by_key: dict[str, datetime | None] = {}
        open_ticket: dict[str, dict[str, Any]] = {}
        for raised, device, (rule, _w, severity, ticket_type, subcategory) in candidates:
            key = f"device:{device.id}:{rule}"
            if key in cleared_by_key and (cleared_by_key[key] is None or cleared_by_key[key] > raised):  # type: ignore[operator]
                continue  # the same alarm is still raised: a repeat, not a new alarm
            alarm = {
                "source_type": "device",
                "site_id": site_of[device.id].site_id,
                "gateway_id": device.gateway_id,
                "device_id": device.id,
                "rule": rule,
                "alarm_key": key,
                "severity": severity,
                "message": f"{rule.replace('_', ' ')} on {device.name}",
                "ticket_type": "none",
                "raised_at": raised,
                "received_at": raised + timedelta(milliseconds=rng.uniform(50, 1500)),
                "acknowledged_at": None,
                "acknowledged_by": None,
                "ticket": None,
            }
            ticket = None
            if ticket_type is not None and rng.random() < ticket_share:
                alarm["ticket_type"] = ticket_type
                ticket = open_ticket.get(key)
                done = ticket and (ticket["closed_at"] or ticket["cancelled_at"])
                if ticket is not None and (done is None or done > raised):  # still open: the unique index says so
                    ticket["occurrences"] += 1  # the open ticket gets the repeat
                    ticket["last_occurrence_at"] = raised
                else:
                    ticket = self._alarm_ticket(site_of[device.id], device, alarm, ticket_type, subcategory)
                    open_ticket[key] = ticket
                alarm["ticket"] = ticket
            if ticket is not None and ticket["alarm"] is alarm:
                fixed = ticket["resolved_at"]
                cleared = fixed - timedelta(seconds=rng.uniform(0, 600)) if fixed else None
                cleared = max(cleared, raised + timedelta(seconds=1)) if cleared else None
                if ticket["first_response_at"]:
                    alarm["acknowledged_at"] = ticket["first_response_at"]
                    alarm["acknowledged_by"] = "technician"
            else:
                cleared = raised + self._hours(0.3, 1.2)
                cleared = cleared if cleared <= self.now else None
            alarm["cleared_at"] = cleared
            alarm["state"] = "cleared" if cleared else ("acknowledged" if alarm["acknowledged_at"] else "active")
            cleared_by_key[key] = cleared
            self.alarms.append(alarm)

    def _alarm_ticket(
        self, site: Site, device: Device, alarm: dict[str, Any], ticket_type: str, subcategory: str | None
    ) -> dict[str, Any]:
        category = "safety" if ticket_type == "safety" else "facility"
        _c, _s, department, skill, auto = next(r for r in ROUTES if r[0] == category and r[1] in (subcategory, None))
        priority = "urgent" if alarm["severity"] == "critical" else "high" if alarm["severity"] == "major" else "normal"
        row = self._row(
            site,
            alarm["received_at"] + timedelta(milliseconds=self.rng.uniform(20, 400)),
            type=ticket_type,
            category=category,
            subcategory=subcategory,
            channel="device",
            priority=priority,
            title=f"{alarm['rule'].replace('_', ' ').capitalize()}: {device.name}",
            description=alarm["message"],
            building=device.building,
            building_id=device.building_id,
            floor=device.floor,
            location=device.room,
            source_type="device",
            gateway_id=device.gateway_id,
            device_id=device.id,
            alarm_rule=alarm["rule"],
            alarm_key=alarm["alarm_key"],
            department_id=self.departments[department],
            assignee_id=self._assignee(site, department, skill),
        )
        self.live(row, site, auto=auto)
        row["alarm"] = alarm
        self.tickets.append(row)
        return row

    # -- residents' tickets --

    def make_tickets(self, count: int) -> None:
        """Residents' complaints and requests (app, web, phone, walk-in) until `count` tickets in all."""
        rng = self.rng
        site_weights = [s.share for s in self.sites]
        while len(self.tickets) < count:
            site = rng.choices(self.sites, weights=site_weights)[0]
            created = self._moment(self._day(), min(max(rng.gauss(13.5, 3.8), 0.0), 23.99))
            category = rng.choices(list(CATEGORY_WEIGHTS), weights=list(CATEGORY_WEIGHTS.values()))[0]
            subcategory, _w, titles = rng.choices(TOPICS[category], weights=[t[1] for t in TOPICS[category]])[0]
            title = rng.choice(titles)
            channel = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()))[0]
            unit_id, building_id, building, floor, resident = rng.choices(site.units, weights=site.unit_weights)[0]
            if category == "safety":
                ticket_type = "safety" if channel in ("phone", "walk_in") and rng.random() < 0.5 else "complaint"
                priority = "urgent" if rng.random() < 0.2 else "high"
            else:
                ticket_type = "repair" if category == "facility" and rng.random() < 0.8 else "complaint"
                by_desk = channel in ("phone", "walk_in")
                priority = (
                    rng.choices(["normal", "low", "high", "urgent"], weights=[80, 8, 9, 3])[0] if by_desk else "normal"
                )
            location = None
            if not (category == "facility" and rng.random() < 0.75):  # not in the flat
                location = rng.choice(PLACES)
                if rng.random() < 0.4:
                    unit_id = None
                    floor = None
                    if location in ("car park", "garden"):
                        building_id, building = None, None
            _c, _s, department, skill, auto = next(
                r for r in ROUTES if r[0] == category and r[1] in (subcategory, None)
            )
            row = self._row(
                site,
                created,
                type=ticket_type,
                category=category,
                subcategory=subcategory,
                channel=channel,
                priority=priority,
                title=title,
                description=f"{title}.",
                building=building,
                building_id=building_id,
                floor=floor,
                location=location,
                unit_id=unit_id,
                complainant_id=resident,
                department_id=self.departments[department],
                assignee_id=self._assignee(site, department, skill),
            )
            self.live(row, site, auto=auto)
            row["alarm"] = None
            if row["assigned_at"] is None:
                row["assignee_id"] = None
            self.tickets.append(row)


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


# --- loading --------------------------------------------------------------------------------


def load(conn: psycopg.Connection, gen: Generator, *, events: int, seed: int) -> dict[str, int]:
    """COPY the alarms and tickets; numbers per local day; re-complaints by the workflow's rule; the
    timeline entries by INSERT ... SELECT (every step a ticket took, then comments up to `events`)."""
    tz = gen.tz
    t0 = time.monotonic()
    with conn.cursor() as cur:
        alarm_cols = sql.SQL(", ").join(map(sql.Identifier, ALARM_COLUMNS))
        with cur.copy(sql.SQL("COPY alarms ({}) FROM STDIN").format(alarm_cols)) as copy:
            for a in gen.alarms:
                copy.write_row([a[c] for c in ALARM_COLUMNS])
        found = cur.execute("SELECT alarm_key, raised_at, id FROM alarms").fetchall()
        ids = {(r["alarm_key"], r["raised_at"]): r["id"] for r in found}
        for a in gen.alarms:
            a["id"] = ids[(a["alarm_key"], a["raised_at"])]
        rows = sorted(gen.tickets, key=lambda r: r["created_at"])
        per_day: Counter[date] = Counter()
        for r in rows:
            day = r["created_at"].astimezone(tz).date()
            per_day[day] += 1
            r["number"] = f"T-{day:%Y%m%d}-{per_day[day]:04d}"
            r["alarm_id"] = r["alarm"]["id"] if r["alarm"] else None
        ticket_cols = sql.SQL(", ").join(map(sql.Identifier, TICKET_COLUMNS))
        with cur.copy(sql.SQL("COPY tickets ({}) FROM STDIN").format(ticket_cols)) as copy:
            for r in rows:
                copy.write_row([r[c] for c in TICKET_COLUMNS])
        cur.execute("CREATE TEMP TABLE alarm_ticket (alarm_id bigint, number text) ON COMMIT DROP")
        with cur.copy("COPY alarm_ticket FROM STDIN") as copy:
            for a in gen.alarms:
                if a["ticket"] is not None:
                    copy.write_row([a["id"], a["ticket"]["number"]])
        cur.execute(
            """UPDATE alarms a SET ticket_id = t.id FROM alarm_ticket x JOIN tickets t ON t.number = x.number
               WHERE a.id = x.alarm_id"""
        )
        cur.executemany("INSERT INTO ticket_counters (day, last_value) VALUES (%s, %s)", list(per_day.items()))
        log(f"  alarms and tickets copied ({time.monotonic() - t0:.1f} s); re-complaints ...")
        cur.execute("ANALYZE tickets")
        # the workflow's rule (cloud.domain.workflow.find_earlier): the same unit or device and matter,
        # an earlier ticket resolved within the 30 days before this one was filed
        for same in ("unit_id", "device_id"):  # a join per key: an OR of both would scan per ticket
            cur.execute(
                sql.SQL(
                    """UPDATE tickets t SET recomplaint_of = x.earlier FROM (
                           SELECT DISTINCT ON (t.id) t.id, e.id AS earlier
                           FROM tickets t JOIN tickets e ON e.{same} = t.{same}
                                AND coalesce(e.subcategory, e.category) = coalesce(t.subcategory, t.category)
                           WHERE e.id <> t.id AND e.resolved_at >= t.created_at - interval '30 days'
                             AND e.resolved_at < t.created_at
                           ORDER BY t.id, e.resolved_at DESC) x
                       WHERE x.id = t.id"""
                ).format(same=sql.Identifier(same))
            )
        log(f"  re-complaints marked ({time.monotonic() - t0:.1f} s); timeline entries ...")
        # every step each ticket took, as the workflow writes them; then comments up to the total asked
        cur.execute(
            """CREATE TEMP TABLE steps ON COMMIT DROP AS
                 SELECT t.id AS ticket_id, s.at, s.actor, s.kind, s.body, s.data, s.user_id AS actor_user_id,
                        s.visibility
                 FROM tickets t LEFT JOIN users u ON u.id = t.assignee_id,
                 LATERAL (VALUES
                   (t.created_at, CASE WHEN t.channel = 'device' THEN 'system' ELSE 'resident' END, 'created',
                    'Registered (' || t.channel || '): ' || t.title, jsonb_build_object('channel', t.channel),
                    NULL::bigint, 'shared'),
                   (CASE WHEN t.channel <> 'device' AND t.category IN ('service', 'other') THEN t.triaged_at END,
                    'desk', CASE WHEN t.status = 'redirected' THEN 'redirected' ELSE 'triaged' END, 'Accepted.',
                    '{}'::jsonb, NULL, 'shared'),
                   (t.assigned_at, coalesce(u.username, 'system'), 'assigned', 'Assigned.',
                    jsonb_build_object('assignee_id', t.assignee_id), NULL, 'shared'),
                   (t.started_at, coalesce(u.username, 'system'), 'started', 'Work started.', '{}', t.assignee_id,
                    'shared'),
                   (t.response_breached_at, 'system', 'response_breached', 'The response deadline was missed.',
                    '{}', NULL, 'internal'),
                   (t.resolution_breached_at, 'system', 'resolution_breached', 'The resolution deadline was missed.',
                    '{}', NULL, 'internal'),
                   (t.on_hold_since, coalesce(u.username, 'system'), 'on_hold', 'On hold: waiting for parts.', '{}',
                    t.assignee_id, 'shared'),
                   (t.resolved_at, coalesce(u.username, 'system'), 'resolved', 'Resolved: ' || t.result_note,
                    jsonb_build_object('cause', t.cause_code), t.assignee_id, 'shared'),
                   (t.rated_at, 'resident', 'rated', 'Rated ' || t.rating || '/5.', '{}', NULL, 'shared'),
                   (t.closed_at, CASE WHEN t.rated_at IS NULL THEN 'system' ELSE 'resident' END, 'closed', 'Closed.',
                    '{}', NULL, 'shared'),
                   (t.cancelled_at, 'desk', 'cancelled', 'Cancelled.', '{}', NULL, 'shared')
                 ) s(at, actor, kind, body, data, user_id, visibility)
                 WHERE s.at IS NOT NULL"""
        )
        steps = cur.execute("SELECT count(*) FROM steps").fetchone()
        assert steps is not None
        comments = events - steps["count"]
        if comments < 0:
            raise ValueError(f"the tickets' steps make {steps['count']} timeline entries, more than --events {events}")
        bounds = cur.execute("SELECT min(id) AS first, count(*) AS n FROM tickets").fetchone()
        assert bounds is not None
        cur.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
        # Comments go to a skewed share of tickets (a few attract many): a ticket's position is the
        # square of a uniform draw (small positions often), scattered over the ids by a large prime.
        cur.execute(
            """INSERT INTO ticket_events (ticket_id, at, actor, kind, body, data, actor_user_id, visibility)
               SELECT * FROM (
                 SELECT * FROM steps
                 UNION ALL
                 SELECT t.id, t.created_at + (coalesce(t.closed_at, t.cancelled_at, %(now)s) - t.created_at) * c.f,
                        CASE WHEN c.g < 0.3 THEN 'resident' ELSE coalesce(u.username, 'desk') END, 'comment',
                        (ARRAY['Called the resident, will visit tomorrow.', 'Any news on this?', 'Parts ordered.',
                               'Photo attached by the resident.', 'Checked again, still fine.',
                               'Please come after 6 pm.'])[1 + floor(c.g * 6)::int],
                        '{}', CASE WHEN c.g >= 0.3 THEN t.assignee_id END,
                        CASE WHEN c.g < 0.5 THEN 'shared' ELSE 'internal' END
                 FROM (SELECT %(first)s + (floor(power(random(), 2) * %(n)s)::bigint * 1000003) %% %(n)s AS id,
                              random() AS f, random() AS g
                       FROM generate_series(1, %(comments)s)) c
                 JOIN tickets t ON t.id = c.id LEFT JOIN users u ON u.id = t.assignee_id
               ) e ORDER BY at""",
            {"now": gen.now, "first": bounds["first"], "n": bounds["n"], "comments": comments},
        )
        total = cur.execute("SELECT count(*) FROM ticket_events").fetchone()
    return {"tickets": len(rows), "alarms": len(gen.alarms), "events": int(total["count"]), "comments": comments}  # type: ignore[index]


def describe(conn: psycopg.Connection) -> str:
    """What was loaded, for the output."""
    q = conn.execute
    statuses = q("SELECT status, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 2 DESC").fetchall()
    channels = q("SELECT channel, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 2 DESC").fetchall()
    facts = q(
        """SELECT count(*) FILTER (WHERE alarm_id IS NOT NULL) AS alarm_tickets,
                  count(*) FILTER (WHERE recomplaint_of IS NOT NULL) AS recomplaints,
                  count(*) FILTER (WHERE reopen_count > 0) AS reopened,
                  count(*) FILTER (WHERE rating IS NOT NULL) AS rated,
                  count(*) FILTER (WHERE response_breached_at IS NOT NULL) AS response_breached,
                  count(*) FILTER (WHERE cause_code IS NOT NULL) AS with_cause,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - created_at))
                      AS response_p50,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - first_response_at))
                      AS handling_p50,
                  min(created_at)::date AS since,
                  pg_size_pretty(pg_total_relation_size('tickets')) AS tickets_size,
                  pg_size_pretty(pg_total_relation_size('ticket_events')) AS events_size,
                  (SELECT count(*) FROM alarms) AS alarms,
                  (SELECT count(*) FROM devices) AS devices,
                  (SELECT count(*) FROM units) AS units
           FROM tickets"""
    ).fetchone()
    assert facts is not None
    f = dict(facts) if isinstance(facts, dict) else facts
    return (
        "statuses: " + ", ".join(f"{r['status']} {r['n']}" for r in statuses) + "\n"
        "channels: " + ", ".join(f"{r['channel']} {r['n']}" for r in channels) + "\n"
        f"opened by alarms {f['alarm_tickets']}, re-complaints {f['recomplaints']}, reopened {f['reopened']}, "
        f"rated {f['rated']}, response deadline missed {f['response_breached']}, cause recorded {f['with_cause']}; "
        f"response p50 {f['response_p50'] / 60:.0f} min, handling p50 {f['handling_p50'] / 3600:.1f} h; "
        f"tickets since {f['since']}; {f['alarms']} alarms, {f['devices']} devices, {f['units']} flats; "
        f"on disk: tickets {f['tickets_size']}, ticket_events {f['events_size']}"
    )


# --- the requests ---------------------------------------------------------------------------

#: endpoint -> (the parameter that groups, its values, other parameters); forecast has no range
ENDPOINTS: dict[str, tuple[str | None, list[str], dict[str, str]]] = {
    "kpis": (
        "group_by",
        ["none", "day", "week", "month", "category", "channel", "building", "department", "technician"],
        {},
    ),
    "causes": ("group_by", ["none", "category", "building"], {}),
    "top": ("by", ["device", "location"], {"limit": "10"}),
    "alarm-fix": ("group_by", ["none", "day", "week", "month", "category", "building", "device", "rule"], {}),
    # the forecast keeps whole answers per process, keyed by the newest ticket id at the sites, and fitted
    # models keyed by the daily series (which end with the last complete day): "cached" asks the same again
    # (both caches hold); "recount" empties the answers before each request (what a request costs after
    # any new ticket: the counts are read again, the models are reused); "cold" empties both (the first
    # request of a day)
    "forecast": (None, ["cached", "recount", "cold"], {"weeks": "4"}),
}
RANGES = {"30d": 30, "365d": 365}
TARGET_MS = 300.0
FULL_SCAN = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")


@dataclass(frozen=True)
class Case:
    endpoint: str
    grouping: str
    range: str
    who: str
    params: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        return f"/api/v1/analytics/{self.endpoint}"

    @property
    def label(self) -> str:
        return f"{self.endpoint} {self.grouping} {self.range} {self.who}"


@dataclass
class Measured:
    latencies_ms: list[float]
    first_ms: float
    rows: list[Any]
    #: the machine's 1-minute load average when the case ended (2 cores: above 2, others were waiting)
    load: float
    #: CPU ms per timed request, this process and PostgreSQL together (None: the server is elsewhere)
    cpu_ms: float | None

    def p(self, q: float) -> float:
        return harness.percentile(self.latencies_ms, q)


class CpuClock:
    """CPU seconds used so far by this process (the app, the client) and by PostgreSQL (the postmaster,
    its live children and those it has reaped: parallel workers too), when the server runs here.

    Per request, their sum is what the request costs the machine: on a machine that other work keeps
    busy the wall-clock time grows with the queue for the cores, this does not (much)."""

    def __init__(self, postmaster: int | None) -> None:
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(postmaster) if postmaster else None

    def read(self) -> float | None:
        own = time.process_time()
        if self.root is None:
            return None
        try:
            t = self.root.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for child in self.root.children():
                with contextlib.suppress(self.psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        except self.psutil.Error:
            return None
        return own + total


def forget_forecasts(*, models: bool) -> None:
    """Empty the forecast's process-wide caches: the whole answers (`ANSWERS`) and, with `models`, the
    fitted series (`CACHE`), both in cloud.analytics.forecast_report."""
    from cloud.analytics import forecast_report

    forecast_report.ANSWERS.clear()
    if models:
        forecast_report.CACHE.clear()


def make_cases(today: date, only: set[str] | None, ranges: list[str], roles: list[str]) -> list[Case]:
    cases = []
    for endpoint, (key, values, extra) in ENDPOINTS.items():
        if only and endpoint not in only:
            continue
        for value in values:
            for who in roles:
                for name in ranges if key else ["2 years"]:
                    params = dict(extra)
                    if key:
                        params[key] = value
                        params["from"] = (today - timedelta(days=RANGES[name] - 1)).isoformat()
                        params["to"] = today.isoformat()
                    cases.append(Case(endpoint, value, name, who, tuple(params.items())))
    return cases


@contextlib.contextmanager
def api_client(database_url: str, now: datetime, data_key: str, folder: Path) -> Iterator[Any]:
    """The API app in this process behind FastAPI's TestClient; a new app is a new pool (new connections)."""
    from fastapi.testclient import TestClient

    from cloud.api.app import create_app
    from cloud.settings import CloudSettings
    from contract.clock import ManualClock

    settings = CloudSettings(
        database_url=database_url,
        data_dir=folder,
        scheduler_enabled=False,
        jwt_secret="bench-" + "x" * 40,
        data_key=data_key,
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # nobody listens: the downlink idles, nothing is sent
        log_level="WARNING",
    )
    app = create_app(settings, clock=ManualClock(now), apply_migrations=False)
    with TestClient(app) as client:
        yield client


def login(client: Any, username: str) -> dict[str, str]:
    resp = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    if resp.status_code != 200:
        raise RuntimeError(f"login as {username}: {resp.status_code} {resp.text}")
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def run_cases(
    client: Any, cases: list[Case], requests: int, title: str, cpu: CpuClock, budget: float | None = None
) -> dict[Case, Measured]:
    """Each case: one unmeasured request (its time kept as `first`), then `requests` timed ones in a row;
    with a `budget` (seconds), fewer once the case has taken that long (at least 3)."""
    headers = {"manager": login(client, "a.manager"), "admin": login(client, "admin")}
    out: dict[Case, Measured] = {}
    for n, case in enumerate(cases, 1):
        timings = []
        rows: list[Any] = []
        first = 0.0
        if case.endpoint == "forecast":
            forget_forecasts(models=True)  # the first request fits the models, in both runs
        started = time.monotonic()
        for i in range(requests + 1):
            if budget is not None and len(timings) >= 3 and time.monotonic() - started > budget:
                break
            if case.grouping in ("recount", "cold"):
                forget_forecasts(models=case.grouping == "cold")
            t0 = time.perf_counter()
            resp = client.get(case.path, params=dict(case.params), headers=headers[case.who])
            ms = (time.perf_counter() - t0) * 1000
            if resp.status_code != 200:
                raise RuntimeError(f"{case.label}: {resp.status_code} {resp.text[:500]}")
            if i == 0:
                first, rows = ms, resp.json()["rows"]
                cpu0 = cpu.read()
            else:
                timings.append(ms)
        cpu1 = cpu.read()
        cpu_ms = (cpu1 - cpu0) * 1000 / len(timings) if cpu0 is not None and cpu1 is not None else None
        out[case] = Measured(timings, first, rows, os.getloadavg()[0], cpu_ms)
        log(
            f"  [{title} {n}/{len(cases)}] {case.label}: p50 {harness.percentile(timings, 50):.1f} ms "
            f"p99 {harness.percentile(timings, 99):.1f} ms, cpu {cpu_ms or 0:.1f} ms ({len(rows)} rows)"
        )
    return out


def set_full_scan(database_url: str, dbname: str, on: bool) -> None:
    """Index scans off (or back to the default) for every new connection to the database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in FULL_SCAN:
            if on:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = off").format(sql.Identifier(dbname), sql.Identifier(name))
                )
            else:
                conn.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(sql.Identifier(dbname), sql.Identifier(name)))


class Capture:
    """The statements the analytics code sends during one request (psycopg's execute, patched for the
    time being), to EXPLAIN ANALYZE them afterwards on a connection of their own."""

    def __init__(self) -> None:
        self.statements: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        original = psycopg.Cursor.execute  # Connection.execute runs through it too
        capture = self

        def execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            capture.statements.append((query, params))
            return original(self, query, params, **kw)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        try:
            yield
        finally:
            psycopg.Cursor.execute = original  # type: ignore[method-assign]


def explain(client: Any, database_url: str, case: Case) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements one request of `case` sends that read tickets or alarms,
    in one transaction after the same SET LOCALs (work_mem, jit, ...) the request made."""
    headers = login(client, "a.manager" if case.who == "manager" else "admin")
    capture = Capture()
    with capture.active():
        client.get(case.path, params=dict(case.params), headers=headers)
    out = [f"-- {case.label}"]
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for query, params in capture.statements:
            text = query.as_string(conn) if isinstance(query, sql.Composable) else str(query)
            if "set_config(" in text or text.lstrip().upper().startswith("SET "):
                conn.execute(text, params)  # type: ignore[call-overload]
                out.append(text.strip())
                continue
            if not any(word in text for word in ("tickets", "alarms")) or not text.lstrip().upper().startswith(
                ("SELECT", "WITH")
            ):
                continue
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params).fetchall()  # type: ignore[call-overload]
            out.append(text.strip() + "\n" + "\n".join(r["QUERY PLAN"] for r in plan))
        conn.rollback()
    return "\n\n".join(out)


# --- main -----------------------------------------------------------------------------------

#: bumped when the generator changes, so a kept database made by an older one is made again
DATASET_VERSION = 2


def build_dataset(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    """Seed, generate and load; returns the stamp (options, the data's end, the key of its personal data)."""
    now = datetime.now(UTC).replace(microsecond=0)
    data_key = base64.b64encode(os.urandom(32)).decode()
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with psycopg.connect(db.database_url, row_factory=dict_row) as conn:
        sites = seed_sites(conn, PiiCipher(base64.b64decode(data_key)), now, rng)
        conn.commit()
        t1 = time.monotonic()
        log(f"  seeded in {t1 - t0:.1f} s; generating ...")
        gen = Generator(conn, sites, now=now, days=args.days, seed=args.seed)
        gen.make_alarms(args.alarms, ALARM_TICKET_SHARE)
        gen.make_tickets(args.tickets)
        t2 = time.monotonic()
        log(f"  {len(gen.tickets):,} tickets and {len(gen.alarms):,} alarms generated in {t2 - t1:.1f} s; loading ...")
        loaded = load(conn, gen, events=args.events, seed=args.seed)
        conn.commit()
    t3 = time.monotonic()
    log(f"  loaded in {t3 - t2:.1f} s; VACUUM (ANALYZE) ...")
    with psycopg.connect(db.database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    t4 = time.monotonic()
    print(
        f"data: {loaded['tickets']:,} tickets ({sum(1 for t in gen.tickets if t['alarm'])} opened by alarms), "
        f"{loaded['events']:,} timeline entries ({loaded['comments']:,} of them comments), {loaded['alarms']:,} "
        f"alarms over {args.days} days -- seeded in {t1 - t0:.1f} s, generated in {t2 - t1:.1f} s, loaded in "
        f"{t3 - t2:.1f} s, VACUUM (ANALYZE) {t4 - t3:.1f} s: {t4 - t0:.1f} s in all",
        flush=True,
    )
    return {**dataset_options(args), "now": now.isoformat(), "data_key": data_key}


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "version": DATASET_VERSION,
        "tickets": args.tickets,
        "events": args.events,
        "alarms": args.alarms,
        "days": args.days,
        "seed": args.seed,
    }


def _ms(value: float | None) -> str:
    return f"{value:6.1f}" if value is not None else f"{'?':>6s}"


def print_table(cases: list[Case], fast: dict[Case, Measured], full: dict[Case, Measured]) -> None:
    head = (
        f"{'endpoint':10s} {'grouping':10s} {'range':7s} {'as':7s} {'rows':>5s} {'first':>7s} {'p50':>7s} "
        f"{'p99':>7s} {'cpu':>6s} {'scan p50':>9s} {'scan p99':>9s} {'cpu':>6s} {'ratio':>6s}  p99<{TARGET_MS:.0f}ms "
        f"{'load':>5s}"
    )
    print(head)
    print("-" * len(head))
    for case in cases:
        m = fast[case]
        f = full.get(case)
        scan = (
            f"{f.p(50):9.1f} {f.p(99):9.1f} {_ms(f.cpu_ms)} {f.p(50) / m.p(50):6.1f}"
            if f
            else f"{'-':>9s} {'-':>9s} {'-':>6s} {'-':>6s}"
        )
        note = (
            f"  (full scan: {len(f.latencies_ms)} requests)" if f and len(f.latencies_ms) < len(m.latencies_ms) else ""
        )
        ok = "yes" if m.p(99) < TARGET_MS else "NO"
        print(
            f"{case.endpoint:10s} {case.grouping:10s} {case.range:7s} {case.who:7s} {len(m.rows):5d} "
            f"{m.first_ms:7.1f} {m.p(50):7.1f} {m.p(99):7.1f} {_ms(m.cpu_ms)} {scan}  {ok:9s} {m.load:5.1f}{note}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=200_000, help="tickets in the database (alarm tickets included)")
    parser.add_argument("--events", type=int, help="timeline entries (default: 10 per ticket)")
    parser.add_argument("--alarms", type=int, help="alarms raised, about (default: a quarter of --tickets)")
    parser.add_argument("--days", type=int, default=730, help="the history's length in days, ending now")
    parser.add_argument("--seed", type=int, default=6, help="the random generator's seed (same seed, same data)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per case, after one warm-up")
    parser.add_argument("--only", help="endpoints to measure, comma-separated (default: all)")
    parser.add_argument("--ranges", default="30d,365d", help="ranges: 30d, 365d")
    parser.add_argument("--roles", default="manager,admin", help="who asks: manager (estate-a), admin (all sites)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the full-scan run")
    parser.add_argument(
        "--scan-budget",
        type=float,
        default=60.0,
        help="seconds a case may take in the full-scan run before it stops short of --requests (at least 3)",
    )
    parser.add_argument("--explain", action="append", default=[], help="ENDPOINT:GROUPING:RANGE:WHO to EXPLAIN ANALYZE")
    parser.add_argument(
        "--sql", action="append", default=[], help="a statement to run before the requests (e.g. an index to try)"
    )
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="keep the database under this name (with the embedded PostgreSQL: in var/bench-analytics) and reuse "
        "it on the next run with the same dataset options",
    )
    args = parser.parse_args()
    args.events = args.events if args.events is not None else 10 * args.tickets
    args.alarms = args.alarms if args.alarms is not None else args.tickets // 4
    harness.install_signal_handlers()
    only = set(args.only.split(",")) if args.only else None
    try:
        with Database(args.keep) as db:
            with psycopg.connect(db.database_url) as conn:
                version = conn.execute("SHOW server_version").fetchone()
            print("machine: " + json.dumps({**harness.machine(), "postgresql": str(version[0]) if version else "?"}))
            stamp = db.stamp() if args.keep else None
            if stamp and {k: stamp.get(k) for k in dataset_options(args)} == dataset_options(args):
                print(f"data: reusing database {db.dbname}, made at {stamp['now']}")
            else:
                if stamp is not None or (args.keep and _has_sites(db.database_url)):
                    log(f"database {db.dbname} holds other data: making it again")
                    db.recreate()
                log(f"generating {args.tickets:,} tickets, {args.events:,} timeline entries, ~{args.alarms:,} alarms")
                stamp = build_dataset(db, args)
                if args.keep:
                    db.set_stamp(stamp)
            with psycopg.connect(db.database_url, row_factory=dict_row) as conn:
                print(describe(conn))
            with psycopg.connect(db.database_url, autocommit=True) as conn:
                for statement in args.sql:
                    print(f"extra SQL: {statement}")
                    conn.execute(statement)  # type: ignore[call-overload]
                if args.sql:
                    conn.execute("ANALYZE")
            now = datetime.fromisoformat(stamp["now"])
            today = now.astimezone(ZoneInfo(TIMEZONE)).date()
            cases = make_cases(today, only, args.ranges.split(","), args.roles.split(","))
            folder = Path(tempfile.mkdtemp(prefix="analytics-", dir=db.tmp))
            cpu = CpuClock(db.postgres_pid())
            print(
                f"requests: FastAPI TestClient on the app in this process, one at a time; {args.requests} timed per "
                f"case after one warm-up; the data end (the app's clock) at {now.isoformat()}, local day {today}"
            )
            with api_client(db.database_url, now, stamp["data_key"], folder) as client:
                for spec in args.explain:
                    endpoint, grouping, rng_name, who = spec.split(":")
                    match = [c for c in make_cases(today, {endpoint}, [rng_name], [who]) if c.grouping == grouping]
                    print(explain(client, db.database_url, match[0]))
                fast = run_cases(client, cases, args.requests, "indexes", cpu)
            full: dict[Case, Measured] = {}
            if not args.no_baseline:
                set_full_scan(db.database_url, db.dbname, True)
                try:
                    with api_client(db.database_url, now, stamp["data_key"], folder) as client:
                        with client.app.state.pool.connection() as conn:
                            shown = conn.execute("SELECT current_setting('enable_indexscan') AS v").fetchone()
                        assert shown is not None and shown["v"] == "off", shown
                        full = run_cases(client, cases, args.requests, "full scan", cpu, args.scan_budget)
                finally:
                    set_full_scan(db.database_url, db.dbname, False)
            print_table(cases, fast, full)
            differ = [c for c in cases if c in full and full[c].rows != fast[c].rows]
            for case in differ:
                a, b = fast[case].rows, full[case].rows
                first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                print(
                    f"ROWS DIFFER: {case.label}: {len(a)} rows with indexes, {len(b)} by full scan; first difference "
                    f"at row {first}: {a[first] if first < len(a) else None} / {b[first] if first < len(b) else None}"
                )
            missed = [c for c in cases if fast[c].p(99) >= TARGET_MS]
            figures: dict[str, float | int | str] = {}
            for endpoint in dict.fromkeys(c.endpoint for c in cases):
                mine = [c for c in cases if c.endpoint == endpoint]
                figures[f"{endpoint}_worst_p50_ms"] = max(fast[c].p(50) for c in mine)
                figures[f"{endpoint}_worst_p99_ms"] = max(fast[c].p(99) for c in mine)
                if full:
                    figures[f"{endpoint}_scan_worst_p99_ms"] = max(full[c].p(99) for c in mine)
            loads = [m.load for m in [*fast.values(), *full.values()]]
            figures.update(
                load_mean=sum(loads) / len(loads),
                load_max=max(loads),
                cases=len(cases),
                missed=len(missed),
                rows_differ=len(differ),
                requests=args.requests,
                tickets=args.tickets,
                events=args.events,
            )
            print(harness.pairs(figures), flush=True)
            return 1 if differ else 0
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130


def _has_sites(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM sites)").fetchone()
    return bool(row and row[0])


if __name__ == "__main__":
    sys.exit(main())
