"""How the views group tickets: by local day, week or month, or by a dimension (category, channel,
building, department, technician, device, alarm rule).

A grouping is a SQL key over the derived table `t` of cloud.analytics.selection, and a label with
the joins it needs over the aggregated rows `a` (by their `gkey`): `labelled` names the groups after
aggregating, so a join runs once a group, not once a ticket (a year of three estates by building:
223 ms before, 173 ms after). Time groupings list every period of the range, also the empty ones,
so a chart of the series has no holes; the other groupings list the groups that have tickets.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from psycopg import sql

#: the label of tickets without the grouped thing (no building, department, assignee, device)
NONE_LABEL = "(none)"
#: the label of the one row of group_by=none
ALL_LABEL = "all"


class GroupBy(StrEnum):
    NONE = "none"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    CATEGORY = "category"
    CHANNEL = "channel"
    BUILDING = "building"
    DEPARTMENT = "department"
    TECHNICIAN = "technician"
    DEVICE = "device"
    RULE = "rule"


TIME = (GroupBy.DAY, GroupBy.WEEK, GroupBy.MONTH)

#: the ticket's creation as a local timestamp of the window's time zone
_LOCAL = "t.created_at AT TIME ZONE %(tz)s"


@dataclass(frozen=True)
class Grouping:
    by: GroupBy
    #: the group of a ticket, over `t`
    key: sql.Composable
    #: the group's name, over `a` (the aggregated row) and the joins
    label: sql.Composable
    #: joins to `a` for the label
    joins: sql.Composable


def labelled(g: Grouping, aggregated: sql.Composable) -> sql.Composed:
    """The rows of a query grouped by `gkey` (the grouping's key), each with its label `glabel`."""
    return sql.SQL("SELECT a.*, {label} AS glabel FROM ({aggregated}) a {joins}").format(
        label=g.label, aggregated=aggregated, joins=g.joins
    )


def grouping(by: GroupBy) -> Grouping:
    """The SQL of one grouping; the key is a local date for time groupings (the period's first day)."""
    empty = sql.SQL("")
    if by == GroupBy.NONE:
        return Grouping(by, sql.SQL("NULL::text"), sql.Literal(ALL_LABEL), empty)
    if by == GroupBy.DAY:
        return Grouping(by, sql.SQL(f"({_LOCAL})::date"), sql.SQL("NULL::text"), empty)
    if by in (GroupBy.WEEK, GroupBy.MONTH):
        # date_trunc('week', ...) starts weeks on Monday (ISO 8601)
        return Grouping(by, sql.SQL(f"date_trunc('{by.value}', {_LOCAL})::date"), sql.SQL("NULL::text"), empty)
    if by in (GroupBy.CATEGORY, GroupBy.CHANNEL):
        return Grouping(by, sql.SQL("t.{}").format(sql.Identifier(by.value)), sql.SQL("a.gkey"), empty)
    if by == GroupBy.RULE:
        return Grouping(by, sql.SQL("t.alarm_rule"), sql.SQL("a.gkey"), empty)
    if by == GroupBy.BUILDING:
        # two sites may both have a "Building 1": with several sites in the window, the site id says which
        label = sql.SQL("CASE WHEN %(multi_site)s THEN gb.site_id || ' / ' || gb.name ELSE gb.name END")
        return Grouping(by, sql.SQL("t.building_ref"), label, sql.SQL("LEFT JOIN buildings gb ON gb.id = a.gkey"))
    if by == GroupBy.DEPARTMENT:
        return Grouping(
            by, sql.SQL("t.department_id"), sql.SQL("gd.name"), sql.SQL("LEFT JOIN departments gd ON gd.id = a.gkey")
        )
    if by == GroupBy.TECHNICIAN:
        joins = sql.SQL("LEFT JOIN users gu ON gu.id = a.gkey LEFT JOIN people gp ON gp.id = gu.person_id")
        return Grouping(by, sql.SQL("t.assignee_id"), sql.SQL("gp.full_name"), joins)
    if by == GroupBy.DEVICE:
        joins = sql.SQL("LEFT JOIN devices gv ON gv.id = a.gkey")
        return Grouping(by, sql.SQL("t.device_id"), sql.SQL("gv.name"), joins)
    raise ValueError(f"no grouping {by}")


def period_start(by: GroupBy, day: date) -> date:
    """The first day of the period of `by` that holds `day`."""
    if by == GroupBy.WEEK:
        return day - timedelta(days=day.weekday())
    if by == GroupBy.MONTH:
        return day.replace(day=1)
    return day


def periods(by: GroupBy, first_day: date, last_day: date) -> Iterator[date]:
    """Every period of the range, as its first day (a week's Monday, a month's 1st), in order."""
    current = period_start(by, first_day)
    while current <= last_day:
        yield current
        if by == GroupBy.DAY:
            current += timedelta(days=1)
        elif by == GroupBy.WEEK:
            current += timedelta(days=7)
        else:
            current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_label(by: GroupBy, first: date) -> str:
    """ISO date for days and weeks (the Monday), YYYY-MM for months."""
    return first.strftime("%Y-%m") if by == GroupBy.MONTH else first.isoformat()


def label_of(row_label: str | None) -> str:
    return NONE_LABEL if row_label is None else row_label


def arrange(
    by: GroupBy,
    found: list[dict[str, Any]],
    row: Callable[[str, dict[str, Any] | None], dict[str, Any]],
    *,
    first_day: date,
    last_day: date,
    size: str,
) -> list[dict[str, Any]]:
    """A view's rows from its aggregates per group (`gkey`, `glabel`; `row` makes one, None: no tickets):
    the one row of group_by=none, every period of a time grouping in order (the empty ones too), else
    the groups largest first by the `size` column, the one without the grouped thing last among equals."""
    if by == GroupBy.NONE:
        return [row(ALL_LABEL, found[0] if found else None)]
    if by in TIME:
        by_period = {r["gkey"]: r for r in found}
        return [row(period_label(by, p), by_period.get(p)) for p in periods(by, first_day, last_day)]
    rows = [row(label_of(r["glabel"]), r) for r in found]
    return sorted(rows, key=lambda r: (-r[size], r["group"] == NONE_LABEL, r["group"]))
