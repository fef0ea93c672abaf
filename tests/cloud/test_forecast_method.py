"""The forecast's method without a database: the backtest's origins and errors on series small
enough to follow by hand, the Holt-Winters recursion against statsmodels', the fallbacks."""

from datetime import date

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from cloud.analytics import forecast as fc

#: a Sunday: the next day is a Monday, so no partial week comes first (gap 0)
SUNDAY = date(2026, 11, 29)
#: a Monday: the forecast weeks start six days later (gap 6), one day of the history trails its last whole week
MONDAY = date(2026, 11, 23)


def test_the_horizon_skips_the_rest_of_the_current_week() -> None:
    monday = fc.Horizon(MONDAY, weeks=2, level=0.8)
    assert (monday.gap, monday.days, monday.first_week) == (6, 6 + 14, date(2026, 11, 30))
    assert monday.week_starts() == [date(2026, 11, 30), date(2026, 12, 7)]
    sunday = fc.Horizon(SUNDAY, weeks=1, level=0.8)
    assert (sunday.gap, sunday.days, sunday.first_week) == (0, 7, date(2026, 11, 30))
    # 56 to fit + 2 more origins a week apart (14) + the 2 weeks (14) + the rest of the current week (7)
    assert monday.model_needs() == 91
    assert sunday.model_needs() == 56 + 14 + 7


def test_origins_are_a_week_apart_on_the_last_days_weekday() -> None:
    # 100 days ending on a Monday (index 99), 2 weeks asked: the last whole week ends on index 98
    # (a Sunday); the latest origin's weeks are 85..91 and 92..98, after the gap 79..84, so the
    # origin is 78 (a Monday, like 99); then 71, 64, 57; 50 has only 51 days before it (< 56)
    assert fc.origins(100, fc.Horizon(MONDAY, weeks=2, level=0.8)) == [78, 71, 64, 57]
    # ending on a Sunday, one week: the latest origin is the Sunday before the last week
    assert fc.origins(70, fc.Horizon(SUNDAY, weeks=1, level=0.8)) == [62, 55]
    many = fc.origins(728, fc.Horizon(SUNDAY, weeks=4, level=0.8))
    assert len(many) == fc.MAX_ORIGINS and many[0] == 727 - 28 and np.all(np.diff(many) == -7)


def test_the_naive_backtest_by_hand() -> None:
    # three weeks ending on a Sunday, 1 week ahead: origins 13 (forecast week = days 14..20) and 6 (days 7..13)
    y = np.array([[3, 4, 5, 4, 3, 1, 1], [5, 5, 6, 5, 4, 2, 1], [2, 3, 3, 2, 2, 0, 1]], dtype=float).ravel()
    # weekly totals: 21, 28, 13
    backtest = fc._naive_backtest(y, [], fc.Horizon(SUNDAY, weeks=1, level=0.8))
    assert backtest is not None
    assert backtest.origins == 2 and backtest.weeks_scored == 2
    # origin 13: forecast 28 (the week before), actual 13 -> 15; origin 6: forecast 21, actual 28 -> 7
    assert backtest.mae_naive == pytest.approx((15 + 7) / 2)
    # MASE's scale: the mean week-to-week change, (|28-21| + |13-28|) / 2 = 11
    assert backtest.mase_naive == pytest.approx(11 / 11)
    assert backtest.mae_model is None


def test_the_naive_forecast_with_a_gap_sums_the_last_seven_days() -> None:
    # 10 days ending on a Monday: the forecast of every week is the last seven days' sum
    y = np.array([9, 9, 9, 1, 2, 3, 4, 5, 6, 7], dtype=float)  # last seven: 1+2+3+4+5+6+7 = 28
    result = fc.forecast_series("total", y, fc.Horizon(MONDAY, weeks=2, level=0.8))
    assert result.method == fc.SEASONAL_NAIVE
    assert [w.forecast for w in result.weeks] == [28.0, 28.0]
    assert "history of 10 days; the seasonal model needs 91" in (result.reason or "")
    # no past errors in 10 days: the interval is the stated approximation, 28 ± z(0.9)·√56
    assert "approximated" in (result.reason or "")
    half = 1.2815515655446004 * np.sqrt(56)
    assert result.weeks[0].lower == pytest.approx(28 - half) and result.weeks[0].upper == pytest.approx(28 + half)


def test_the_naive_interval_comes_from_its_own_past_errors() -> None:
    # 8 weeks ending on a Sunday, 1 week ahead, weekly totals 10, 20, 10, 20, ...: the naive's
    # past errors (next week − this week) are +10, −10, +10, −10, +10, −10, +10 (7 of them)
    week_lo, week_hi = [2, 2, 2, 1, 1, 1, 1], [4, 4, 4, 2, 2, 2, 2]
    y = np.array((week_lo + week_hi) * 4, dtype=float)
    errors = fc.naive_errors(y, gap=0, weeks=1)
    assert sorted(errors[0].tolist()) == [-10] * 3 + [10] * 4
    result = fc.forecast_series("total", y, fc.Horizon(SUNDAY, weeks=1, level=0.5))
    assert result.method == fc.SEASONAL_NAIVE  # 56 days: too short for the model with its origins
    # forecast 20 (the last week); the 25% and 75% quantiles of the errors are -10 and +10
    assert (result.weeks[0].forecast, result.weeks[0].lower, result.weeks[0].upper) == (20.0, 10.0, 30.0)


def test_no_history_and_a_few_days() -> None:
    horizon = fc.Horizon(MONDAY, weeks=3, level=0.8)
    none = fc.forecast_series("safety", np.zeros(0), horizon)
    assert none.method == fc.NO_HISTORY and none.reason == "no tickets: the forecast is 0"
    assert [(w.forecast, w.lower, w.upper) for w in none.weeks] == [(0.0, 0.0, 0.0)] * 3
    quiet = fc.forecast_series("safety", np.zeros(300), horizon)
    assert quiet.method == fc.NO_HISTORY and "no tickets in the history of 300 days" in (quiet.reason or "")
    few = fc.forecast_series("total", np.array([2.0, 4.0, 3.0]), horizon)
    assert few.method == fc.DAILY_MEAN and few.weeks[0].forecast == pytest.approx(3.0 * 7)
    assert few.weeks[0].lower >= 0


def test_a_perfectly_weekly_series_gets_the_naive_forecast_on_a_tie() -> None:
    # no noise: the naive is exact (error 0) and the model cannot beat it, so the naive is given
    y = np.tile([5.0, 5, 5, 5, 5, 2, 2], 20)
    result = fc.forecast_series("total", y, fc.Horizon(SUNDAY, weeks=2, level=0.8))
    assert result.backtest is not None and result.backtest.mae_naive == 0.0
    assert result.method == fc.SEASONAL_NAIVE and "not below seasonal-naive's" in (result.reason or "")
    assert [(w.forecast, w.lower, w.upper) for w in result.weeks] == [(29.0, 29.0, 29.0)] * 2


def test_the_recursion_is_statsmodels_own() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(300)
    y = rng.poisson((10 + 0.02 * t) * np.array([1.2, 1.1, 1, 1, 1.1, 0.7, 0.6])[t % 7]).astype(float)
    z = fc.transform(y)
    hw = fc.fit(z)
    states = fc.run_filter(z, hw)
    model = ExponentialSmoothing(
        z,
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=7,
        initialization_method="known",
        initial_level=hw.level0,
        initial_trend=hw.trend0,
        initial_seasonal=hw.seasons0,
    )
    fitted = model.fit(
        smoothing_level=hw.alpha,
        smoothing_trend=hw.beta,
        smoothing_seasonal=hw.gamma,
        damping_trend=hw.phi,
        optimized=False,
    )
    np.testing.assert_allclose(states.level[1:], fitted.level, atol=1e-9)
    np.testing.assert_allclose(states.trend[1:], fitted.trend, atol=1e-9)
    np.testing.assert_allclose(states.season[7:], fitted.season, atol=1e-9)
    # paths without errors are the point forecast: level + (φ + … + φ^h)·trend + the weekday's season
    n = len(z)
    quiet = fc.States(states.level, states.trend, states.season, np.zeros_like(states.errors))
    paths = fc.simulate(quiet, hw, [n - 1], 10, 5, np.random.default_rng(0))[0, 0]
    damping = np.cumsum(hw.phi ** np.arange(1, 11))
    expected = states.level[n] + damping * states.trend[n] + states.season[n + np.arange(10) % 7]
    np.testing.assert_allclose(paths, expected, atol=1e-9)
    # statsmodels' own forecast agrees, but for the last day's weekday (steps 7 and 14 ahead), where
    # it takes that weekday's season from before the last day's update
    other = np.arange(10) % 7 != 6
    np.testing.assert_allclose(paths[other], fitted.forecast(10)[other], atol=1e-9)


def test_the_model_beats_naive_on_a_noisy_trending_weekly_series() -> None:
    rng = np.random.default_rng(11)
    n, horizon = 700, fc.Horizon(SUNDAY, weeks=4, level=0.8)
    t = np.arange(n + horizon.days)
    rate = (25 + 0.01 * t) * np.array([1.3, 1.2, 1.1, 1.0, 1.1, 0.7, 0.6])[t % 7]  # day 0 a Monday: n % 7 == 0
    y = rng.poisson(rate).astype(float)
    result = fc.forecast_series("total", y[:n], horizon)
    assert result.method == fc.HOLT_WINTERS and result.reason is None
    b = result.backtest
    assert b is not None and b.origins == fc.MAX_ORIGINS and b.weeks_scored == fc.MAX_ORIGINS * 4
    assert b.mae_model is not None and b.mae_model < b.mae_naive
    truth = fc.weekly(rate[n:], 0, 4)
    for week, expected in zip(result.weeks, truth, strict=True):
        assert abs(week.forecast - expected) < 0.06 * expected
        assert week.lower <= expected <= week.upper
