"""Working time on a business calendar: the pure arithmetic behind SLA deadlines.

A calendar is a weekly schedule of opening hours in the site's wall-clock time, a set of
holidays, and the site's IANA time zone. Opening hours are wall-clock hours ("09:00" means
nine o'clock on the clocks at the site, summer or winter); the working time they hold is
counted in real seconds, so a segment that spans a daylight-saving change is an hour shorter
or longer that day. Nothing here touches the database or the clock: callers pass instants.

Internally every instant is an integer count of microseconds since the Unix epoch, so sums
and differences are exact. Long spans skip whole weeks arithmetically: a week holds every
weekday once, so its nominal working time is a constant; only holidays and the days around
a change of UTC offset ("irregular" days) are computed one by one and corrected for.

A wall-clock boundary maps to the first moment the site's clocks show that time or later:
in the spring gap that is the moment the clocks jump; in the autumn fold the first of the
two occurrences. Every day's working intervals are therefore sorted and disjoint in real
time, which is all the arithmetic below relies on.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _hhmm_seconds(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _check_hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 23:59, or 24:00 as an end)")
    return value


HHMM = Annotated[str, AfterValidator(_check_hhmm)]
Segment = tuple[HHMM, HHMM]


def _check_segments(segments: list[Segment]) -> list[Segment]:
    """One day's opening hours: each [start, end) non-empty, sorted, none overlapping."""
    previous_end = -1
    for number, (start, end) in enumerate(segments, 1):
        if start == "24:00":
            raise ValueError(f"segment {number} ({start}-{end}): 24:00 is only allowed as an end")
        if _hhmm_seconds(end) <= _hhmm_seconds(start):
            raise ValueError(f"segment {number} ({start}-{end}) must end after it starts")
        if _hhmm_seconds(start) < previous_end:
            raise ValueError(
                f"segment {number} ({start}-{end}) starts before the previous one ends; "
                "segments must be sorted and must not overlap"
            )
        previous_end = _hhmm_seconds(end)
    return segments


DaySegments = Annotated[list[Segment], AfterValidator(_check_segments)]


class WeeklySchedule(BaseModel):
    """Opening hours per weekday, as stored in `business_calendars.schedule` and edited through the API.

    A day that is missing or empty is closed. Segments are half-open [start, end) in the site's
    wall-clock time; "24:00" closes at midnight. Validation errors name the day and segment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mon: DaySegments = Field(default_factory=list)
    tue: DaySegments = Field(default_factory=list)
    wed: DaySegments = Field(default_factory=list)
    thu: DaySegments = Field(default_factory=list)
    fri: DaySegments = Field(default_factory=list)
    sat: DaySegments = Field(default_factory=list)
    sun: DaySegments = Field(default_factory=list)

    @classmethod
    def every_day(cls, start: str, end: str, *, days: tuple[str, ...] = DAYS) -> WeeklySchedule:
        """The same hours on each of `days` (others closed): the common case in one line."""
        return cls.model_validate({day: [[start, end]] for day in days})

    def segments(self, weekday: int) -> list[Segment]:
        """The segments of `weekday` (0 = Monday, as `date.weekday()`)."""
        return getattr(self, DAYS[weekday])

    def to_json(self) -> dict[str, list[list[str]]]:
        """The jsonb form: {"mon": [["09:00", "18:00"]], ...} with all seven days."""
        return {day: [[start, end] for start, end in getattr(self, day)] for day in DAYS}


class Holiday(BaseModel):
    """A day without working time, whatever its weekday's hours say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: date
    name: str = Field(default="", max_length=200)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


def _to_us(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _duration_us(seconds: float) -> int:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"a duration must be a finite number of seconds, got {seconds}")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, got {seconds}")
    return round(seconds * _US)


@lru_cache(maxsize=256)
def _irregular_dates(zone_key: str, year: int) -> frozenset[date]:
    """Dates of `year` whose real length may differ from 24 hours in `zone_key`, with a day's margin.

    The UTC offset is sampled at local midnight and noon of every day; a change between two
    samples marks the days around it. Cached per zone and year, so a long span costs one scan
    per year it touches.
    """
    zone = ZoneInfo(zone_key)
    found: set[date] = set()
    day = date(year, 1, 1) - timedelta(days=1)
    last = date(year, 12, 31) + timedelta(days=1)
    previous = datetime.combine(day, time(), tzinfo=zone).utcoffset()
    while day <= last:
        for sample in (datetime.combine(day, time(12)), datetime.combine(day + timedelta(days=1), time())):
            offset = sample.replace(tzinfo=zone).utcoffset()
            if offset != previous:
                found.update(day + timedelta(days=delta) for delta in (-1, 0, 1))
                previous = offset
        day += timedelta(days=1)
    return frozenset(d for d in found if d.year == year)


class BusinessCalendar(BaseModel):
    """When work happens at a site: weekly wall-clock hours, holidays, and the site's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: WeeklySchedule
    holidays: frozenset[date] = frozenset()
    timezone: str = "UTC"

    _zone: ZoneInfo = PrivateAttr()
    _segments: tuple[tuple[tuple[int, int], ...], ...] = PrivateAttr()
    _nominal_us: tuple[int, ...] = PrivateAttr()
    _week_us: int = PrivateAttr()
    _sorted_holidays: tuple[date, ...] = PrivateAttr()
    _always: bool = PrivateAttr()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (like 'Asia/Shanghai')") from exc
        return value

    def model_post_init(self, context: Any, /) -> None:
        # Precomputed once: the arithmetic runs on integers, not on the pydantic fields.
        self._zone = ZoneInfo(self.timezone)
        self._segments = tuple(
            tuple((_hhmm_seconds(a), _hhmm_seconds(b)) for a, b in self.schedule.segments(wd)) for wd in range(7)
        )
        self._nominal_us = tuple(sum(b - a for a, b in day) * _US for day in self._segments)
        self._week_us = sum(self._nominal_us)
        self._sorted_holidays = tuple(sorted(self.holidays))
        self._always = not self.holidays and all(day == ((0, DAY_SECONDS),) for day in self._segments)

    @property
    def around_the_clock(self) -> bool:
        """Every moment is working time: durations are plain elapsed time."""
        return self._always

    @property
    def weekly_seconds(self) -> int:
        """Working seconds in an ordinary week (no holiday, no clock change)."""
        return self._week_us // _US

    # --- days -----------------------------------------------------------------------------

    def _wall_to_us(self, day: date, seconds: int) -> int:
        """The first moment the site's clocks show `seconds` after midnight of `day`, or later."""
        naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
        first = _to_us(naive.replace(tzinfo=self._zone))
        if _from_us(first).astimezone(self._zone).replace(tzinfo=None) == naive:
            return first  # exists; fold=0 is the first occurrence in the autumn fold
        # In the spring gap: find the jump, the first instant whose wall time is past `naive`.
        lo = _to_us(naive.replace(tzinfo=self._zone, fold=1)) // _US
        hi = first // _US
        if lo > hi:
            lo, hi = hi, lo
        while lo < hi:
            mid = (lo + hi) // 2
            if _from_us(mid * _US).astimezone(self._zone).replace(tzinfo=None) >= naive:
                hi = mid
            else:
                lo = mid + 1
        return lo * _US

    def _irregular(self, day: date) -> bool:
        return day in self.holidays or day in _irregular_dates(self.timezone, day.year)

    def _intervals(self, day: date) -> list[tuple[int, int]]:
        """The working intervals of a local date as real instants (µs since the epoch)."""
        if day in self.holidays:
            return []
        out = []
        for start, end in self._segments[day.weekday()]:
            a, b = self._wall_to_us(day, start), self._wall_to_us(day, end)
            if b > a:
                out.append((a, b))
        return out

    def _day_us(self, day: date) -> int:
        if not self._irregular(day):
            return self._nominal_us[day.weekday()]
        return sum(b - a for a, b in self._intervals(day))

    def _range_us(self, first: date, stop: date) -> int:
        """Working µs in the whole local dates [first, stop): weeks by multiplication, then corrections."""
        days = (stop - first).days
        if days <= 0:
            return 0
        weeks, rest = divmod(days, 7)
        total = weeks * self._week_us
        total += sum(self._nominal_us[(first.weekday() + i) % 7] for i in range(rest))
        holidays = self._sorted_holidays
        irregular = set(holidays[bisect_left(holidays, first) : bisect_left(holidays, stop)])
        for year in range(first.year, stop.year + 1):
            irregular.update(d for d in _irregular_dates(self.timezone, year) if first <= d < stop)
        for day in irregular:
            total += self._day_us(day) - self._nominal_us[day.weekday()]
        return total

    def _local_date(self, us: int) -> date:
        return _from_us(us).astimezone(self._zone).date()

    def _cumulative_us(self, base: date, at: int) -> int:
        """Working µs from the start of local date `base` up to the instant `at` (base well before `at`).

        Dates before the local date of `at` lie wholly before it and dates two or more after it
        wholly after it; the three in between are clipped instant by instant, which also covers
        a clock that falls back across midnight.
        """
        day = self._local_date(at)
        total = self._range_us(base, day - timedelta(days=1))
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            for a, b in self._intervals(d):
                if a < at:
                    total += min(b, at) - a
        return total

    # --- the two operations ---------------------------------------------------------------

    def add(self, start: datetime, seconds: float) -> datetime:
        """See `add_business_time`."""
        t = _to_us(_aware(start, "start"))
        need = _duration_us(seconds)
        if need == 0:
            return _from_us(t)
        if self._always:
            return _from_us(t + need)
        if self._week_us == 0:
            raise ValueError("the business calendar has no working hours on any weekday: no deadline can be reached")
        base = self._local_date(t) - timedelta(days=2)
        target = self._cumulative_us(base, t) + need
        day, done = base, 0
        # Whole weeks while at least two weeks' worth remains; the weeks skipped may hold
        # holidays, so a skip can fall short and the loop goes on.
        weeks = (target - done) // self._week_us - 1
        while weeks >= 1:
            block = self._range_us(day, day + timedelta(weeks=weeks))
            if done + block < target:
                done += block
                day += timedelta(weeks=weeks)
                weeks = (target - done) // self._week_us - 1
            else:
                weeks //= 2  # a clock change added more than the slack: take smaller steps
        while done + (today := self._day_us(day)) < target:
            done += today
            day += timedelta(days=1)
        left = target - done
        for a, b in self._intervals(day):
            if left <= b - a:
                return _from_us(a + left)
            left -= b - a
        raise AssertionError("unreachable: the day's working time covers what is left")

    def between(self, a: datetime, b: datetime) -> float:
        """See `business_seconds_between`."""
        ta, tb = _to_us(_aware(a, "a")), _to_us(_aware(b, "b"))
        if tb <= ta:
            return 0.0
        if self._always:
            return (tb - ta) / _US
        if self._week_us == 0:
            return 0.0
        base = self._local_date(ta) - timedelta(days=2)
        return (self._cumulative_us(base, tb) - self._cumulative_us(base, ta)) / _US

    def is_working(self, at: datetime) -> bool:
        """Whether `at` falls inside opening hours (on a day that is not a holiday)."""
        t = _to_us(_aware(at, "at"))
        if self._always:
            return True
        day = self._local_date(t)
        return any(
            a <= t < b for d in (day - timedelta(days=1), day, day + timedelta(days=1)) for a, b in self._intervals(d)
        )


#: For safety tickets and policies without a calendar: every second counts.
AROUND_THE_CLOCK = BusinessCalendar(schedule=WeeklySchedule.every_day("00:00", "24:00"), timezone="UTC")


def add_business_time(start: datetime, seconds: float, calendar: BusinessCalendar) -> datetime:
    """The moment when `seconds` of working time have elapsed after `start`, in UTC.

    A start outside opening hours counts from the next opening. The result is the earliest
    such moment, so a limit that runs out at closing time is due at closing, not at the next
    opening; zero seconds give `start` back. Raises ValueError for a naive datetime, a negative
    duration, or a calendar without any working hours (the deadline would never come).
    """
    return calendar.add(start, seconds)


def business_seconds_between(a: datetime, b: datetime, calendar: BusinessCalendar) -> float:
    """Working seconds in [a, b); 0 when b <= a. The inverse of `add_business_time`."""
    return calendar.between(a, b)
