"""The complaint volume forecast: the next weeks' ticket counts, in total and by category, with an
interval and the method's backtest error beside seasonal-naive's (docs/forecast.md).

The series are daily counts of tickets created per local day (the site's time zone) up to the last
complete day. The model is additive Holt-Winters with a damped trend and a weekly season, fitted
by statsmodels on the square roots of the counts (the square root steadies the variance of counts).
The weekly figures come from simulated daily paths: each path is squared back and summed per
Monday-based week, and the interval is the paths' quantiles of the weekly totals, so the days'
errors add up as they really do rather than as independent daily intervals would.

Every model is backtested on rolling origins a week apart against seasonal-naive, and a manager is
given the model's forecast only where it beat seasonal-naive there; otherwise, or where the history
is too short to fit and backtest the model, the answer is seasonal-naive with an interval from its
own past errors, and says why.
"""

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Generic, TypeVar

import numpy as np
from scipy.stats import norm
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from threadpoolctl import ThreadpoolController

#: the weekly season of daily counts
SEASON = 7
#: the longest history used: two years of whole weeks
MAX_HISTORY_DAYS = 728
#: days the model is fitted on, at least, at the earliest backtest origin
MIN_FIT_DAYS = 56
#: backtest origins the model needs before it is trusted, and the most that are run
MIN_ORIGINS = 3
MAX_ORIGINS = 8
#: simulated paths for the forecast, and per backtest origin (enough for the mean and the coverage
#: there); the seed makes the same data give the same answer
PATHS = 2000
BACKTEST_PATHS = 250
SEED = 20261124
#: one-step errors of the first two weeks are the initial states settling, not forecast errors
BURN_IN = 14
#: fewer past errors than this per forecast week: seasonal-naive's interval is approximated
MIN_NAIVE_ERRORS = 5

HOLT_WINTERS = "holt_winters"
SEASONAL_NAIVE = "seasonal_naive"
DAILY_MEAN = "daily_mean"
NO_HISTORY = "none"


@dataclass(frozen=True)
class Horizon:
    """What is forecast: `weeks` Monday-based weeks after `gap` days of the current week.

    The history ends on the last complete local day (yesterday); the days from today to Sunday
    are the current, partial week: the model steps through them (they are part of its horizon)
    but they are not reported, so every reported week is a whole week still to come. On a Monday
    the gap is 0 and the first week reported is the current one.
    """

    last_day: date
    weeks: int
    level: float

    @property
    def gap(self) -> int:
        return (7 - (self.last_day + timedelta(days=1)).weekday()) % 7

    @property
    def days(self) -> int:
        return self.gap + SEASON * self.weeks

    @property
    def first_week(self) -> date:
        return self.last_day + timedelta(days=1 + self.gap)

    def week_starts(self) -> list[date]:
        return [self.first_week + timedelta(weeks=w) for w in range(self.weeks)]

    def model_needs(self) -> int:
        """Days of history the model needs: MIN_FIT_DAYS to fit, then MIN_ORIGINS origins a week
        apart, each followed by the gap and the weeks asked (see `origins`)."""
        return MIN_FIT_DAYS + SEASON * (MIN_ORIGINS - 1) + SEASON * self.weeks + (SEASON if self.gap else 0)


@dataclass(frozen=True)
class Week:
    start: date
    forecast: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Backtest:
    """Errors of weekly totals over rolling origins: the model's (None when not run) and the naive's."""

    origins: int
    weeks_scored: int
    mae_model: float | None
    mae_naive: float
    mase_model: float | None
    mase_naive: float | None
    #: the share of the scored weeks whose actual total lay within the model's interval
    coverage_model: float | None


@dataclass(frozen=True)
class SeriesForecast:
    name: str
    method: str
    weeks: list[Week]
    backtest: Backtest | None
    #: why the method is not the seasonal model (None when it is)
    reason: str | None = None
    #: the fitted smoothing parameters (alpha, beta, gamma, phi) where the model was fitted
    params: dict[str, float] = field(default_factory=dict)


# --- Holt-Winters: the fit by statsmodels, the recursion for the backtest and the paths ------------


@dataclass(frozen=True)
class HoltWinters:
    """Additive damped-trend Holt-Winters: smoothing parameters and the initial states."""

    alpha: float
    beta: float
    gamma: float
    phi: float
    level0: float
    trend0: float
    seasons0: np.ndarray


@dataclass(frozen=True)
class States:
    """The filter run over a series: states after each observation (index i+1 after value i) and
    the one-step errors. `season[j]` is the seasonal state used for observation j."""

    level: np.ndarray
    trend: np.ndarray
    season: np.ndarray
    errors: np.ndarray


def transform(counts: np.ndarray) -> np.ndarray:
    return np.sqrt(counts)


def untransform(values: np.ndarray) -> np.ndarray:
    return np.square(np.clip(values, 0.0, None))


_controller: ThreadpoolController | None = None


def _blas() -> ThreadpoolController:
    """The process's thread pools, found once (finding them reads the loaded libraries)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def fit(z: np.ndarray) -> HoltWinters:
    """Fit by statsmodels: initial states by its heuristic (a decomposition of the first weeks),
    the smoothing parameters by its local optimiser from its starting values. On the synthetic
    series of docs/forecast.md this was twice as fast as estimating the initial states too, and
    better calibrated (that optimiser stopped in a flat trendless optimum on a trending series);
    the brute-force start grid cost five times as long and changed nothing."""
    model = ExponentialSmoothing(
        z,
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=SEASON,
        initialization_method="heuristic",
    )
    # one BLAS thread: the optimiser's BLAS calls are tiny, and OpenBLAS's threads waking for each
    # cost seven times the fit itself on a busy machine (measured: docs/forecast.md, "Speed")
    with warnings.catch_warnings(), _blas().limit(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        p = model.fit(use_brute=False).params
    return HoltWinters(
        alpha=float(p["smoothing_level"]),
        beta=float(p["smoothing_trend"]),
        gamma=float(p["smoothing_seasonal"]),
        phi=float(p["damping_trend"]),
        level0=float(p["initial_level"]),
        trend0=float(p["initial_trend"]),
        seasons0=np.asarray(p["initial_seasons"], dtype=float),
    )


def run_filter(z: np.ndarray, hw: HoltWinters) -> States:
    """The Holt-Winters recursion as statsmodels runs it (tests compare the two), over the whole
    series with fixed parameters: the states after any day depend only on the days up to it, so
    one pass serves every backtest origin."""
    n = len(z)
    level = np.empty(n + 1)
    trend = np.empty(n + 1)
    season = np.empty(n + SEASON)
    errors = np.empty(n)
    level[0], trend[0] = hw.level0, hw.trend0
    season[:SEASON] = hw.seasons0
    a, b, g, phi = hw.alpha, hw.beta, hw.gamma, hw.phi
    for i in range(n):
        damped = level[i] + phi * trend[i]
        e = z[i] - damped - season[i]
        errors[i] = e
        level[i + 1] = damped + a * e
        trend[i + 1] = phi * trend[i] + a * b * e
        season[i + SEASON] = season[i] + g * e
    return States(level, trend, season, errors)


def simulate(
    states: States, hw: HoltWinters, origins: list[int], days: int, paths: int, rng: np.random.Generator
) -> np.ndarray:
    """`paths` paths of `days` values (transformed scale) after each origin (the index of the last
    day seen), drawing each step's error from that origin's own past one-step errors (a bootstrap:
    no shape assumed). Shape (len(origins), paths, days)."""
    k = len(origins)
    at = np.asarray(origins)
    level = np.repeat(states.level[at + 1], paths)
    trend = np.repeat(states.trend[at + 1], paths)
    # the next SEASON seasonal states after each origin, as a ring indexed by step % SEASON
    seasons = np.repeat(np.stack([states.season[o + 1 : o + 1 + SEASON] for o in origins]), paths, axis=0)
    # origins have at least MIN_FIT_DAYS days before them, so BURN_IN leaves errors to draw from
    spans = np.repeat(at + 1 - BURN_IN, paths)
    draws = BURN_IN + (rng.random((k * paths, days)) * spans[:, None]).astype(int)
    eps = states.errors[draws]
    out = np.empty((k * paths, days))
    a, b, g, phi = hw.alpha, hw.beta, hw.gamma, hw.phi
    for t in range(days):
        slot = t % SEASON
        damped = level + phi * trend
        s = seasons[:, slot]
        e = eps[:, t]
        out[:, t] = damped + s + e
        level = damped + a * e
        trend = phi * trend + a * b * e
        seasons[:, slot] = s + g * e
    return out.reshape(k, paths, days)


def weekly(days: np.ndarray, gap: int, weeks: int) -> np.ndarray:
    """Weekly totals of daily values along the last axis, after skipping `gap` days."""
    cut = days[..., gap : gap + SEASON * weeks]
    return cut.reshape(*cut.shape[:-1], weeks, SEASON).sum(axis=-1)


# --- seasonal-naive ---------------------------------------------------------------------------------


def naive_weekly(y: np.ndarray, origin: int) -> float:
    """Seasonal-naive's weekly total after an origin: each day is the same weekday's last value,
    so every week's total is the sum of the last seven days seen (the last full week's total when
    the origin is a Sunday)."""
    return float(y[origin - SEASON + 1 : origin + 1].sum())


def actual_weekly(y: np.ndarray, origin: int, gap: int, weeks: int) -> np.ndarray:
    return weekly(y[origin + 1 : origin + 1 + gap + SEASON * weeks], gap, weeks)


def naive_errors(y: np.ndarray, gap: int, weeks: int) -> list[np.ndarray]:
    """Seasonal-naive's past errors (actual − forecast) of each forecast week, over every origin
    on the same weekday as the last day (a week apart, back from the latest whose weeks are over)."""
    n = len(y)
    errors: list[list[float]] = [[] for _ in range(weeks)]
    origin = n - 1 - SEASON
    while origin >= SEASON - 1:
        point = naive_weekly(y, origin)
        for w in range(weeks):
            end = origin + gap + SEASON * (w + 1)
            if end <= n - 1:
                errors[w].append(float(y[end - SEASON + 1 : end + 1].sum()) - point)
        origin -= SEASON
    return [np.asarray(e) for e in errors]


def naive_forecast(y: np.ndarray, horizon: Horizon) -> tuple[list[Week], str | None]:
    """Seasonal-naive with its interval from its own past errors; a stated approximation where
    there are too few of them."""
    point = naive_weekly(y, len(y) - 1)
    errors = naive_errors(y, horizon.gap, horizon.weeks)
    lo_q, hi_q = (1 - horizon.level) / 2, (1 + horizon.level) / 2
    weeks, approximated = [], False
    for start, past in zip(horizon.week_starts(), errors, strict=True):
        if len(past) >= MIN_NAIVE_ERRORS:
            lower, upper = point + float(np.quantile(past, lo_q)), point + float(np.quantile(past, hi_q))
        else:
            lower, upper = poisson_band(point, horizon.level)
            approximated = True
        weeks.append(Week(start, point, max(lower, 0.0), max(upper, 0.0)))
    note = None
    if approximated:
        note = (
            f"fewer than {MIN_NAIVE_ERRORS} past errors of seasonal-naive per week: its interval is approximated "
            "as for counts that vary like Poisson counts around a steady rate (±z·√(2·forecast))"
        )
    return weeks, note


def poisson_band(point: float, level: float) -> tuple[float, float]:
    """The difference of two Poisson counts with the same rate λ has variance 2λ: the band of the
    week-ahead change when nothing but chance moves the counts (an approximation: it ignores trend)."""
    z = _normal_quantile((1 + level) / 2)
    half = z * float(np.sqrt(2 * max(point, 1.0)))
    return point - half, point + half


def _normal_quantile(p: float) -> float:
    return float(norm.ppf(p))


# --- the backtest -----------------------------------------------------------------------------------


def origins(n: int, horizon: Horizon, *, min_days: int = MIN_FIT_DAYS, most: int | None = MAX_ORIGINS) -> list[int]:
    """Backtest origins (index of the last day seen), latest first: each origin's forecast weeks
    are whole Monday-based weeks inside the history, and the origin is the same weekday as the last
    day, so every origin faces exactly the live situation (the same gap). Origins are a week apart,
    at most `most`, the earliest with at least `min_days` days up to it (the model's: MIN_FIT_DAYS to fit)."""
    found: list[int] = []
    # the last whole week of the history ends `trailing` days before its last day
    trailing = (SEASON - horizon.gap) % SEASON
    origin = n - 1 - trailing - SEASON * horizon.weeks - horizon.gap
    while origin + 1 >= min_days and (most is None or len(found) < most):
        found.append(origin)
        origin -= SEASON
    return found


def mase_scale(y: np.ndarray) -> float | None:
    """The mean absolute change of weekly totals from one week to the next over the history (whole
    weeks counted back from the last day): the in-sample error of the one-week-ahead naive."""
    full = len(y) // SEASON
    if full < 2:
        return None
    totals = y[len(y) - full * SEASON :].reshape(full, SEASON).sum(axis=1)
    scale = float(np.mean(np.abs(np.diff(totals))))
    return scale or None


def _ratio(value: float | None, scale: float | None) -> float | None:
    return None if value is None or scale is None else value / scale


# --- a series -----------------------------------------------------------------------------------------


def forecast_series(name: str, y: np.ndarray, horizon: Horizon) -> SeriesForecast:
    """The forecast of one daily series (oldest first, ending on the horizon's last day)."""
    n = len(y)
    if n == 0 or not y.any():
        zero = [Week(s, 0.0, 0.0, 0.0) for s in horizon.week_starts()]
        what = "no tickets" if n == 0 else f"no tickets in the history of {n} days"
        return SeriesForecast(name, NO_HISTORY, zero, None, f"{what}: the forecast is 0")
    if n < SEASON:
        return _daily_mean(name, y, horizon)
    at = origins(n, horizon)
    naive_bt = _naive_backtest(y, at, horizon)
    if len(at) < MIN_ORIGINS:
        weeks, note = naive_forecast(y, horizon)
        reason = (
            f"history of {n} days; the seasonal model needs {horizon.model_needs()} "
            f"({MIN_FIT_DAYS} days to fit, then {MIN_ORIGINS} backtest origins a week apart, each followed by "
            f"the {horizon.weeks} week(s) asked{' and the rest of the current week' if horizon.gap else ''}): "
            "seasonal-naive is given"
        )
        return SeriesForecast(name, SEASONAL_NAIVE, weeks, naive_bt, _join(reason, note))
    z = transform(y)
    try:
        # fitted once, on the days up to the earliest origin: the backtest then uses nothing after
        # any origin, and the parameters it scores are those that forecast
        hw = fit(z[: at[-1] + 1])
        states = run_filter(z, hw)
        if not np.isfinite(states.errors).all():
            raise ValueError("its states diverged")
    except (ValueError, np.linalg.LinAlgError) as exc:
        weeks, note = naive_forecast(y, horizon)
        reason = f"the seasonal model could not be fitted ({exc}): seasonal-naive is given"
        return SeriesForecast(name, SEASONAL_NAIVE, weeks, naive_bt, _join(reason, note))
    rng = np.random.default_rng(SEED)
    lo_q, hi_q = (1 - horizon.level) / 2, (1 + horizon.level) / 2
    # the backtest: every origin's paths, their mean and interval against what came
    tested = weekly(
        untransform(simulate(states, hw, at, horizon.days, BACKTEST_PATHS, rng)), horizon.gap, horizon.weeks
    )
    points = tested.mean(axis=1)  # (origins, weeks)
    lows, highs = np.quantile(tested, [lo_q, hi_q], axis=1)
    actual = np.stack([actual_weekly(y, o, horizon.gap, horizon.weeks) for o in at])
    mae_model = float(np.mean(np.abs(points - actual)))
    coverage = float(np.mean((actual >= lows) & (actual <= highs)))
    scale = mase_scale(y)
    assert naive_bt is not None
    backtest = Backtest(
        origins=len(at),
        weeks_scored=actual.size,
        mae_model=mae_model,
        mae_naive=naive_bt.mae_naive,
        mase_model=_ratio(mae_model, scale),
        mase_naive=naive_bt.mase_naive,
        coverage_model=coverage,
    )
    params = {"alpha": hw.alpha, "beta": hw.beta, "gamma": hw.gamma, "phi": hw.phi}
    if mae_model >= naive_bt.mae_naive:
        weeks, note = naive_forecast(y, horizon)
        reason = (
            f"the seasonal model's backtest error (MAE {mae_model:.1f} a week) was not below seasonal-naive's "
            f"({naive_bt.mae_naive:.1f}) over {len(at)} origins: seasonal-naive is given"
        )
        return SeriesForecast(name, SEASONAL_NAIVE, weeks, backtest, _join(reason, note), params)
    ahead = weekly(
        untransform(simulate(states, hw, [len(z) - 1], horizon.days, PATHS, rng)), horizon.gap, horizon.weeks
    )
    point, low, high = ahead[0].mean(axis=0), *np.quantile(ahead[0], [lo_q, hi_q], axis=0)
    weeks = [
        Week(start, float(point[w]), float(low[w]), float(high[w])) for w, start in enumerate(horizon.week_starts())
    ]
    return SeriesForecast(name, HOLT_WINTERS, weeks, backtest, None, params)


def _naive_backtest(y: np.ndarray, at: list[int], horizon: Horizon) -> Backtest | None:
    """Seasonal-naive's errors on the origins given (those of the model's backtest), or, when
    there are none, on every origin a week apart that fits in a short history."""
    if not at:
        at = origins(len(y), horizon, min_days=SEASON, most=None)  # a week before each: seasonal-naive's need
    if not at:
        return None
    actual = np.stack([actual_weekly(y, o, horizon.gap, horizon.weeks) for o in at])
    points = np.array([naive_weekly(y, o) for o in at])[:, None]
    mae = float(np.mean(np.abs(actual - points)))
    return Backtest(
        origins=len(at),
        weeks_scored=actual.size,
        mae_model=None,
        mae_naive=mae,
        mase_model=None,
        mase_naive=_ratio(mae, mase_scale(y)),
        coverage_model=None,
    )


def _daily_mean(name: str, y: np.ndarray, horizon: Horizon) -> SeriesForecast:
    point = float(y.mean()) * SEASON
    lower, upper = poisson_band(point, horizon.level)
    weeks = [Week(s, point, max(lower, 0.0), upper) for s in horizon.week_starts()]
    reason = (
        f"history of {len(y)} days: not even one week for seasonal-naive, so the forecast is the daily mean "
        f"× 7, with an interval approximated as for Poisson counts; the seasonal model needs {horizon.model_needs()}"
    )
    return SeriesForecast(name, DAILY_MEAN, weeks, None, reason)


def _join(reason: str, note: str | None) -> str:
    return reason if note is None else f"{reason}; {note}"


# --- many series, cached ----------------------------------------------------------------------------


K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A small thread-safe least-recently-used store: `get_or_make` computes outside the lock, so
    one slow computation does not hold up answers already there (two callers may both compute a
    new key; the later result is kept)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class ForecastCache:
    """Forecasts of series already seen, keyed by the series itself (its days and counts) and the
    horizon: the same data answer at once, and any change to the counts (a new ticket, a category
    corrected, a new day) is a new key, so a forecast is never stale. Least recently used out."""

    def __init__(self, size: int = 256) -> None:
        self._store: Lru[tuple[str, Horizon, str], SeriesForecast] = Lru(size)

    def get(self, name: str, y: np.ndarray, horizon: Horizon) -> SeriesForecast:
        digest = hashlib.sha256(np.ascontiguousarray(y, dtype=np.int64).tobytes()).hexdigest()
        return self._store.get_or_make((name, horizon, digest), lambda: forecast_series(name, y, horizon))

    def clear(self) -> None:
        self._store.clear()
