"""The complaint volume forecast: the next weeks' ticket counts with an interval and the backtest
behind them (docs/forecast.md)."""

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from cloud.analytics.export import ExportFormat, respond
from cloud.analytics.forecast_report import forecast_report
from cloud.api.deps import ClockDep, Conn, allow
from cloud.domain.access import OFFICE, Principal

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
Office = Annotated[Principal, Depends(allow(*OFFICE))]


class TicketType(StrEnum):
    COMPLAINT = "complaint"
    REPAIR = "repair"
    SAFETY = "safety"
    ALL = "all"


@router.get("/forecast", response_model=None)
def forecast(
    conn: Conn,
    clock: ClockDep,
    who: Office,
    site: str | None = None,
    building_id: int | None = None,
    ticket_type: Annotated[TicketType, Query(alias="type")] = TicketType.COMPLAINT,
    weeks: Annotated[int, Query(ge=1, le=12)] = 4,
    level: Annotated[float, Query(ge=0.5, le=0.99)] = 0.8,
    fmt: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSON,
) -> dict[str, Any] | Response:
    """Tickets expected in each of the next `weeks` whole weeks (Monday to Sunday, the site's time
    zone), in total and by category: the forecast, its interval at `level`, the method, and the
    backtest of the method against seasonal-naive (in `meta`)."""
    report = forecast_report(
        conn,
        who,
        now=clock.now(),
        site=site,
        building_id=building_id,
        ticket_type=None if ticket_type == TicketType.ALL else ticket_type.value,
        weeks=weeks,
        level=level,
    )
    return respond(report, fmt)
