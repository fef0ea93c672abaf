"""The forecast as a request sees it: the daily counts of the sites' tickets, the forecast of the
total and of each category, and the flat rows and meta that go out as JSON, CSV or Excel."""

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

import numpy as np
import psycopg

from cloud.analytics.export import Report
from cloud.analytics.forecast import MAX_HISTORY_DAYS, ForecastCache, Horizon, Lru, SeriesForecast
from cloud.analytics.scope import Window, resolve
from cloud.domain.access import Principal
from contract.common import Category

TOTAL = "total"
#: the tickets' categories, in their order
CATEGORIES = tuple(c.value for c in Category)
COLUMNS = ["series", "week_start", "week_end", "forecast", "lower", "upper", "method"]

#: forecasts are kept per process, keyed by the counts themselves (see ForecastCache)
CACHE = ForecastCache()
#: whole answers, keyed by what they are about, the last complete day and the newest ticket at the
#: sites: a repeated request skips the counting query too. A ticket's category corrected later
#: shows with the next new ticket at the sites or the next day (the series cache is exact).
ANSWERS: Lru[tuple, tuple[list[dict[str, object]], dict[str, object]]] = Lru(64)

#: the local day as the bucket between the local midnights (given in order): a third cheaper than
#: converting every ticket's instant to the zone (237,000 tickets: 213 ms against 320 ms)
_COUNTS = """
SELECT width_bucket(t.created_at, %(midnights)s::timestamptz[]) AS bucket, t.category, count(*)::int AS n
FROM tickets t
WHERE t.site_id = ANY(%(sites)s) AND t.created_at >= %(start)s AND t.created_at < %(end)s
  AND (%(building)s::bigint IS NULL OR t.building_id = %(building)s)
  AND (%(type)s::text IS NULL OR t.type = %(type)s)
GROUP BY 1, 2
"""


@dataclass(frozen=True)
class History:
    """Daily counts per series from the first local day with a ticket (at most MAX_HISTORY_DAYS
    back) to the last complete day; empty when there is no ticket."""

    first_day: date | None
    last_day: date
    series: dict[str, np.ndarray]

    @property
    def days(self) -> int:
        return 0 if self.first_day is None else (self.last_day - self.first_day).days + 1


def daily_counts(conn: psycopg.Connection, window: Window, ticket_type: str | None) -> History:
    """Tickets created per local day, by category, in the window (every ticket created counts,
    whatever became of it: each was work arriving at the desk)."""
    days = (window.last_day - window.first_day).days + 1
    # each local day's midnight in the zone (a day of 23 or 25 hours where clocks change)
    midnights = [datetime.combine(window.first_day + timedelta(days=i), time(0), window.tz) for i in range(days + 1)]
    rows = conn.execute(
        _COUNTS,
        {
            "midnights": midnights,
            "sites": window.site_ids,
            "start": window.start,
            "end": window.end,
            "building": window.building_id,
            "type": ticket_type,
        },
    ).fetchall()
    if not rows:
        return History(None, window.last_day, {name: np.zeros(0) for name in (TOTAL, *CATEGORIES)})
    # bucket 1 is the window's first day; the history starts at the first day with a ticket
    skip = min(r["bucket"] for r in rows) - 1
    first = window.first_day + timedelta(days=skip)
    series = {name: np.zeros(days - skip) for name in CATEGORIES}
    for r in rows:
        series[r["category"]][r["bucket"] - 1 - skip] += r["n"]
    total = np.sum([series[c] for c in CATEGORIES], axis=0)
    return History(first, window.last_day, {TOTAL: total, **series})


def forecast_report(
    conn: psycopg.Connection,
    who: Principal,
    *,
    now: datetime,
    site: str | None,
    building_id: int | None,
    ticket_type: str | None,
    weeks: int,
    level: float,
) -> Report:
    """The forecast of the tickets (of one type, or all with None) at the sites in reach."""
    scope = resolve(conn, who, now=now, site=site, building_id=building_id, first_day=None, last_day=None)
    today = now.astimezone(scope.tz).date()
    last_day = today - timedelta(days=1)
    window = replace(scope, first_day=last_day - timedelta(days=MAX_HISTORY_DAYS - 1), last_day=last_day)
    horizon = Horizon(last_day=last_day, weeks=weeks, level=level)
    newest = conn.execute(
        "SELECT max(id) AS newest FROM tickets WHERE site_id = ANY(%s)", (window.site_ids,)
    ).fetchone()
    key = (tuple(window.site_ids), building_id, ticket_type, horizon, newest["newest"] if newest else None)
    rows, meta = ANSWERS.get_or_make(key, lambda: _answer(conn, window, ticket_type, horizon, today))
    return Report(
        name=f"forecast-{site or 'all-sites'}-{ticket_type or 'all'}-{horizon.first_week.isoformat()}-{weeks}w",
        columns=COLUMNS,
        rows=rows,
        meta={**meta, "generated_at": now.isoformat()},
    )


def _answer(
    conn: psycopg.Connection, window: Window, ticket_type: str | None, horizon: Horizon, today: date
) -> tuple[list[dict[str, object]], dict[str, object]]:
    history = daily_counts(conn, window, ticket_type)
    forecasts = [CACHE.get(name, y, horizon) for name, y in history.series.items()]
    rows = [_row(f, w) for f in forecasts for w in range(horizon.weeks)]
    current_week_end = horizon.first_week - timedelta(days=1)
    meta: dict[str, object] = {
        "sites": ", ".join(window.site_ids),
        "building_id": window.building_id,
        "timezone": window.tz.key,
        "type": ticket_type or "all",
        "weeks": horizon.weeks,
        "level": horizon.level,
        "history_from": history.first_day.isoformat() if history.first_day else None,
        "history_to": horizon.last_day.isoformat(),
        "history_days": history.days,
        "first_week": horizon.first_week.isoformat(),
        "current_week": (
            f"{today.isoformat()} to {current_week_end.isoformat()} is the current week's rest: "
            "forecast by the model as a lead-in, not reported"
            if horizon.gap
            else "today is a Monday: the first week reported is the current one"
        ),
    }
    for f in forecasts:
        meta.update(_series_meta(f))
    return rows, meta


def _row(f: SeriesForecast, w: int) -> dict[str, object]:
    week = f.weeks[w]
    return {
        "series": f.name,
        "week_start": week.start,
        "week_end": week.start + timedelta(days=6),
        "forecast": round(week.forecast, 1),
        "lower": round(week.lower, 1),
        "upper": round(week.upper, 1),
        "method": f.method,
    }


def _series_meta(f: SeriesForecast) -> dict[str, object]:
    """Flat keys (`total.method`, `service.backtest_mae`, …): the Excel 'about' sheet shows scalars."""
    b = f.backtest

    def figure(value: float | None, places: int = 2) -> float | None:
        return None if value is None else round(value, places)

    return {
        f"{f.name}.method": f.method,
        f"{f.name}.reason": f.reason,
        f"{f.name}.backtest_origins": b.origins if b else 0,
        f"{f.name}.backtest_weeks": b.weeks_scored if b else 0,
        f"{f.name}.backtest_mae": figure(b.mae_model) if b else None,
        f"{f.name}.backtest_mae_naive": figure(b.mae_naive) if b else None,
        f"{f.name}.backtest_mase": figure(b.mase_model, 3) if b else None,
        f"{f.name}.backtest_mase_naive": figure(b.mase_naive, 3) if b else None,
        f"{f.name}.backtest_coverage": figure(b.coverage_model, 3) if b else None,
        f"{f.name}.parameters": ", ".join(f"{k}={v:.4g}" for k, v in f.params.items()) or None,
    }
