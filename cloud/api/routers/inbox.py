"""The logged-in user's in-app messages."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cloud.api.deps import ClockDep, Conn, PrincipalDep
from cloud.api.errors import ApiError
from cloud.domain import notifications

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


class NotificationOut(BaseModel):
    id: int
    kind: str
    title: str
    body: str
    ticket_number: str | None
    created_at: datetime
    read_at: datetime | None


class Unread(BaseModel):
    unread: int


@router.get("", response_model=list[NotificationOut])
def my_notifications(
    conn: Conn,
    who: PrincipalDep,
    unread_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    return notifications.list_for_user(conn, who.user_id, unread_only=unread_only, limit=limit, offset=offset)


@router.get("/unread", response_model=Unread)
def unread(conn: Conn, who: PrincipalDep) -> Unread:
    return Unread(unread=notifications.unread_count(conn, who.user_id))


@router.post("/{notification_id}/read", status_code=204)
def mark_read(notification_id: int, conn: Conn, clock: ClockDep, who: PrincipalDep) -> None:
    if not notifications.mark_read(conn, who.user_id, notification_id, clock.now()):
        raise ApiError(404, f"notification {notification_id} does not exist")


@router.post("/read-all", response_model=Unread)
def mark_all_read(conn: Conn, clock: ClockDep, who: PrincipalDep) -> Unread:
    notifications.mark_all_read(conn, who.user_id, clock.now())
    return Unread(unread=0)
