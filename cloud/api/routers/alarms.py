from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from cloud.api.deps import ActorDep, ClockDep, Conn, current_actor
from cloud.api.errors import ApiError
from cloud.api.schemas import AlarmOut
from cloud.domain import alarms
from contract.common import Severity

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"], dependencies=[Depends(current_actor)])


class AlarmState(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    #: active or acknowledged: not yet cleared
    OPEN = "open"


class AckBody(BaseModel):
    note: str | None = Field(default=None, max_length=1000)


@router.get("", response_model=list[AlarmOut])
def list_alarms(
    conn: Conn,
    state: AlarmState | None = None,
    severity: Severity | None = None,
    site: Annotated[str | None, Query(max_length=63)] = None,
    device_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Alarms, newest first. `state=open` gives those not yet cleared."""
    states = None
    if state == AlarmState.OPEN:
        states = ["active", "acknowledged"]
    elif state is not None:
        states = [state.value]
    return alarms.list_alarms(
        conn,
        states=states,
        severity=severity.value if severity else None,
        site_id=site,
        device_id=device_id,
        limit=limit,
        offset=offset,
    )


@router.get("/{alarm_id}", response_model=AlarmOut)
def get_alarm(alarm_id: int, conn: Conn) -> dict:
    row = alarms.get_alarm(conn, alarm_id)
    if row is None:
        raise ApiError(404, f"alarm {alarm_id} does not exist")
    return row


@router.post("/{alarm_id}/ack", response_model=AlarmOut)
def acknowledge(
    alarm_id: int, conn: Conn, clock: ClockDep, actor: ActorDep, body: Annotated[AckBody | None, Body()] = None
) -> dict:
    """Acknowledge an alarm: who and when are recorded (and written on its ticket's timeline)."""
    try:
        with conn.transaction():
            return alarms.acknowledge(
                conn, alarm_id=alarm_id, actor=actor.name, note=body.note if body else None, now=clock.now()
            )
    except alarms.AlarmNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except alarms.AlarmConflict as exc:
        raise ApiError(409, str(exc)) from None
