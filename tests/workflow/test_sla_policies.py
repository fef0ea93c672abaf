"""SLA policies and calendars in PostgreSQL: which policy applies (category, then site, then
priority), calendars loaded with their holidays in the site's time zone, and deadlines computed
from what is stored."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest

from cloud.domain.sla import (
    AROUND_THE_CLOCK,
    Holiday,
    WeeklySchedule,
    compute_deadlines,
    create_calendar,
    find_policy,
    load_calendar,
    paused_business_seconds,
    policy_by_id,
)
from cloud.domain.tickets import Priority
from cloud.storage.db import connect
from contract.common import Category

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = WeeklySchedule.every_day("09:00", "18:00", days=("mon", "tue", "wed", "thu", "fri"))


@pytest.fixture
def conn(database_url: str):
    with connect(database_url) as c:
        c.execute(
            "INSERT INTO sites (id, name, timezone) VALUES ('a', 'Estate A', 'Asia/Shanghai'), "
            "('b', 'Estate B', 'Europe/Berlin')"
        )
        yield c


def policy(
    conn: psycopg.Connection,
    *,
    site: str | None = None,
    category: str | None = None,
    priority: str | None = None,
    minutes: int = 60,
    calendar_id: int | None = None,
    active: bool = True,
) -> int:
    row = conn.execute(
        """INSERT INTO sla_policies (site_id, category, priority, response_minutes, resolution_minutes,
                                     calendar_id, active)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (site, category, priority, minutes, minutes * 8, calendar_id, active),
    ).fetchone()
    assert row is not None
    return row["id"]


def found(conn: psycopg.Connection, site: str, category: str, priority: str) -> int | None:
    hit = find_policy(conn, site_id=site, category=category, priority=priority)
    return None if hit is None else hit.id


def test_no_policy_applies_to_an_empty_table_or_another_sites_rows(conn):
    assert find_policy(conn, site_id="a", category=Category.SERVICE, priority=Priority.NORMAL) is None
    policy(conn, site="b")
    assert find_policy(conn, site_id="a", category=Category.SERVICE, priority=Priority.NORMAL) is None
    assert found(conn, "b", "service", "normal") is not None


def test_precedence_category_then_site_then_priority(conn):
    default = policy(conn, minutes=480)
    any_urgent = policy(conn, priority="urgent", minutes=120)
    site_a = policy(conn, site="a", minutes=240)
    site_a_urgent = policy(conn, site="a", priority="urgent", minutes=60)
    safety = policy(conn, category="safety", minutes=15)
    facility_urgent = policy(conn, category="facility", priority="urgent", minutes=30)
    site_a_facility = policy(conn, site="a", category="facility", minutes=90)
    site_a_facility_high = policy(conn, site="a", category="facility", priority="high", minutes=45)
    policy(conn, site="a", category="safety", priority="urgent", minutes=1, active=False)

    # nothing specific: the all-sites default; its urgent variant for urgent tickets
    assert found(conn, "b", "service", "normal") == default
    assert found(conn, "b", "service", "urgent") == any_urgent
    # the site's own policies beat the all-sites ones of the same category scope
    assert found(conn, "a", "service", "normal") == site_a
    assert found(conn, "a", "service", "urgent") == site_a_urgent
    # an exact category beats everything with "any category", even the site's own urgent policy
    assert found(conn, "a", "safety", "urgent") == safety
    assert found(conn, "b", "safety", "low") == safety
    # within the category: site before priority
    assert found(conn, "b", "facility", "urgent") == facility_urgent
    assert found(conn, "a", "facility", "urgent") == site_a_facility
    assert found(conn, "a", "facility", "high") == site_a_facility_high
    assert found(conn, "b", "facility", "high") == default
    # the inactive row never applies, but a ticket given it can still read it
    inactive = conn.execute("SELECT id FROM sla_policies WHERE NOT active").fetchone()["id"]
    assert policy_by_id(conn, inactive).response_minutes == 1
    assert policy_by_id(conn, 10_000) is None

    hit = find_policy(conn, site_id="a", category=Category.FACILITY, priority=Priority.HIGH)
    assert hit is not None
    assert (hit.site_id, hit.category, hit.priority, hit.response_minutes, hit.resolution_minutes) == (
        "a",
        "facility",
        "high",
        45,
        360,
    )


def test_calendars_load_with_holidays_in_the_sites_zone(conn):
    calendar_id = create_calendar(conn, "office", OFFICE, [Holiday(day=date(2026, 3, 9), name="Bridge day")])
    stored = conn.execute("SELECT schedule FROM business_calendars WHERE id = %s", (calendar_id,)).fetchone()
    assert stored["schedule"]["mon"] == [["09:00", "18:00"]] and stored["schedule"]["sat"] == []

    shanghai = load_calendar(conn, calendar_id, "Asia/Shanghai")
    assert shanghai.holidays == {date(2026, 3, 9)}
    assert shanghai.schedule == OFFICE
    assert shanghai.timezone == "Asia/Shanghai"
    berlin = load_calendar(conn, calendar_id, "Europe/Berlin")
    assert berlin.timezone == "Europe/Berlin"

    assert load_calendar(conn, None, "Asia/Shanghai") is AROUND_THE_CLOCK
    with pytest.raises(LookupError):
        load_calendar(conn, calendar_id + 1000, "UTC")


def test_deadlines_from_stored_policy_and_calendar_across_a_holiday(conn):
    calendar_id = create_calendar(conn, "office", OFFICE, [Holiday(day=date(2026, 3, 9))])
    policy(conn, category="facility", minutes=240, calendar_id=calendar_id)
    policy(conn, category="safety", minutes=15)
    site_zone = conn.execute("SELECT timezone FROM sites WHERE id = 'a'").fetchone()["timezone"]
    received = datetime(2026, 3, 6, 17, 0, tzinfo=SHANGHAI)  # a Friday; Monday is the holiday

    facility = find_policy(conn, site_id="a", category="facility", priority="normal")
    calendar = load_calendar(conn, facility.calendar_id, site_zone)
    response, resolution = compute_deadlines(received, facility, calendar)
    assert response == datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
    # 32 h: 1 on Friday, 9 each on Tuesday, Wednesday and Thursday 12 March, 4 on Friday 13 March
    assert resolution == datetime(2026, 3, 13, 13, 0, tzinfo=SHANGHAI)
    # two working hours on hold over Tuesday night push both back by two hours
    paused = paused_business_seconds(
        datetime(2026, 3, 10, 17, 0, tzinfo=SHANGHAI), datetime(2026, 3, 11, 10, 0, tzinfo=SHANGHAI), calendar
    )
    assert paused == 7200
    assert compute_deadlines(received, facility, calendar, paused)[1] == datetime(2026, 3, 13, 15, 0, tzinfo=SHANGHAI)

    # safety: no calendar, around the clock
    safety = find_policy(conn, site_id="a", category="safety", priority="urgent")
    response, _ = compute_deadlines(received, safety, load_calendar(conn, safety.calendar_id, site_zone))
    assert response == datetime(2026, 3, 6, 17, 15, tzinfo=SHANGHAI)


def test_the_scope_index_allows_one_active_policy_per_scope(conn):
    policy(conn, site="a", category="service")
    policy(conn, site="a", category="service", active=False)
    with pytest.raises(psycopg.errors.UniqueViolation):
        policy(conn, site="a", category="service")
