"""The cameras' latest frames, as the ingest keeps them (cloud/ingest/frames.py), for the guard console."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.domain.access import OFFICE, Principal, Role
from cloud.ingest.frames import frame_path

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])
Watchers = Annotated[Principal, Depends(allow(*OFFICE, Role.GUARD))]


class CameraOut(BaseModel):
    gateway_id: str
    site_id: str
    camera: str
    #: when the camera took its latest frame
    taken_at: datetime
    age_seconds: float


@router.get("", response_model=list[CameraOut])
def list_cameras(request: Request, conn: Conn, clock: ClockDep, who: Watchers) -> list[CameraOut]:
    """Cameras that sent a frame, with when, for the gateways within reach (sorted by site, gateway, camera)."""
    directory = request.app.state.settings.frames_dir
    found: dict[str, list[tuple[str, float]]] = {}
    if directory.is_dir():
        for gateway_dir in directory.iterdir():
            if gateway_dir.is_dir():
                for frame in gateway_dir.glob("*.jpg"):
                    found.setdefault(gateway_dir.name, []).append((frame.stem, frame.stat().st_mtime))
    if not found:
        return []
    rows = conn.execute("SELECT id, site_id FROM gateways WHERE id = ANY(%s)", (list(found),)).fetchall()
    now = clock.now()
    out = []
    for row in rows:
        if not who.reaches_site(row["site_id"]):
            continue
        for camera, mtime in found[row["id"]]:
            taken = datetime.fromtimestamp(mtime, UTC)
            out.append(
                CameraOut(
                    gateway_id=row["id"],
                    site_id=row["site_id"],
                    camera=camera,
                    taken_at=taken,
                    age_seconds=round((now - taken).total_seconds(), 1),
                )
            )
    return sorted(out, key=lambda c: (c.site_id, c.gateway_id, c.camera))


@router.get("/{gateway_id}/{camera}/frame", response_class=FileResponse)
def latest_frame(gateway_id: str, camera: str, request: Request, conn: Conn, who: Watchers) -> FileResponse:
    """The camera's latest JPEG (never cached: the console asks again every second)."""
    gateway = conn.execute("SELECT site_id FROM gateways WHERE id = %s", (gateway_id,)).fetchone()
    path = frame_path(request.app.state.settings.frames_dir, gateway_id, camera)
    if gateway is None or not who.reaches_site(gateway["site_id"]) or path is None or not path.exists():
        raise ApiError(404, f"camera {camera} of gateway {gateway_id} has sent no frame")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
