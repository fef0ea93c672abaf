"""Analytics for the office and management: KPIs, causes, top sources, alarm-to-fix (docs/analytics.md).

Every view answers the same way: JSON {"meta", "columns", "rows"}, or the same rows as a CSV or
Excel download (`format=csv|xlsx`).
"""

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from cloud.analytics import alarm_fix as alarm_fix_view
from cloud.analytics import causes as causes_view
from cloud.analytics import kpis as kpis_view
from cloud.analytics import top as top_view
from cloud.analytics.export import ExportFormat, Report, respond
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


def _groups(allowed: tuple[GroupBy, ...]) -> str:
    return "one of " + ", ".join(g.value for g in allowed)


def _group_by(value: str, allowed: tuple[GroupBy, ...]) -> GroupBy:
    """The grouping asked for, or a 422 that lists the ones this view has."""
    names = [g.value for g in allowed]
    if value not in names:
        raise AnalyticsRefused(422, f"group_by: {value!r} is not one of {', '.join(names)}")
    return GroupBy(value)


def _selection(
    conn: Conn,
    who: Principal,
    clock: ClockDep,
    site: str | None,
    building_id: int | None,
    first: date | None,
    last: date | None,
    ticket_type: TicketType | None,
    category: Category | None,
) -> Selection:
    window = resolve(conn, who, now=clock.now(), site=site, building_id=building_id, first_day=first, last_day=last)
    return Selection(window, ticket_type.value if ticket_type else None, category.value if category else None)


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
    conn: Conn,
    clock: ClockDep,
    who: Office,
    site: Site = None,
    building_id: BuildingId = None,
    first: FromDay = None,
    last: ToDay = None,
    type: TicketType | None = None,
    category: Category | None = None,
    group_by: Annotated[str, Query(description=_groups(KPI_GROUPS))] = "none",
    fmt: Format = ExportFormat.JSON,
) -> dict[str, Any] | Response:
    """Volume, response and handling times, resolution, SLA, satisfaction, re-complaints and reopens by group."""
    by = _group_by(group_by, KPI_GROUPS)
    selection = _selection(conn, who, clock, site, building_id, first, last, type, category)
    now = clock.now()
    rows = kpis_view.kpis(conn, selection, by, now=now)
    report = Report(_name("kpis", site, selection), kpis_view.COLUMNS, rows, _meta(selection, now, group_by=by.value))
    return respond(report, fmt)


@router.get("/causes", response_model=None)
def get_causes(
    conn: Conn,
    clock: ClockDep,
    who: Office,
    site: Site = None,
    building_id: BuildingId = None,
    first: FromDay = None,
    last: ToDay = None,
    type: TicketType | None = None,
    category: Category | None = None,
    group_by: Annotated[str, Query(description=_groups(causes_view.GROUPS))] = "none",
    fmt: Format = ExportFormat.JSON,
) -> dict[str, Any] | Response:
    """Resolved tickets by cause kind (internal, external) and cause code, with each one's share."""
    by = _group_by(group_by, causes_view.GROUPS)
    selection = _selection(conn, who, clock, site, building_id, first, last, type, category)
    now = clock.now()
    rows = causes_view.causes(conn, selection, by)
    report = Report(
        _name("causes", site, selection), causes_view.COLUMNS, rows, _meta(selection, now, group_by=by.value)
    )
    return respond(report, fmt)


@router.get("/top", response_model=None)
def get_top(
    conn: Conn,
    clock: ClockDep,
    who: Office,
    by: top_view.TopBy = top_view.TopBy.DEVICE,
    limit: Annotated[int, Query(ge=1, le=top_view.MAX_LIMIT)] = 10,
    site: Site = None,
    building_id: BuildingId = None,
    first: FromDay = None,
    last: ToDay = None,
    type: TicketType | None = None,
    category: Category | None = None,
    fmt: Format = ExportFormat.JSON,
) -> dict[str, Any] | Response:
    """Devices or places ranked by alarms plus complaints in the range."""
    selection = _selection(conn, who, clock, site, building_id, first, last, type, category)
    now = clock.now()
    rows = top_view.top(conn, selection, by, limit=limit)
    meta = _meta(selection, now, group_by=by.value, by=by.value, limit=limit)
    return respond(Report(_name(f"top-{by.value}", site, selection), top_view.COLUMNS[by], rows, meta), fmt)


@router.get("/alarm-fix", response_model=None)
def get_alarm_fix(
    conn: Conn,
    clock: ClockDep,
    who: Office,
    site: Site = None,
    building_id: BuildingId = None,
    first: FromDay = None,
    last: ToDay = None,
    type: TicketType | None = None,
    category: Category | None = None,
    group_by: Annotated[str, Query(description=_groups(alarm_fix_view.GROUPS))] = "none",
    fmt: Format = ExportFormat.JSON,
) -> dict[str, Any] | Response:
    """Tickets opened by an alarm: how many, how many fixed, and the time from the alarm to the fix."""
    by = _group_by(group_by, alarm_fix_view.GROUPS)
    selection = _selection(conn, who, clock, site, building_id, first, last, type, category)
    now = clock.now()
    rows = alarm_fix_view.alarm_fix(conn, selection, by)
    report = Report(
        _name("alarm-fix", site, selection), alarm_fix_view.COLUMNS, rows, _meta(selection, now, group_by=by.value)
    )
    return respond(report, fmt)
