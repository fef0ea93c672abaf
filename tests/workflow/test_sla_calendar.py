"""Working time on business calendars: hand-computed deadlines, daylight-saving weeks in Berlin,
holidays, split days, long spans, and `business_seconds_between` as the inverse of
`add_business_time`. Pure arithmetic: no database."""

import time as wallclock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.domain.sla import (
    AROUND_THE_CLOCK,
    BusinessCalendar,
    SlaPolicy,
    WeeklySchedule,
    add_business_time,
    business_seconds_between,
    compute_deadlines,
    is_due_soon,
    paused_business_seconds,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
HOUR = 3600


def office(timezone: str = "Asia/Shanghai", holidays: frozenset[date] = frozenset()) -> BusinessCalendar:
    """Monday to Friday, 09:00-18:00."""
    return BusinessCalendar(
        schedule=WeeklySchedule.every_day("09:00", "18:00", days=WEEKDAYS), holidays=holidays, timezone=timezone
    )


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def be(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)


# 2026-03-06 is a Friday, 2026-03-09 the Monday after.


def test_friday_1700_plus_four_working_hours_is_monday_noon_in_shanghai():
    due = add_business_time(sh(2026, 3, 6, 17, 0), 4 * HOUR, office())
    assert due == sh(2026, 3, 9, 12, 0)
    assert due.tzinfo == UTC
    assert business_seconds_between(sh(2026, 3, 6, 17, 0), due, office()) == 4 * HOUR


def test_a_holiday_monday_has_no_working_time():
    calendar = office(holidays=frozenset({date(2026, 3, 9)}))
    assert add_business_time(sh(2026, 3, 6, 17, 0), 4 * HOUR, calendar) == sh(2026, 3, 10, 12, 0)
    assert business_seconds_between(sh(2026, 3, 9, 0, 0), sh(2026, 3, 10, 0, 0), calendar) == 0
    assert not calendar.is_working(sh(2026, 3, 9, 10, 0))


def test_split_day_skips_the_lunch_break():
    calendar = BusinessCalendar(
        schedule={day: [["08:30", "12:00"], ["13:30", "18:00"]] for day in WEEKDAYS}, timezone="Asia/Shanghai"
    )
    assert calendar.weekly_seconds == 5 * 8 * HOUR
    # 1 hour before lunch, 1 after
    assert add_business_time(sh(2026, 3, 9, 11, 0), 2 * HOUR, calendar) == sh(2026, 3, 9, 14, 30)
    # received during lunch: counts from 13:30
    assert add_business_time(sh(2026, 3, 9, 12, 30), 30 * 60, calendar) == sh(2026, 3, 9, 14, 0)
    # a limit that runs out at noon is due at noon, not at 13:30
    assert add_business_time(sh(2026, 3, 9, 11, 0), HOUR, calendar) == sh(2026, 3, 9, 12, 0)
    assert business_seconds_between(sh(2026, 3, 9, 0, 0), sh(2026, 3, 10, 0, 0), calendar) == 8 * HOUR
    assert business_seconds_between(sh(2026, 3, 9, 11, 0), sh(2026, 3, 9, 14, 0), calendar) == 1.5 * HOUR


def test_start_before_opening_counts_from_the_opening():
    assert add_business_time(sh(2026, 3, 9, 7, 0), HOUR, office()) == sh(2026, 3, 9, 10, 0)
    # received on Saturday: Monday morning
    assert add_business_time(sh(2026, 3, 7, 10, 0), HOUR, office()) == sh(2026, 3, 9, 10, 0)


def test_start_exactly_at_closing_and_limits_that_end_at_closing():
    assert add_business_time(sh(2026, 3, 6, 18, 0), HOUR, office()) == sh(2026, 3, 9, 10, 0)
    # nine hours from Friday's opening end at Friday's closing, the earliest moment they are used up
    assert add_business_time(sh(2026, 3, 6, 9, 0), 9 * HOUR, office()) == sh(2026, 3, 6, 18, 0)
    assert add_business_time(sh(2026, 3, 6, 9, 0), 9 * HOUR + 1, office()) == sh(2026, 3, 9, 9, 0, 1)
    # zero is the start itself
    assert add_business_time(sh(2026, 3, 7, 10, 0), 0, office()) == sh(2026, 3, 7, 10, 0)


def test_exact_to_the_second_and_below():
    start = sh(2026, 3, 9, 9, 0, 0) + timedelta(microseconds=250_000)
    due = add_business_time(start, 1.5, office())
    assert due == sh(2026, 3, 9, 9, 0, 1) + timedelta(microseconds=750_000)
    assert business_seconds_between(start, due, office()) == 1.5


def test_400_working_hours_are_exact_and_fast():
    start = sh(2026, 3, 6, 17, 0)
    began = wallclock.perf_counter()
    due = add_business_time(start, 400 * HOUR, office())
    elapsed = wallclock.perf_counter() - began
    # 1 h on Friday, 44 full days (396 h) from Mon 9 March to Thu 7 May, 3 h on Friday 8 May
    assert due == sh(2026, 5, 8, 12, 0)
    assert business_seconds_between(start, due, office()) == 400 * HOUR
    assert elapsed < 0.05


def test_years_long_spans_with_holidays_match_a_day_by_day_count():
    holidays = frozenset(date(2026, 1, 1) + timedelta(days=n * 37) for n in range(60))
    calendar = office(holidays=holidays)

    def day_by_day(start: date, seconds: int) -> datetime:
        day, left = start, seconds
        while True:
            if day.weekday() < 5 and day not in holidays:
                if left <= 9 * HOUR:
                    return datetime.combine(day, time(9), tzinfo=SHANGHAI) + timedelta(seconds=left)
                left -= 9 * HOUR
            day += timedelta(days=1)

    for hours in (1, 9, 10, 400, 4321, 9000):
        got = add_business_time(sh(2026, 1, 1, 0, 0), hours * HOUR, calendar)
        assert got == day_by_day(date(2026, 1, 1), hours * HOUR), hours
        assert business_seconds_between(sh(2026, 1, 1, 0, 0), got, calendar) == hours * HOUR


def test_no_working_time_at_all_is_an_error_not_a_hang():
    closed = BusinessCalendar(schedule=WeeklySchedule(), timezone="Asia/Shanghai")
    with pytest.raises(ValueError, match="no working hours"):
        add_business_time(sh(2026, 3, 9, 9, 0), 60, closed)
    assert business_seconds_between(sh(2026, 3, 9), sh(2027, 3, 9), closed) == 0


def test_around_the_clock_is_elapsed_time():
    start = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    assert AROUND_THE_CLOCK.around_the_clock
    assert add_business_time(start, 5400, AROUND_THE_CLOCK) == start + timedelta(seconds=5400)
    assert business_seconds_between(start, start + timedelta(days=400), AROUND_THE_CLOCK) == 400 * 86400
    assert business_seconds_between(start, start - timedelta(hours=1), AROUND_THE_CLOCK) == 0
    # every day open all day, in a zone with clock changes: the same thing
    berlin_always = BusinessCalendar(schedule=WeeklySchedule.every_day("00:00", "24:00"), timezone="Europe/Berlin")
    assert berlin_always.around_the_clock
    assert add_business_time(be(2026, 3, 28, 12, 0), 24 * HOUR, berlin_always) == be(2026, 3, 29, 13, 0)


# --- Europe/Berlin: clocks go forward on 29 March 2026 (02:00 -> 03:00) and back on 25 October (03:00 -> 02:00)


def test_office_hours_stay_on_the_wall_clock_across_both_changes():
    calendar = office("Europe/Berlin")
    # Friday 27 March 17:00 CET + 4 h: Monday 30 March 12:00 CEST
    due = add_business_time(be(2026, 3, 27, 17, 0), 4 * HOUR, calendar)
    assert due == be(2026, 3, 30, 12, 0)
    assert due == datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
    assert business_seconds_between(be(2026, 3, 27, 9, 0), be(2026, 3, 30, 9, 0), calendar) == 9 * HOUR
    # the October weekend
    assert add_business_time(be(2026, 10, 23, 17, 0), 4 * HOUR, calendar) == be(2026, 10, 26, 12, 0)
    assert business_seconds_between(be(2026, 10, 19, 0, 0), be(2026, 11, 2, 0, 0), calendar) == 90 * HOUR


def test_working_hours_that_span_the_change_count_real_seconds():
    nights = BusinessCalendar(schedule=WeeklySchedule.every_day("00:00", "06:00"), timezone="Europe/Berlin")
    assert business_seconds_between(be(2026, 3, 29, 0, 0), be(2026, 3, 30, 0, 0), nights) == 5 * HOUR
    assert business_seconds_between(be(2026, 10, 25, 0, 0), be(2026, 10, 26, 0, 0), nights) == 7 * HOUR
    assert business_seconds_between(be(2026, 3, 22, 0, 0), be(2026, 4, 5, 0, 0), nights) == 14 * 6 * HOUR - HOUR
    # 4 working hours from midnight on the short night end at 05:00 CEST
    assert add_business_time(be(2026, 3, 29, 0, 0), 4 * HOUR, nights) == be(2026, 3, 29, 5, 0)
    # on the long night at 03:00 CET, the repeated hour included
    assert add_business_time(be(2026, 10, 25, 0, 0), 4 * HOUR, nights) == be(2026, 10, 25, 3, 0)
    # inside the repeated hour: the first 02:30 (CEST) and the second (CET) are both working time
    assert nights.is_working(be(2026, 10, 25, 2, 30, fold=0)) and nights.is_working(be(2026, 10, 25, 2, 30, fold=1))
    # every day open all day except a holiday elsewhere (so not "around the clock"): a day is 23 or 25 hours
    daily = BusinessCalendar(
        schedule=WeeklySchedule.every_day("00:00", "24:00"), holidays={date(2026, 1, 1)}, timezone="Europe/Berlin"
    )
    assert not daily.around_the_clock
    assert add_business_time(be(2026, 3, 28, 12, 0), 24 * HOUR, daily) == be(2026, 3, 29, 13, 0)
    assert add_business_time(be(2026, 10, 24, 12, 0), 24 * HOUR, daily) == be(2026, 10, 25, 11, 0)


def test_an_opening_inside_the_skipped_hour_opens_when_the_clocks_jump():
    calendar = BusinessCalendar(schedule={"sun": [["02:30", "05:00"]]}, timezone="Europe/Berlin")
    # 02:30 does not exist on 29 March: work starts at 03:00 CEST (01:00 UTC)
    assert add_business_time(be(2026, 3, 28, 12, 0), 60, calendar) == datetime(2026, 3, 29, 1, 1, tzinfo=UTC)
    assert business_seconds_between(be(2026, 3, 29, 0, 0), be(2026, 3, 30, 0, 0), calendar) == 2 * HOUR


def test_minute_by_minute_reference_over_the_change_weeks():
    calendar = BusinessCalendar(
        schedule={
            "mon": [["08:30", "12:00"], ["13:30", "18:00"]],
            "fri": [["09:00", "24:00"]],
            "sat": [["00:00", "01:30"], ["22:00", "24:00"]],
            "sun": [["01:00", "04:00"], ["20:00", "21:00"]],
        },
        holidays={date(2026, 3, 30)},
        timezone="Europe/Berlin",
    )

    def reference(a: datetime, b: datetime) -> int:
        total, t = 0, a
        while t < b:
            local = t.astimezone(BERLIN)
            if local.date() not in calendar.holidays:
                minute = f"{local.hour:02d}:{local.minute:02d}"
                if any(s <= minute < e for s, e in calendar.schedule.segments(local.weekday())):
                    total += 60
            t += timedelta(minutes=1)
        return total

    for first in (datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 10, 21, tzinfo=UTC)):
        for offset_hours in (0, 31, 77, 100):
            a = first + timedelta(hours=offset_hours)
            b = a + timedelta(days=6, minutes=17)
            assert business_seconds_between(a, b, calendar) == reference(a, b), (a, b)


SPLIT_BERLIN = BusinessCalendar(
    schedule={
        **{day: [["08:30", "12:00"], ["13:30", "18:00"]] for day in WEEKDAYS},
        "sat": [["10:00", "14:00"]],
        "sun": [["01:30", "03:30"]],  # across both clock changes
    },
    holidays={date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 1), date(2026, 12, 25), date(2027, 1, 1)},
    timezone="Europe/Berlin",
)
FIRST, LAST = datetime(2026, 1, 1), datetime(2027, 12, 31)
precise_instants = st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.just(UTC))
# whole seconds, so that sums of spans compare exactly as floats
instants = st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))


@settings(max_examples=300, deadline=None, database=None)
@given(start=precise_instants, seconds=st.integers(min_value=0, max_value=3000 * HOUR))
def test_between_is_the_inverse_of_add(start: datetime, seconds: int):
    due = add_business_time(start, seconds, SPLIT_BERLIN)
    assert due >= start
    assert business_seconds_between(start, due, SPLIT_BERLIN) == seconds
    if seconds:
        # the earliest such moment: working time runs right up to it
        assert SPLIT_BERLIN.is_working(due - timedelta(seconds=1))


@settings(max_examples=300, deadline=None, database=None)
@given(a=instants, b=instants)
def test_add_after_between_lands_on_or_just_before_b(a: datetime, b: datetime):
    worked = business_seconds_between(a, b, SPLIT_BERLIN)
    back = add_business_time(a, worked, SPLIT_BERLIN)
    if b <= a:
        assert worked == 0 and back == a
    else:
        assert a <= back <= b
        assert business_seconds_between(back, b, SPLIT_BERLIN) == 0


@settings(max_examples=200, deadline=None, database=None)
@given(a=instants, b=instants, c=instants)
def test_between_adds_up_over_consecutive_spans(a: datetime, b: datetime, c: datetime):
    a, b, c = sorted((a, b, c))
    total = business_seconds_between(a, c, SPLIT_BERLIN)
    assert total == business_seconds_between(a, b, SPLIT_BERLIN) + business_seconds_between(b, c, SPLIT_BERLIN)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "where", "message"),
    [
        ({"mon": [["09:00", "12:00"], ["11:00", "18:00"]]}, "mon", "must not overlap"),
        ({"tue": [["13:00", "18:00"], ["09:00", "12:00"]]}, "tue", "sorted"),
        ({"wed": [["09:00", "09:00"]]}, "wed", "must end after it starts"),
        ({"thu": [["18:00", "09:00"]]}, "thu", "must end after it starts"),
        ({"fri": [["24:00", "24:00"]]}, "fri", "only allowed as an end"),
        ({"sat": [["9:00", "12:00"]]}, "sat.0.0", "HH:MM"),
        ({"sun": [["09:00", "24:30"]]}, "sun.0.1", "HH:MM"),
        ({"mon": [["09:00"]]}, "mon.0.1", "Field required"),
        ({"holiday": []}, "holiday", "Extra inputs"),
    ],
)
def test_schedule_errors_name_the_field(schedule: dict, where: str, message: str):
    with pytest.raises(ValidationError) as caught:
        WeeklySchedule.model_validate(schedule)
    locations = [".".join(str(p) for p in error["loc"]) for error in caught.value.errors()]
    assert where in locations, locations
    assert message in str(caught.value)


def test_valid_schedules_round_trip_through_the_stored_form():
    schedule = WeeklySchedule.model_validate({"mon": [["08:30", "12:00"], ["12:00", "24:00"]], "sat": []})
    stored = schedule.to_json()
    assert stored["mon"] == [["08:30", "12:00"], ["12:00", "24:00"]]
    assert stored["sun"] == []
    assert WeeklySchedule.model_validate(stored) == schedule


def test_calendar_rejects_unknown_zones_and_naive_or_negative_input():
    with pytest.raises(ValidationError, match="timezone"):
        BusinessCalendar(schedule=WeeklySchedule(), timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(datetime(2026, 3, 9, 9, 0), 60, office())
    with pytest.raises(ValueError, match="negative"):
        add_business_time(sh(2026, 3, 9, 9, 0), -1, office())
    with pytest.raises(ValueError, match="finite"):
        add_business_time(sh(2026, 3, 9, 9, 0), float("nan"), office())


# --- deadlines, holds and warnings ------------------------------------------------------------

POLICY = SlaPolicy(
    id=1, site_id=None, category=None, priority=None, response_minutes=240, resolution_minutes=960, calendar_id=1
)


def test_deadlines_count_from_reception_in_working_time():
    response, resolution = compute_deadlines(sh(2026, 3, 6, 17, 0), POLICY, office())
    assert response == sh(2026, 3, 9, 12, 0)
    # 16 h: 1 on Friday, 9 on Monday, 6 on Tuesday
    assert resolution == sh(2026, 3, 10, 15, 0)


def test_a_hold_over_the_night_pushes_back_by_its_working_hours_not_by_the_night():
    received = sh(2026, 3, 9, 9, 0)
    _, resolution = compute_deadlines(received, POLICY, office())
    assert resolution == sh(2026, 3, 10, 16, 0)
    # on hold Monday 17:00 until Tuesday 10:00: 17 hours on the wall clock, 2 working hours
    paused = paused_business_seconds(sh(2026, 3, 9, 17, 0), sh(2026, 3, 10, 10, 0), office())
    assert paused == 2 * HOUR
    response, resolution = compute_deadlines(received, POLICY, office(), paused_seconds=paused)
    assert resolution == sh(2026, 3, 10, 18, 0)
    assert response == sh(2026, 3, 9, 15, 0)
    # a hold entirely outside working hours costs nothing
    assert paused_business_seconds(sh(2026, 3, 9, 19, 0), sh(2026, 3, 10, 8, 0), office()) == 0
    with pytest.raises(ValueError):
        compute_deadlines(received, POLICY, office(), paused_seconds=-1)


def test_due_soon_counts_working_time():
    received, due = sh(2026, 3, 6, 17, 0), sh(2026, 3, 9, 12, 0)
    cal = office()
    # 75 % of the wall time has gone by Sunday evening, but three working hours are still left
    assert not is_due_soon(received, due, sh(2026, 3, 8, 20, 0), 0.75, calendar=cal)
    assert not is_due_soon(received, due, sh(2026, 3, 9, 10, 59, 59), 0.75, calendar=cal)
    assert is_due_soon(received, due, sh(2026, 3, 9, 11, 0), 0.75, calendar=cal)
    assert is_due_soon(received, due, sh(2026, 3, 9, 13, 0), 0.75, calendar=cal)  # overdue
    assert not is_due_soon(received, due, sh(2026, 3, 6, 17, 0), 0.5, calendar=cal)
    with pytest.raises(ValueError):
        is_due_soon(received, due, received, 1.5, calendar=cal)


def test_due_soon_after_a_hold_warns_on_what_is_left_of_the_limit():
    cal = office()
    received = sh(2026, 3, 9, 9, 0)
    # 4 h limit pushed back by a 2 h hold: due 15:00; the warning at 75 % comes with 1 h left
    _, due = compute_deadlines(received, POLICY, cal, paused_seconds=2 * HOUR)
    response_due = compute_deadlines(received, POLICY, cal, paused_seconds=2 * HOUR).response_due
    assert response_due == sh(2026, 3, 9, 15, 0)
    assert not is_due_soon(received, response_due, sh(2026, 3, 9, 13, 59), 0.75, calendar=cal, paused_seconds=7200)
    assert is_due_soon(received, response_due, sh(2026, 3, 9, 14, 0), 0.75, calendar=cal, paused_seconds=7200)
    assert due > response_due
