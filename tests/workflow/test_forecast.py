"""GET /api/v1/analytics/forecast on a real PostgreSQL: a synthetic history with a known weekly
pattern and trend, short and empty histories, the site's week boundaries, the downloads, refusals.

The world's clock stands on Tuesday 24 November 2026, 09:00 in Shanghai: the last complete day is
Monday the 23rd and the forecast weeks start on Monday 30 November (the current week's rest,
Tuesday to Sunday, is not reported)."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from openpyxl import load_workbook

from cloud.analytics import forecast_report
from cloud.analytics.scope import Window
from cloud.storage.db import connect
from tests.workflow.conftest import World

SHANGHAI = "Asia/Shanghai"
LAST_DAY = date(2026, 11, 23)
HISTORY_DAYS = 728
WEEKDAY_FACTOR = np.array([1.3, 1.2, 1.1, 1.0, 1.1, 0.7, 0.6])  # Monday .. Sunday
SHARES = {"service": 0.4, "facility": 0.3, "environment": 0.15, "safety": 0.1, "other": 0.05}
URL = "/api/v1/analytics/forecast"


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Each test computes its forecasts: ticket ids start again at 1 in every test's database, so an
    answer cached by another test's newest ticket id could be taken for this one's."""
    forecast_report.CACHE.clear()
    forecast_report.ANSWERS.clear()


def insert_counts(world: World, site: str, counts: dict[date, dict[str, int]], ticket_type: str = "complaint") -> int:
    """Bulk-insert tickets: `n` of a category on a local day, created from 08:00 local at 5-minute steps."""
    days, cats, ns = [], [], []
    for day, by_category in counts.items():
        for category, n in by_category.items():
            if n:
                days.append(day)
                cats.append(category)
                ns.append(int(n))
    rows = world.sql(
        """INSERT INTO tickets (number, type, category, channel, priority, title, site_id, created_at, updated_at)
           SELECT 'S-' || %(tag)s || '-' || d.idx || '-' || g, %(type)s, d.cat, 'app', 'normal', 'synthetic',
                  %(site)s, ((d.day + time '08:00') + g * interval '5 minutes') AT TIME ZONE %(tz)s,
                  ((d.day + time '08:00') + g * interval '5 minutes') AT TIME ZONE %(tz)s
           FROM unnest(%(days)s::date[], %(cats)s::text[], %(ns)s::int[]) WITH ORDINALITY AS d(day, cat, n, idx)
           CROSS JOIN LATERAL generate_series(1, d.n) AS g
           RETURNING id""",
        {
            "tag": uuid.uuid4().hex[:8],
            "type": ticket_type,
            "site": site,
            "tz": SHANGHAI,
            "days": days,
            "cats": cats,
            "ns": ns,
        },
    )
    return len(rows)


def insert_at(world: World, site: str, when: datetime, category: str = "facility") -> None:
    world.sql(
        """INSERT INTO tickets (number, type, category, channel, priority, title, site_id, created_at, updated_at)
           VALUES ('W-' || %(n)s, 'complaint', %(cat)s, 'app', 'normal', 'edge of a day', %(site)s, %(at)s, %(at)s)
           RETURNING id""",
        {"n": when.isoformat(), "cat": category, "site": site, "at": when},
    )


def synthetic_rates(days: int) -> tuple[list[date], np.ndarray]:
    """The known daily rate: 30 a day rising by 0.01 a day, times the weekday's factor."""
    first = LAST_DAY - timedelta(days=HISTORY_DAYS - 1)
    dates = [first + timedelta(days=i) for i in range(days)]
    t = np.arange(days)
    weekday = np.array([d.weekday() for d in dates])
    return dates, (30 + 0.01 * t) * WEEKDAY_FACTOR[weekday]


def by_series(body: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in body["rows"]:
        out.setdefault(row["series"], []).append(row)
    return out


def test_a_known_weekly_pattern_with_a_trend(world: World) -> None:
    rng = np.random.default_rng(2026)
    gap, weeks = 6, 4
    dates, rate = synthetic_rates(HISTORY_DAYS + gap + 7 * weeks)
    counts = {
        d: {c: int(rng.poisson(share * r)) for c, share in SHARES.items()}
        for d, r in zip(dates[:HISTORY_DAYS], rate[:HISTORY_DAYS], strict=True)
    }
    insert_counts(world, world.a.site_id, counts)
    insert_counts(world, world.a.site_id, {LAST_DAY: {"facility": 50}}, ticket_type="repair")  # another type
    # the expected weekly totals of the four weeks after the gap (the truth the forecast aims at)
    truth = rate[HISTORY_DAYS + gap :].reshape(weeks, 7).sum(axis=1)

    body = world.as_("manager").ok("get", f"{URL}?site={world.a.site_id}&weeks={weeks}&level=0.8")
    meta, series = body["meta"], by_series(body)
    assert body["columns"] == ["series", "week_start", "week_end", "forecast", "lower", "upper", "method"]
    assert list(series) == ["total", "service", "facility", "environment", "safety", "other"]
    assert meta["history_days"] == HISTORY_DAYS and meta["history_to"] == "2026-11-23"
    assert meta["first_week"] == "2026-11-30" and meta["type"] == "complaint" and meta["timezone"] == SHANGHAI
    total = series["total"]
    assert [(r["week_start"], r["week_end"]) for r in total] == [
        ("2026-11-30", "2026-12-06"),
        ("2026-12-07", "2026-12-13"),
        ("2026-12-14", "2026-12-20"),
        ("2026-12-21", "2026-12-27"),
    ]
    assert {r["method"] for r in total} == {"holt_winters"} and meta["total.reason"] is None
    assert meta["total.backtest_origins"] == 8 and meta["total.backtest_weeks"] == 32
    assert meta["total.backtest_mae"] < meta["total.backtest_mae_naive"]
    assert meta["total.backtest_mase"] < meta["total.backtest_mase_naive"]
    assert meta["total.parameters"].startswith("alpha=") and "phi=" in meta["total.parameters"]
    for row, expected in zip(total, truth, strict=True):
        assert abs(row["forecast"] - expected) < 0.06 * expected, (row, expected)
        assert row["lower"] <= expected <= row["upper"], (row, expected)
    # each category: the truth within its interval for most weeks; together they make the total
    inside = 0
    for category, share in SHARES.items():
        for row, expected in zip(series[category], truth * share, strict=True):
            inside += row["lower"] <= expected <= row["upper"]
    assert inside >= 0.8 * len(SHARES) * weeks
    for w in range(weeks):
        parts = sum(series[c][w]["forecast"] for c in SHARES)
        assert abs(parts - total[w]["forecast"]) < 0.05 * total[w]["forecast"]

    # every type: the repair tickets join the last day, the history is the same length
    everything = world.as_("manager").ok("get", f"{URL}?site={world.a.site_id}&type=all")
    assert everything["meta"]["type"] == "all" and everything["meta"]["history_days"] == HISTORY_DAYS
    assert world.as_("manager").ok("get", f"{URL}?type=repair")["meta"]["history_days"] == 1


def test_a_short_history_falls_back_to_seasonal_naive_and_says_why(world: World) -> None:
    # ten days, 3 facility complaints a day and 1 environment complaint every other day
    counts = {LAST_DAY - timedelta(days=i): {"facility": 3, "environment": i % 2} for i in range(10)}
    insert_counts(world, world.a.site_id, counts)
    body = world.as_("desk").ok("get", f"{URL}?weeks=2")
    meta, series = body["meta"], by_series(body)
    assert meta["history_days"] == 10 and meta["history_from"] == "2026-11-14"
    # the last seven days (17..23 Nov): 7·3 facility, environment on 18, 20, 22 (i = 5, 3, 1) -> 3
    assert [(r["forecast"], r["method"]) for r in series["total"]] == [(24.0, "seasonal_naive")] * 2
    assert [r["forecast"] for r in series["facility"]] == [21.0, 21.0]
    assert [r["forecast"] for r in series["environment"]] == [3.0, 3.0]
    # 56 days to fit + 2 more origins (14) + 2 weeks (14) + the rest of the current week (7)
    assert meta["total.reason"].startswith("history of 10 days; the seasonal model needs 91 ")
    assert "approximated" in meta["total.reason"]
    assert all(0 <= r["lower"] <= r["forecast"] <= r["upper"] for r in body["rows"])
    assert series["service"][0]["method"] == "none" and meta["service.reason"] == (
        "no tickets in the history of 10 days: the forecast is 0"
    )
    # the same request again is the cached answer; a new ticket yesterday is a new one
    assert world.as_("desk").ok("get", f"{URL}?weeks=2")["rows"] == body["rows"]
    insert_counts(world, world.a.site_id, {LAST_DAY: {"service": 1}})
    again = by_series(world.as_("desk").ok("get", f"{URL}?weeks=2"))
    assert again["total"][0]["forecast"] == 25.0 and again["service"][0]["method"] == "seasonal_naive"


def test_weeks_and_days_are_the_sites_own(world: World) -> None:
    # Monday 30 November, 09:00 in Shanghai: the last complete day is Sunday the 29th, no gap
    world.clock.set(datetime(2026, 11, 30, 1, 0, tzinfo=UTC))
    site = world.a.site_id
    insert_at(world, site, datetime(2026, 11, 22, 15, 30, tzinfo=UTC))  # Sunday 22nd 23:30 local: week of 16 Nov
    insert_at(world, site, datetime(2026, 11, 22, 16, 30, tzinfo=UTC))  # Monday 23rd 00:30 local: week of 23 Nov
    insert_at(world, site, datetime(2026, 11, 29, 15, 30, tzinfo=UTC))  # Sunday 29th 23:30 local: week of 23 Nov
    insert_at(world, site, datetime(2026, 11, 30, 0, 30, tzinfo=UTC))  # Monday 30th 08:30 local: today, not complete
    body = world.as_("manager").ok("get", f"{URL}?weeks=1")
    meta = body["meta"]
    assert (meta["history_from"], meta["history_to"], meta["history_days"]) == ("2026-11-22", "2026-11-29", 8)
    assert meta["first_week"] == "2026-11-30" and "current one" in meta["current_week"]
    total = by_series(body)["total"][0]
    # seasonal-naive: the last whole local week (23..29 Nov) had 2 tickets; by UTC days it would be 1
    assert (total["week_start"], total["forecast"], total["method"]) == ("2026-11-30", 2.0, "seasonal_naive")


def test_downloads_carry_the_json_rows(world: World) -> None:
    counts = {LAST_DAY - timedelta(days=i): {"service": 2 + i % 3, "safety": i % 2} for i in range(120)}
    insert_counts(world, world.a.site_id, counts)
    manager = world.as_("manager")
    query = f"{URL}?site={world.a.site_id}&weeks=3&level=0.9"
    body = manager.ok("get", query)
    columns, rows = body["columns"], body["rows"]
    # 120 days to a Monday, 3 weeks: origins at days 91, 84, 77, 70, 63 and 56 (57 days before it, >= 56)
    assert body["meta"]["total.backtest_origins"] == 6 and body["meta"]["total.backtest_weeks"] == 18
    assert {r["method"] for r in rows if r["series"] == "facility"} == {"none"}

    as_csv = manager.get(query + "&format=csv")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert 'filename="forecast-estate-a-complaint-2026-11-30-3w.csv"' in as_csv.headers["content-disposition"]
    parsed = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert parsed[0] == columns
    assert parsed[1:] == [[str(r[c]) for c in columns] for r in rows]

    as_xlsx = manager.get(query + "&format=xlsx")
    assert as_xlsx.status_code == 200
    book = load_workbook(io.BytesIO(as_xlsx.content))
    sheet = [list(r) for r in book["data"].iter_rows(values_only=True)]
    assert list(sheet[0]) == columns

    def cell(value: object) -> object:
        return value.date().isoformat() if isinstance(value, datetime) else value

    assert [[cell(v) for v in r] for r in sheet[1:]] == [[r[c] for c in columns] for r in rows]
    about = {k: v for k, v in book["about"].iter_rows(values_only=True)}
    assert about["level"] == 0.9 and about["total.method"] == body["meta"]["total.method"]
    assert about["total.backtest_mae_naive"] == body["meta"]["total.backtest_mae_naive"]


def test_no_history_parameters_roles_and_reach(world: World) -> None:
    body = world.as_("admin").ok("get", f"{URL}?site={world.b.site_id}&weeks=3")
    assert body["meta"]["history_days"] == 0 and body["meta"]["history_from"] is None
    assert len(body["rows"]) == 6 * 3
    assert {(r["forecast"], r["lower"], r["upper"], r["method"]) for r in body["rows"]} == {(0.0, 0.0, 0.0, "none")}
    assert body["meta"]["total.reason"] == "no tickets: the forecast is 0"

    manager = world.as_("manager")
    for bad in ("weeks=0", "weeks=13", "level=0.3", "level=1", "type=alarm", "format=pdf", "building_id=x"):
        resp = manager.get(f"{URL}?{bad}")
        assert resp.status_code == 422 and resp.json()["error"], bad
    for role in ("tech1", "guard", "resident"):
        assert world.as_(role).get(URL).status_code == 403, role
    assert manager.get(f"{URL}?site={world.b.site_id}").status_code == 404
    assert manager.get(f"{URL}?site=nowhere").status_code == 404
    assert manager.get(f"{URL}?building_id={world.b.buildings['1']}").status_code == 404
    assert (
        manager.ok("get", f"{URL}?building_id={world.a.buildings['1']}")["meta"]["building_id"]
        == (world.a.buildings["1"])
    )
    assert world.as_("manager", estate="b").ok("get", URL)["meta"]["sites"] == world.b.site_id


def test_local_days_where_the_clocks_change(world: World) -> None:
    # Berlin leaves summer time on Sunday 25 October 2026: that local day has 25 hours
    world.sql("INSERT INTO sites (id, name, timezone) VALUES ('estate-berlin', 'Berlin', 'Europe/Berlin') RETURNING id")
    for when in (
        datetime(2026, 10, 24, 21, 30, tzinfo=UTC),  # Saturday 24th 23:30 summer time (UTC+2)
        datetime(2026, 10, 24, 22, 30, tzinfo=UTC),  # Sunday 25th 00:30 summer time
        datetime(2026, 10, 25, 22, 30, tzinfo=UTC),  # Sunday 25th 23:30 winter time (UTC+1)
        datetime(2026, 10, 25, 23, 30, tzinfo=UTC),  # Monday 26th 00:30 winter time
    ):
        insert_at(world, "estate-berlin", when)
    window = Window(["estate-berlin"], None, ZoneInfo("Europe/Berlin"), date(2026, 10, 20), date(2026, 10, 27))
    with connect(world.database_url) as conn:
        history = forecast_report.daily_counts(conn, window, None)
    assert (history.first_day, history.days) == (date(2026, 10, 24), 4)
    assert history.series["facility"].tolist() == [1, 2, 1, 0]  # 24th, 25th (both ends of 25 hours), 26th, 27th
    assert history.series["total"].tolist() == [1, 2, 1, 0]
