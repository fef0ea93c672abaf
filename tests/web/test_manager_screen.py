"""The manager's page: every figure and every chart mark carries the analytics API's value for the
same filters (read from the DOM's data- attributes and compared with the API's JSON), for the
default filters and again after choosing a building in the form."""

import random
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from cloud.storage.db import connect
from tests.web.conftest import ServedApp
from tests.web.screens import screen
from tests.workflow.conftest import World

A = "/api/v1/analytics"
CATEGORIES = ("facility", "facility", "facility", "environment", "service", "safety", "other")
CHANNELS = ("app", "app", "web", "phone", "walk_in")


@pytest.fixture
def history(world: World) -> dict[str, int]:
    """Ten weeks of tickets at estate A (all kinds of outcomes), and alarms of three devices."""
    rng = random.Random(20261124)
    now = world.clock.now()
    a = world.a
    with connect(world.database_url) as conn:
        conn.execute("INSERT INTO gateways (id, site_id, name) VALUES ('gw-m', 'estate-a', 'Plant gateway')")
        devices = [
            conn.execute(
                "INSERT INTO devices (gateway_id, name, building, floor, room) VALUES ('gw-m', %s, %s, %s, %s) "
                "RETURNING id",
                place,
            ).fetchone()["id"]
            for place in (
                ("Booster pump", "PR", "B1", "Pump room"),
                ("Lift A", "1", "1", "Lift A"),
                ("Leak sensor", "2", "2", "201"),
            )
        ]
        for i, device in enumerate(devices):
            for k in range(6 - 2 * i):
                raised = now - timedelta(days=rng.randint(1, 40), minutes=k)
                conn.execute(
                    """INSERT INTO alarms (source_type, site_id, gateway_id, device_id, rule, alarm_key, severity,
                                           state, raised_at, received_at, cleared_at)
                       VALUES ('device', 'estate-a', 'gw-m', %s, 'fault', %s, 'major', 'cleared', %s, %s, %s)""",
                    (device, f"device:{device}:fault:{k}", raised, raised, raised + timedelta(minutes=5)),
                )
        buildings = [a.buildings["1"], a.buildings["2"], a.buildings["PR"]]
        for n in range(90):
            created = now - timedelta(days=rng.randint(1, 70), minutes=rng.randint(0, 600))
            status = rng.choice(("closed", "closed", "closed", "resolved", "in_progress", "new", "cancelled"))
            responded = status != "new"
            resolved = status in ("closed", "resolved")
            values: dict[str, Any] = {
                "number": f"M{n}",
                "type": rng.choice(("complaint", "complaint", "repair")),
                "category": rng.choice(CATEGORIES),
                "channel": rng.choice(CHANNELS),
                "priority": "normal",
                "status": status,
                "title": f"ticket {n}",
                "site_id": "estate-a",
                "building_id": rng.choice(buildings),
                "created_at": created,
                "updated_at": created,
                "response_due_at": created + timedelta(hours=2),
                "resolution_due_at": created + timedelta(days=1),
                "first_response_at": created + timedelta(minutes=rng.randint(5, 240)) if responded else None,
                "resolved_at": created + timedelta(hours=rng.randint(1, 40)) if resolved else None,
                "cancelled_at": created + timedelta(minutes=30) if status == "cancelled" else None,
                "rating": rng.randint(1, 5) if status == "closed" and rng.random() < 0.7 else None,
                "reopen_count": 1 if resolved and rng.random() < 0.15 else 0,
                "device_id": rng.choice(devices) if rng.random() < 0.2 else None,
            }
            names = ", ".join(values)
            marks = ", ".join(f"%({k})s" for k in values)
            conn.execute(f"INSERT INTO tickets ({names}) VALUES ({marks})", values)
        # some came back: re-complaints of the first ticket
        conn.execute(
            """UPDATE tickets SET recomplaint_of = (SELECT id FROM tickets WHERE number = 'M0')
               WHERE number IN ('M3', 'M17', 'M42', 'M61')"""
        )
        conn.commit()
    return {"building": a.buildings["1"]}


def dataset(locator: Any) -> list[dict[str, str]]:
    return locator.evaluate_all("nodes => nodes.map(n => ({...n.dataset}))")


def value(text: str) -> float | None:
    return None if text == "" else float(text)


def check_page_against_api(page: Any, world: World, filters: dict[str, str]) -> None:
    """Every number the page shows is the API's for `filters`."""
    api = world.as_("manager")
    query = "&".join(f"{k}={v}" for k, v in filters.items())

    def get(path: str, extra: str = "") -> dict[str, Any]:
        return api.ok("get", f"{A}/{path}?{query}{extra}")

    overall = get("kpis")["rows"][0]
    shown = {d["kpi"]: value(d["value"]) for d in dataset(page.locator("#kpis [data-kpi]"))}
    for column in (
        "tickets",
        "resolution_rate",
        "response_mean_s",
        "response_p50_s",
        "response_p90_s",
        "handling_mean_s",
        "handling_p50_s",
        "handling_p90_s",
        "sla_response_rate",
        "sla_response_met",
        "sla_response_due",
        "sla_resolution_rate",
        "sla_resolution_met",
        "sla_resolution_due",
        "satisfaction_mean",
        "rated",
        "recomplaint_rate",
        "recomplaints",
        "reopen_rate",
    ):
        assert shown[column] == overall[column], column
    # the comparison is about real figures
    assert overall["tickets"] > 0 and overall["rated"] > 0 and overall["recomplaints"] > 0
    assert page.locator("#kpis [data-kpi=tickets]").inner_text() == f"{overall['tickets']:,}"

    for chart, group_by in (("chart-category", "category"), ("chart-channel", "channel")):
        rows = get("kpis", f"&group_by={group_by}")["rows"]
        marks = dataset(page.get_by_test_id(chart).locator(".bar-item"))
        assert [(m["group"], int(m["value"])) for m in marks] == [(r["group"], r["tickets"]) for r in rows], chart

    weeks = get("kpis", "&group_by=week")["rows"]
    trend = page.get_by_test_id("chart-trend")
    history = dataset(trend.locator("circle[data-series=tickets]"))
    assert [(p["date"], int(p["value"])) for p in history] == [(r["group"], r["tickets"]) for r in weeks]
    for column in ("sla_response_rate", "sla_resolution_rate"):
        points = dataset(page.get_by_test_id("chart-sla").locator(f"circle[data-series={column}]"))
        expected = [(r["group"], r[column]) for r in weeks if r[column] is not None]
        assert [(p["date"], float(p["value"])) for p in points] == expected, column

    forecast_query = {k: v for k, v in filters.items() if k in ("site", "building_id")}
    forecast = api.ok(
        "get",
        f"{A}/forecast?" + "&".join(f"{k}={v}" for k, v in {**forecast_query, "type": "all", "weeks": "4"}.items()),
    )
    points = dataset(trend.locator("circle[data-series=forecast]"))
    assert [(p["date"], float(p["value"]), float(p["lower"]), float(p["upper"])) for p in points] == [
        (r["week_start"], r["forecast"], r["lower"], r["upper"]) for r in forecast["rows"] if r["series"] == "total"
    ]
    assert len(points) == 4

    stars = dataset(page.get_by_test_id("chart-ratings").locator(".bar-item"))
    ratings = {int(d["rating"]): int(d["value"]) for d in stars}
    assert ratings == {k: overall[f"rating_{k}"] for k in range(1, 6)}

    top = get("top", "&by=device&limit=10")["rows"]
    bars = dataset(page.get_by_test_id("chart-top").locator(".bar-item"))
    assert [(int(b["deviceId"]), int(b["alarms"]), int(b["complaints"]), int(b["total"])) for b in bars] == [
        (r["device_id"], r["alarms"], r["complaints"], r["total"]) for r in top
    ]

    # the downloads are the same views for the same filters
    csv_link = page.get_by_test_id("downloads").locator("[data-view='Key figures'] a[data-format=csv]")
    link = urlsplit(csv_link.get_attribute("href"))
    assert link.path == f"{A}/kpis"
    assert {k: v[0] for k, v in parse_qs(link.query).items()} == {**filters, "format": "csv"}
    download = api.get(f"{link.path}?{link.query}")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")


def test_the_manager_page_shows_the_analytics_apis_numbers_for_the_filters(
    world: World, served: ServedApp, chromium: Any, screens_dir: Path, history: dict[str, int]
) -> None:
    today = world.clock.now().date()
    filters = {"from": (today - timedelta(days=69)).isoformat(), "to": today.isoformat(), "site": "estate-a"}
    with screen(chromium, served.url, world, "manager", "/manager") as s:
        page = s.page
        page.goto("/manager?" + "&".join(f"{k}={v}" for k, v in filters.items()))
        content = page.get_by_test_id("manager-content")
        expect(content).to_have_attribute("data-loaded", "1")
        check_page_against_api(page, world, filters)
        page.screenshot(path=screens_dir / "manager.png", full_page=True)

        # choosing a building in the form: the address and every figure follow
        page.get_by_test_id("filter-building").select_option(str(history["building"]))
        page.get_by_test_id("filter-apply").click()
        expect(content).to_have_attribute("data-loaded", "2")
        chosen = {**filters, "building_id": str(history["building"])}
        assert {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()} == chosen
        check_page_against_api(page, world, chosen)
        assert s.errors == []
