from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from cloud.api.deps import Conn, current_actor
from cloud.api.errors import ApiError
from cloud.api.schemas import TicketDetail, TicketOut
from cloud.domain import tickets
from contract.common import Category

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"], dependencies=[Depends(current_actor)])


@router.get("", response_model=list[TicketOut])
def list_tickets(
    conn: Conn,
    channel: tickets.Channel | None = None,
    type: tickets.TicketType | None = None,
    status: tickets.Status | None = None,
    category: Category | None = None,
    site: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Tickets, newest first, filtered by channel, type, status, category or site."""
    return tickets.list_tickets(
        conn,
        channel=channel.value if channel else None,
        type=type.value if type else None,
        status=status.value if status else None,
        category=category.value if category else None,
        site_id=site,
        limit=limit,
        offset=offset,
    )


@router.get("/{number}", response_model=TicketDetail)
def get_ticket(number: Annotated[str, Path(max_length=40)], conn: Conn) -> dict:
    """One ticket by its number (T-20261124-0007), with its timeline and alarms."""
    ticket = tickets.get_ticket(conn, number)
    if ticket is None:
        raise ApiError(404, f"ticket {number} does not exist")
    return ticket
