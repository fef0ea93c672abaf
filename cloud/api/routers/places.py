"""Sites, buildings and units: read by staff of the site, written by its managers."""

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, PrincipalDep, allow
from cloud.api.errors import ApiError
from cloud.domain import records, whitelist
from cloud.domain.access import MANAGEMENT, STAFF, Principal, Role
from contract.common import SiteInfo, TimeZoneName

router = APIRouter(prefix="/api/v1", tags=["places"])

Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class BuildingIn(BaseModel):
    site_id: str = Field(max_length=63)
    code: Code
    name: Name


class BuildingPatch(BaseModel):
    code: Code | None = None
    name: Name | None = None


class BuildingOut(BaseModel):
    id: int
    site_id: str
    code: str
    name: str


class UnitIn(BaseModel):
    building_id: int
    number: Code
    floor: Annotated[str, Field(max_length=20)] | None = None
    area_m2: Annotated[float, Field(gt=0, lt=100_000)] | None = None


class UnitPatch(BaseModel):
    number: Code | None = None
    floor: Annotated[str, Field(max_length=20)] | None = None
    area_m2: Annotated[float, Field(gt=0, lt=100_000)] | None = None


class UnitOut(BaseModel):
    id: int
    building_id: int
    site_id: str
    number: str
    floor: str | None
    area_m2: float | None


class SiteOut(BaseModel):
    id: str
    name: str
    timezone: str


class SitePatch(BaseModel):
    name: Name | None = None
    timezone: TimeZoneName | None = None


def _building(conn: psycopg.Connection, who: Principal, building_id: int) -> dict:
    row = records.fetch(conn, "buildings", building_id)
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"building {building_id} does not exist")
    return row


def _unit(conn: psycopg.Connection, who: Principal, unit_id: int) -> dict:
    row = conn.execute(
        "SELECT u.*, b.site_id FROM units u JOIN buildings b ON b.id = u.building_id WHERE u.id = %s", (unit_id,)
    ).fetchone()
    if row is None or not (who.reaches_site(row["site_id"]) and (who.role != Role.RESIDENT or unit_id in who.unit_ids)):
        raise ApiError(404, f"unit {unit_id} does not exist")
    return row


@router.post("/sites", response_model=SiteOut, status_code=201)
def create_site(
    body: SiteInfo, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(Role.ADMIN))]
) -> dict:
    """Register a site (an estate, a tower, a park) with its time zone."""
    if records.fetch(conn, "sites", body.id):
        raise ApiError(409, f"site {body.id} already exists")
    row = records.insert(conn, "sites", body.model_dump(), actor=who, now=clock.now())
    return row


@router.patch("/sites/{site_id}", response_model=SiteOut)
def update_site(
    site_id: str, body: SitePatch, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> dict:
    if records.fetch(conn, "sites", site_id) is None or not who.reaches_site(site_id):
        raise ApiError(404, f"site {site_id} does not exist")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    row = records.update(conn, "sites", site_id, changes, columns=("name", "timezone"), actor=who, now=clock.now())
    if "timezone" in changes:
        whitelist.touch_sites(conn, [site_id])  # door time profiles are in the site's local time
    return row


@router.get("/buildings", response_model=list[BuildingOut])
def list_buildings(
    conn: Conn, who: PrincipalDep, site: Annotated[str | None, Query(max_length=63)] = None
) -> list[dict]:
    if who.role == Role.RESIDENT:
        return conn.execute(
            """SELECT DISTINCT b.* FROM buildings b JOIN units u ON u.building_id = b.id
               WHERE u.id = ANY(%s) ORDER BY b.site_id, b.code""",
            (sorted(who.unit_ids),),
        ).fetchall()
    return conn.execute(
        """SELECT * FROM buildings WHERE (%(all)s OR site_id = ANY(%(sites)s))
             AND (%(site)s::text IS NULL OR site_id = %(site)s) ORDER BY site_id, code""",
        {"all": who.site_ids is None, "sites": who.site_list() or [], "site": site},
    ).fetchall()


@router.post("/buildings", response_model=BuildingOut, status_code=201)
def create_building(
    body: BuildingIn, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> dict:
    if records.fetch(conn, "sites", body.site_id) is None or not who.reaches_site(body.site_id):
        raise ApiError(404, f"site {body.site_id} does not exist")
    if conn.execute("SELECT 1 FROM buildings WHERE site_id = %s AND code = %s", (body.site_id, body.code)).fetchone():
        raise ApiError(409, f"site {body.site_id} already has a building {body.code}")
    return records.insert(conn, "buildings", body.model_dump(), actor=who, now=clock.now())


@router.patch("/buildings/{building_id}", response_model=BuildingOut)
def update_building(
    building_id: int,
    body: BuildingPatch,
    conn: Conn,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*MANAGEMENT))],
) -> dict:
    before = _building(conn, who, building_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    try:
        with conn.transaction():
            return records.update(
                conn,
                "buildings",
                building_id,
                changes,
                columns=("code", "name"),
                actor=who,
                now=clock.now(),
                before=before,
            )
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, f"the site already has a building {body.code}") from None


@router.delete("/buildings/{building_id}", status_code=204)
def delete_building(
    building_id: int, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> None:
    _building(conn, who, building_id)
    if conn.execute("SELECT 1 FROM units WHERE building_id = %s LIMIT 1", (building_id,)).fetchone():
        raise ApiError(409, f"building {building_id} still has units; remove them first")
    records.delete(conn, "buildings", building_id, actor=who, now=clock.now())


@router.get("/units", response_model=list[UnitOut])
def list_units(
    conn: Conn,
    who: Annotated[Principal, Depends(allow(*STAFF, Role.RESIDENT))],
    building_id: int | None = None,
    site: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Units of the buildings within reach (a resident: their own units)."""
    return conn.execute(
        """SELECT u.*, b.site_id FROM units u JOIN buildings b ON b.id = u.building_id
           WHERE (%(all)s OR b.site_id = ANY(%(sites)s))
             AND (NOT %(resident)s OR u.id = ANY(%(units)s))
             AND (%(building)s::bigint IS NULL OR u.building_id = %(building)s)
             AND (%(site)s::text IS NULL OR b.site_id = %(site)s)
           ORDER BY b.site_id, b.code, u.number LIMIT %(limit)s OFFSET %(offset)s""",
        {
            "all": who.site_ids is None,
            "sites": who.site_list() or [],
            "resident": who.role == Role.RESIDENT,
            "units": sorted(who.unit_ids),
            "building": building_id,
            "site": site,
            "limit": limit,
            "offset": offset,
        },
    ).fetchall()


@router.get("/units/{unit_id}", response_model=UnitOut)
def get_unit(unit_id: int, conn: Conn, who: Annotated[Principal, Depends(allow(*STAFF, Role.RESIDENT))]) -> dict:
    return _unit(conn, who, unit_id)


@router.post("/units", response_model=UnitOut, status_code=201)
def create_unit(
    body: UnitIn, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> dict:
    building = _building(conn, who, body.building_id)
    if conn.execute(
        "SELECT 1 FROM units WHERE building_id = %s AND number = %s", (body.building_id, body.number)
    ).fetchone():
        raise ApiError(409, f"building {building['code']} already has a unit {body.number}")
    row = records.insert(conn, "units", body.model_dump(), actor=who, now=clock.now())
    return {**row, "site_id": building["site_id"]}


@router.patch("/units/{unit_id}", response_model=UnitOut)
def update_unit(
    unit_id: int, body: UnitPatch, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> dict:
    before = _unit(conn, who, unit_id)
    site_id = before.pop("site_id")
    changes = body.model_dump(exclude_unset=True)
    try:
        with conn.transaction():
            row = records.update(
                conn,
                "units",
                unit_id,
                changes,
                columns=("number", "floor", "area_m2"),
                actor=who,
                now=clock.now(),
                before=before,
            )
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, f"the building already has a unit {body.number}") from None
    return {**row, "site_id": site_id}


@router.delete("/units/{unit_id}", status_code=204)
def delete_unit(
    unit_id: int, conn: Conn, clock: ClockDep, who: Annotated[Principal, Depends(allow(*MANAGEMENT))]
) -> None:
    _unit(conn, who, unit_id)
    if conn.execute("SELECT 1 FROM tickets WHERE unit_id = %s LIMIT 1", (unit_id,)).fetchone():
        raise ApiError(409, f"unit {unit_id} has tickets; it stays for their history")
    conn.execute("DELETE FROM unit_occupants WHERE unit_id = %s", (unit_id,))
    records.delete(conn, "units", unit_id, actor=who, now=clock.now())
