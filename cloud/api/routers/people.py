"""Residents and staff as people: registration, lookup by phone or ID number, the units they live in."""

from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, EmailStr, Field

from cloud.api.deps import CipherDep, ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.domain import audit, people, whitelist
from cloud.domain.access import MANAGEMENT, OFFICE, Principal, Role

router = APIRouter(prefix="/api/v1/people", tags=["people"])

Phone = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^\+?[0-9][0-9 ()./-]*$")]
IdNumber = Annotated[str, Field(min_length=4, max_length=32, pattern=r"^[A-Za-z0-9 -]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Relation = Literal["owner", "tenant", "family"]


class Occupancy(BaseModel):
    unit_id: int
    relation: Relation


class ResidentIn(BaseModel):
    full_name: Name
    phone: Phone | None = None
    id_number: IdNumber | None = None
    email: EmailStr | None = None
    units: list[Occupancy] = Field(min_length=1, max_length=50)


class PersonPatch(BaseModel):
    full_name: Name | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None
    email: EmailStr | None = None


class UnitLink(BaseModel):
    unit_id: int
    relation: str


class PersonOut(BaseModel):
    id: int
    kind: str
    full_name: str
    phone: str | None
    id_number: str | None
    email: str | None
    units: list[UnitLink]


def _unit_in_reach(conn: psycopg.Connection, who: Principal, unit_id: int) -> None:
    row = conn.execute(
        "SELECT b.site_id FROM units u JOIN buildings b ON b.id = u.building_id WHERE u.id = %s", (unit_id,)
    ).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"unit {unit_id} does not exist")


@router.get("", response_model=list[PersonOut])
def search_people(
    conn: Conn,
    cipher: CipherDep,
    who: Annotated[Principal, Depends(allow(*OFFICE))],
    phone: Annotated[str | None, Query(max_length=32)] = None,
    id_number: Annotated[str | None, Query(max_length=32)] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    kind: Literal["resident", "staff"] | None = None,
    unit_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """People within reach, personal data masked. `phone`, `id_number` and `email` find by exact value."""
    rows = people.search(
        conn,
        who,
        cipher,
        phone=phone,
        id_number=id_number,
        email=email,
        name=name,
        kind=kind,
        unit_id=unit_id,
        limit=limit,
        offset=offset,
    )
    return [people.view(r, cipher, masked=True) for r in rows]


@router.get("/{person_id}", response_model=PersonOut)
def get_person(
    person_id: int,
    conn: Conn,
    cipher: CipherDep,
    who: Annotated[Principal, Depends(allow(*OFFICE, Role.TECHNICIAN, Role.GUARD, Role.RESIDENT))],
) -> dict:
    """One person in full (the office, or the person themselves); others see it masked."""
    if who.role == Role.RESIDENT and person_id != who.person_id:
        raise ApiError(404, f"person {person_id} does not exist")
    row = people.get(conn, who, person_id)
    if row is None:
        raise ApiError(404, f"person {person_id} does not exist")
    full = who.role in OFFICE or person_id == who.person_id
    return people.view(row, cipher, masked=not full)


@router.post("", response_model=PersonOut, status_code=201)
def register_resident(
    body: ResidentIn, conn: Conn, cipher: CipherDep, clock: ClockDep, who: Annotated[Principal, Depends(allow(*OFFICE))]
) -> dict:
    """Register a resident or owner with the units they live in."""
    now = clock.now()
    for link in body.units:
        _unit_in_reach(conn, who, link.unit_id)
    data = body.model_dump(include={"phone", "id_number", "email"})
    row = people.create(conn, cipher, kind="resident", full_name=body.full_name, data=data, actor=who, now=now)
    for link in body.units:
        people.set_occupancy(conn, row["id"], link.unit_id, link.relation, actor=who, now=now)
    found = people.get(conn, who, row["id"])
    assert found is not None
    return people.view(found, cipher, masked=False)


@router.patch("/{person_id}", response_model=PersonOut)
def update_person(
    person_id: int,
    body: PersonPatch,
    conn: Conn,
    cipher: CipherDep,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*OFFICE))],
) -> dict:
    if people.get(conn, who, person_id) is None:
        raise ApiError(404, f"person {person_id} does not exist")
    people.update(conn, cipher, person_id, body.model_dump(exclude_unset=True), actor=who, now=clock.now())
    if body.full_name is not None:
        whitelist.touch_person(conn, person_id)  # the label at the door
    found = people.get(conn, who, person_id)
    assert found is not None
    return people.view(found, cipher, masked=False)


@router.put("/{person_id}/units/{unit_id}", status_code=204)
def link_unit(
    person_id: int,
    unit_id: int,
    relation: Annotated[Relation, Query()],
    request: Request,
    conn: Conn,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*OFFICE))],
) -> None:
    """Record that a person lives in a unit (owner, tenant or family); they get their building's doors."""
    if people.get(conn, who, person_id) is None:
        raise ApiError(404, f"person {person_id} does not exist")
    _unit_in_reach(conn, who, unit_id)
    people.set_occupancy(conn, person_id, unit_id, relation, actor=who, now=clock.now())
    whitelist.touch_person(conn, person_id)
    conn.commit()
    request.app.state.downlink.wake()


@router.delete("/{person_id}/units/{unit_id}", status_code=204)
def unlink_unit(
    person_id: int,
    unit_id: int,
    request: Request,
    conn: Conn,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*OFFICE))],
) -> None:
    """A person moves out of a unit; they lose their building's doors (with the next whitelist update)."""
    if people.get(conn, who, person_id) is None:
        raise ApiError(404, f"person {person_id} does not exist")
    _unit_in_reach(conn, who, unit_id)
    sites = whitelist.sites_of_person(conn, person_id)  # before the link goes
    if not people.remove_occupancy(conn, person_id, unit_id, actor=who, now=clock.now()):
        raise ApiError(404, f"person {person_id} does not live in unit {unit_id}")
    whitelist.touch_sites(conn, sites)
    conn.commit()
    request.app.state.downlink.wake()


@router.delete("/{person_id}", status_code=204)
def delete_person(
    person_id: int,
    conn: Conn,
    cipher: CipherDep,
    clock: ClockDep,
    who: Annotated[Principal, Depends(allow(*MANAGEMENT))],
) -> None:
    """Remove a person who has no login and no tickets (their personal data goes with them)."""
    row = people.get(conn, who, person_id)
    if row is None:
        raise ApiError(404, f"person {person_id} does not exist")
    if conn.execute("SELECT 1 FROM users WHERE person_id = %s", (person_id,)).fetchone():
        raise ApiError(409, f"person {person_id} has a login; deactivate the user instead")
    if conn.execute("SELECT 1 FROM tickets WHERE complainant_id = %s LIMIT 1", (person_id,)).fetchone():
        raise ApiError(409, f"person {person_id} filed tickets; they stay for the record")
    whitelist.touch_person(conn, person_id)  # before the cascade takes their cards, faces and rights
    conn.execute("DELETE FROM people WHERE id = %s", (person_id,))
    audit.record(
        conn,
        actor=who,
        action="delete",
        entity="people",
        entity_id=person_id,
        now=clock.now(),
        before=people.view(row, cipher, masked=True),
    )
