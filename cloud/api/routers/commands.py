"""Device commands: send one, follow its state."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.api.schemas import CommandOut
from cloud.domain import commands
from cloud.domain.access import STAFF, Principal

router = APIRouter(prefix="/api/v1", tags=["commands"])
Staff = Annotated[Principal, Depends(allow(*STAFF))]


class CommandIn(BaseModel):
    command: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    params: Annotated[dict[str, Any], Field(max_length=10)] = Field(default_factory=dict)
    #: seconds the command may wait for the gateway; default COMMUNITY_COMMAND_TTL_SECONDS
    ttl_seconds: Annotated[int, Field(ge=1, le=86_400)] | None = None


_DEVICE = """SELECT d.id, d.name, d.gateway_id, g.site_id, d.commands, d.announced, g.status AS gateway_status
             FROM devices d JOIN gateways g ON g.id = d.gateway_id WHERE d.id = %s"""


def _device(conn: Conn, who: Principal, device_id: int) -> dict:
    row = conn.execute(_DEVICE, (device_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"device {device_id} does not exist")
    return row


@router.post("/devices/{device_id}/commands", response_model=CommandOut, status_code=202)
def send_command(
    device_id: int, body: CommandIn, request: Request, conn: Conn, clock: ClockDep, who: Staff
) -> dict[str, Any]:
    """Send a command the device's profile defines; answers at once with the command `pending`.

    Follow it with GET /api/v1/commands/{id}: `succeeded`, `failed` or `rejected` (with the
    gateway's reason) or `expired` (no answer before `expires_at`).
    """
    device = _device(conn, who, device_id)
    ttl = body.ttl_seconds or request.app.state.settings.command_ttl_seconds
    stored = commands.create(
        conn,
        device=device,
        request=commands.Request(command=body.command, params=body.params, ttl_seconds=ttl),
        who=who,
        now=clock.now(),
    )
    conn.commit()  # before the publisher looks for it
    request.app.state.downlink.wake()
    return stored


@router.get("/devices/{device_id}/commands", response_model=list[CommandOut])
def device_commands(
    device_id: int,
    conn: Conn,
    who: Staff,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """The device's commands, newest first."""
    _device(conn, who, device_id)
    return commands.for_device(conn, device_id, limit=limit, offset=offset)


@router.get("/commands/{command_id}", response_model=CommandOut)
def get_command(command_id: UUID, conn: Conn, who: Staff) -> dict[str, Any]:
    row = commands.get(conn, command_id)
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"command {command_id} does not exist")
    return row
