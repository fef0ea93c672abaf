"""Which tickets an analytics request is about: the sites in the caller's reach, a building, and
a range of local days turned into UTC instants in the sites' time zone.

Days, weeks and months are the site's: a ticket filed at 23:30 in Shanghai on the 1st counts on
the 1st, although it is the 1st's 15:30 in UTC. Weeks start on Monday. The range is given as
local dates, both ends included.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from cloud.domain.access import Principal
from cloud.domain.errors import Refused

#: the longest range one request may cover (ten years of days is still a small series)
MAX_DAYS = 3660
#: the range when none is given: the last thirty local days, today included
DEFAULT_DAYS = 30


class AnalyticsRefused(Refused):
    """A request analytics cannot answer as asked: the status and the reason go to the caller."""


@dataclass(frozen=True)
class Window:
    #: the sites counted: those named, else every site the caller reaches
    site_ids: list[str]
    building_id: int | None
    tz: ZoneInfo
    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        """The first local day's midnight, as an aware instant."""
        return datetime.combine(self.first_day, time(0), self.tz)

    @property
    def end(self) -> datetime:
        """Midnight after the last local day (exclusive)."""
        return datetime.combine(self.last_day + timedelta(days=1), time(0), self.tz)


def resolve(
    conn: psycopg.Connection,
    who: Principal,
    *,
    now: datetime,
    site: str | None,
    building_id: int | None,
    first_day: date | None,
    last_day: date | None,
) -> Window:
    """The window for a request, or AnalyticsRefused (404 for a site or building out of reach, 422
    for a range that makes no sense or sites that keep different time zones)."""
    if site is not None:
        if not who.reaches_site(site):
            raise AnalyticsRefused(404, f"site {site} does not exist")
        rows = conn.execute("SELECT id, timezone FROM sites WHERE id = %s", (site,)).fetchall()
        if not rows:
            raise AnalyticsRefused(404, f"site {site} does not exist")
    else:
        rows = conn.execute(
            "SELECT id, timezone FROM sites WHERE %(all)s OR id = ANY(%(sites)s) ORDER BY id",
            {"all": who.site_ids is None, "sites": who.site_list() or []},
        ).fetchall()
    site_ids = [r["id"] for r in rows]
    zones = {r["timezone"] for r in rows}
    if len(zones) > 1:
        raise AnalyticsRefused(422, "site: the sites in reach keep different time zones; name one site")
    tz = ZoneInfo(zones.pop() if zones else "UTC")
    if building_id is not None:
        found = conn.execute(
            "SELECT site_id FROM buildings WHERE id = %s AND site_id = ANY(%s)", (building_id, site_ids)
        ).fetchone()
        if found is None:
            raise AnalyticsRefused(404, f"building {building_id} does not exist")
    today = now.astimezone(tz).date()
    last = last_day or today
    first = first_day or (last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise AnalyticsRefused(422, f"from: {first} is after to: {last}")
    if (last - first).days + 1 > MAX_DAYS:
        raise AnalyticsRefused(422, f"from/to: at most {MAX_DAYS} days in one request")
    return Window(site_ids=site_ids, building_id=building_id, tz=tz, first_day=first, last_day=last)
