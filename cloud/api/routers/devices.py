import re
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.api.schemas import Bucket, DeviceOut, TelemetryOut
from cloud.domain.access import STAFF, Principal
from cloud.storage import telemetry

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
Staff = Annotated[Principal, Depends(allow(*STAFF))]

_DEVICE_SQL = """
    SELECT d.id, d.name, g.site_id, d.gateway_id, g.status AS gateway_status, d.profile, d.protocol, d.model,
           d.building, d.floor, d.room, d.online, d.online_changed_at, d.last_seen_at, d.announced,
           d.metrics, d.commands, d.last_values
    FROM devices d JOIN gateways g ON g.id = d.gateway_id
"""

MAX_BUCKETS = 10_000
_BUCKET = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AUTO_STEPS = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800]


def _device_out(row: dict) -> DeviceOut:
    units = {m.get("name"): m.get("unit") for m in row["metrics"]}
    last = {
        k: {"value": v.get("value"), "ts": v.get("ts"), "unit": units.get(k)} for k, v in row["last_values"].items()
    }
    return DeviceOut(**{**row, "last_values": last})


def parse_bucket(text: str) -> timedelta:
    match = _BUCKET.match(text)
    if not match or int(match.group(1)) == 0:
        raise ApiError(422, f"bucket: {text!r} is not a width like 30s, 5m, 1h or 1d")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@router.get("", response_model=list[DeviceOut])
def list_devices(
    conn: Conn,
    who: Staff,
    site: Annotated[str | None, Query(max_length=63)] = None,
    gateway: Annotated[str | None, Query(max_length=63)] = None,
    online: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeviceOut]:
    """Devices with their online state and last values (refreshed about once a second)."""
    rows = conn.execute(
        _DEVICE_SQL
        + """WHERE (%(all)s OR g.site_id = ANY(%(sites)s))
               AND (%(site)s::text IS NULL OR g.site_id = %(site)s)
               AND (%(gateway)s::text IS NULL OR d.gateway_id = %(gateway)s)
               AND (%(online)s::boolean IS NULL OR d.online = %(online)s)
             ORDER BY g.site_id, d.gateway_id, d.name LIMIT %(limit)s OFFSET %(offset)s""",
        {
            "all": who.site_ids is None,
            "sites": who.site_list() or [],
            "site": site,
            "gateway": gateway,
            "online": online,
            "limit": limit,
            "offset": offset,
        },
    ).fetchall()
    return [_device_out(r) for r in rows]


@router.get("/{device_id}", response_model=DeviceOut)
def get_device(device_id: int, conn: Conn, who: Staff) -> DeviceOut:
    row = conn.execute(_DEVICE_SQL + "WHERE d.id = %s", (device_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"device {device_id} does not exist")
    return _device_out(row)


@router.get("/{device_id}/telemetry", response_model=TelemetryOut)
def device_telemetry(
    device_id: int,
    conn: Conn,
    clock: ClockDep,
    who: Staff,
    metric: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    bucket: Annotated[
        str | None, Query(description="bucket width: 30s, 5m, 1h, 1d; default picks ~200 buckets")
    ] = None,
) -> TelemetryOut:
    """Time-bucketed min, max and mean of one metric of one device, from start (inclusive) to end."""
    device = conn.execute(
        "SELECT d.id, d.metrics, g.site_id FROM devices d JOIN gateways g ON g.id = d.gateway_id WHERE d.id = %s",
        (device_id,),
    ).fetchone()
    if device is None or not who.reaches_site(device["site_id"]):
        raise ApiError(404, f"device {device_id} does not exist")
    units = {m.get("name"): m.get("unit") for m in device["metrics"]}
    if units and metric not in units:
        raise ApiError(404, f"device {device_id} has no metric {metric!r} (it has: {', '.join(sorted(units))})")
    end_ts: datetime = end or clock.now()
    start_ts: datetime = start or end_ts - timedelta(hours=1)
    if start_ts >= end_ts:
        raise ApiError(422, "start must be before end")
    span = (end_ts - start_ts).total_seconds()
    if bucket is None:
        width = timedelta(seconds=next((s for s in _AUTO_STEPS if span / s <= 300), _AUTO_STEPS[-1]))
    else:
        width = parse_bucket(bucket)
    if span / width.total_seconds() > MAX_BUCKETS:
        raise ApiError(422, f"bucket: {bucket} over that range gives more than {MAX_BUCKETS} buckets; widen it")
    rows = telemetry.bucketed(conn, device_id=device_id, metric=metric, start=start_ts, end=end_ts, bucket=width)
    return TelemetryOut(
        device_id=device_id,
        metric=metric,
        unit=units.get(metric),
        start=start_ts,
        end=end_ts,
        bucket_seconds=int(width.total_seconds()),
        buckets=[Bucket(**r) for r in rows],
    )
