"""Analytics for the office and management: KPIs, causes, top sources, alarm-to-fix (docs/analytics.md).

Every view answers the same way: JSON {"meta", "columns", "rows"}, or the same rows as a CSV or
Excel download (`format=csv|xlsx`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Response

from cloud.analytics import alarm_fix as alarm_fix_view
from cloud.analytics import causes as causes_view
from cloud.analytics import kpis as kpis_view
from cloud.analytics import top as top_view
from cloud.analytics.export import ExportFormat, Report, Scalar, respond
from cloud.analytics.grouping import GroupBy
from cloud.analytics.scope import AnalyticsRefused, Window, resolve
from cloud.analytics.selection import Selection
from cloud.api.deps import ClockDep, Conn, allow
from cloud.domain.access import OFFICE, Principal
from cloud.domain.tickets import TicketType
from contract.common import Category

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
Office = Annotated[Principal, Depends(allow(*OFFICE))]

KPI_GROUPS = (
    GroupBy.NONE,
    GroupBy.DAY,
    GroupBy.WEEK,
    GroupBy.MONTH,
    GroupBy.CATEGORY,
    GroupBy.CHANNEL,
    GroupBy.BUILDING,
    GroupBy.DEPARTMENT,
    GroupBy.TECHNICIAN,
)


Site = Annotated[str | None, Query(max_length=63, description="one site; default: every site in reach")]
BuildingId = Annotated[int | None, Query(description="one building of the sites")]
FromDay = Annotated[date | None, Query(alias="from", description="first local day (default: 29 days before `to`)")]
ToDay = Annotated[date | None, Query(alias="to", description="last local day, included (default: today)")]
Format = Annotated[ExportFormat, Query(alias="format")]


@dataclass(frozen=True)
class Asked:
    """One request to a view: who asks, and the filters and format every view takes."""

    conn: psycopg.Connection
    who: Principal
    now: datetime
    site: str | None
    building_id: int | None
    first: date | None
    last: date | None
    ticket_type: TicketType | None
    category: Category | None
    fmt: ExportFormat

    def answer(
        self,
        view: str,
        columns: list[str],
        rows: Callable[[Selection], list[dict[str, Scalar]]],
        **meta: Any,
    ) -> dict[str, Any] | Response:
        """The view's rows over the tickets the filters select, as JSON or as the file asked for."""
        window = resolve(
            self.conn,
            self.who,
            now=self.now,
            site=self.site,
            building_id=self.building_id,
            first_day=self.first,
            last_day=self.last,
        )
        selection = Selection(
            window,
            self.ticket_type.value if self.ticket_type else None,
            self.category.value if self.category else None,
        )
        report = Report(_name(view, self.site, selection), columns, rows(selection), _meta(selection, self.now, **meta))
        return respond(report, self.fmt)


def _asked(
    conn: Conn,
    clock: ClockDep,
    who: Office,
    site: Site = None,
    building_id: BuildingId = None,
    first: FromDay = None,
    last: ToDay = None,
    type: TicketType | None = None,
    category: Category | None = None,
    fmt: Format = ExportFormat.JSON,
) -> Asked:
    # no database work here: a view's own parameters are checked before the site and range are
    return Asked(conn, who, clock.now(), site, building_id, first, last, type, category, fmt)


AskedDep = Annotated[Asked, Depends(_asked)]


def _groups(allowed: tuple[GroupBy, ...]) -> str:
    return "one of " + ", ".join(g.value for g in allowed)


def _group_by(value: str, allowed: tuple[GroupBy, ...]) -> GroupBy:
    """The grouping asked for, or a 422 that lists the ones this view has."""
    names = [g.value for g in allowed]
    if value not in names:
        raise AnalyticsRefused(422, f"group_by: {value!r} is not one of {', '.join(names)}")
    return GroupBy(value)


def _meta(selection: Selection, now: datetime, **extra: Any) -> dict[str, Any]:
    w: Window = selection.window
    return {
        "sites": w.site_ids,
        "time_zone": w.tz.key,
        "from": w.first_day.isoformat(),
        "to": w.last_day.isoformat(),
        "building_id": w.building_id,
        "type": selection.ticket_type,
        "category": selection.category,
        **extra,
        "generated_at": now.isoformat(),
    }


def _name(view: str, site: str | None, selection: Selection) -> str:
    w = selection.window
    return f"{view}-{site or 'all-sites'}-{w.first_day.isoformat()}-{w.last_day.isoformat()}"


@router.get("/kpis", response_model=None)
def get_kpis(
    asked: AskedDep,
    group_by: Annotated[str, Query(description=_groups(KPI_GROUPS))] = "none",
) -> dict[str, Any] | Response:
    """Volume, response and handling times, resolution, SLA, satisfaction, re-complaints and reopens by group."""
    by = _group_by(group_by, KPI_GROUPS)
    return asked.answer(
        "kpis",
        kpis_view.COLUMNS,
        lambda selection: kpis_view.kpis(asked.conn, selection, by, now=asked.now),
        group_by=by.value,
    )


@router.get("/causes", response_model=None)
def get_causes(
    asked: AskedDep,
    group_by: Annotated[str, Query(description=_groups(causes_view.GROUPS))] = "none",
) -> dict[str, Any] | Response:
    """Resolved tickets by cause kind (internal, external) and cause code, with each one's share."""
    by = _group_by(group_by, causes_view.GROUPS)
    return asked.answer(
        "causes",
        causes_view.COLUMNS,
        lambda selection: causes_view.causes(asked.conn, selection, by),
        group_by=by.value,
    )


@router.get("/top", response_model=None)
def get_top(
    asked: AskedDep,
    by: top_view.TopBy = top_view.TopBy.DEVICE,
    limit: Annotated[int, Query(ge=1, le=top_view.MAX_LIMIT)] = 10,
) -> dict[str, Any] | Response:
    """Devices or places ranked by alarms plus complaints in the range."""
    return asked.answer(
        f"top-{by.value}",
        top_view.COLUMNS[by],
        lambda selection: top_view.top(asked.conn, selection, by, limit=limit),
        group_by=by.value,
        by=by.value,
        limit=limit,
    )


@router.get("/alarm-fix", response_model=None)
def get_alarm_fix(
    asked: AskedDep,
    group_by: Annotated[str, Query(description=_groups(alarm_fix_view.GROUPS))] = "none",
) -> dict[str, Any] | Response:
    """Tickets opened by an alarm: how many, how many fixed, and the time from the alarm to the fix."""
    by = _group_by(group_by, alarm_fix_view.GROUPS)
    return asked.answer(
        "alarm-fix",
        alarm_fix_view.COLUMNS,
        lambda selection: alarm_fix_view.alarm_fix(asked.conn, selection, by),
        group_by=by.value,
    )
