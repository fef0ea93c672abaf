from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.api.schemas import AlarmOut
from cloud.domain import alarms, attachments, audit
from cloud.domain.access import STAFF, Principal
from contract.common import Severity

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])
Staff = Annotated[Principal, Depends(allow(*STAFF))]


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
    who: Staff,
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
        sites=who.site_list(),
        device_id=device_id,
        limit=limit,
        offset=offset,
    )


@router.get("/{alarm_id}", response_model=AlarmOut)
def get_alarm(alarm_id: int, conn: Conn, who: Staff) -> dict:
    row = alarms.get_alarm(conn, alarm_id)
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"alarm {alarm_id} does not exist")
    return row


@router.get("/{alarm_id}/snapshot", response_class=FileResponse)
def alarm_snapshot(alarm_id: int, request: Request, conn: Conn, who: Staff) -> FileResponse:
    """The camera's JPEG of the alarm (404 when none came or the alarm is out of reach)."""
    row = alarms.get_alarm(conn, alarm_id)
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"alarm {alarm_id} does not exist")
    if row["snapshot_id"] is None:
        raise ApiError(404, f"alarm {alarm_id} has no snapshot")
    path = attachments.path_of(request.app.state.settings.attachments_dir, row["snapshot_id"])
    if not path.exists():
        raise ApiError(404, f"the snapshot of alarm {alarm_id} is no longer kept")
    return FileResponse(path, media_type="image/jpeg")


@router.post("/{alarm_id}/ack", response_model=AlarmOut)
def acknowledge(
    alarm_id: int, conn: Conn, clock: ClockDep, who: Staff, body: Annotated[AckBody | None, Body()] = None
) -> dict:
    """Acknowledge an alarm: who and when are recorded (and written on its ticket's timeline)."""
    found = alarms.get_alarm(conn, alarm_id)
    if found is None or not who.reaches_site(found["site_id"]):
        raise ApiError(404, f"alarm {alarm_id} does not exist")
    try:
        with conn.transaction():
            now = clock.now()
            acked = alarms.acknowledge(
                conn, alarm_id=alarm_id, actor=who.actor, note=body.note if body else None, now=now
            )
            audit.record(
                conn,
                actor=who,
                action="acknowledge",
                entity="alarms",
                entity_id=alarm_id,
                now=now,
                before={"state": found["state"]},
                after={"state": acked["state"], "note": acked["ack_note"]},
            )
            return acked
    except alarms.AlarmNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except alarms.AlarmConflict as exc:
        raise ApiError(409, str(exc)) from None
