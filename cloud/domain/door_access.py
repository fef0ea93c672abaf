"""Cards, time profiles, holidays and access rights: what a gateway's whitelist is made of.

A door is a gateway's door as its pushed configuration names it (`access.doors`), identified by
gateway id and door name. A right grants doors at the times of a time profile (or at any time)
to one person, to every resident of a building, or to every resident of the site (common areas);
who lives where is read from the units, so a new tenant gets the building's doors and a leaving
one loses them. Every change marks the
affected gateways for a whitelist rebuild in the same transaction.
"""

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain import audit, whitelist
from cloud.domain.access import Principal
from cloud.domain.errors import Refused


class AccessRefused(Refused, ValueError):
    """A card, right, time profile or holiday change that cannot be made, and why."""


def normalise_card(number: str) -> str:
    return number.strip().upper()


# --- cards -------------------------------------------------------------------------------------


def add_card(
    conn: psycopg.Connection,
    person_id: int,
    *,
    number: str,
    valid_from: datetime | None,
    valid_until: datetime | None,
    who: Principal,
    now: datetime,
) -> dict[str, Any]:
    number = normalise_card(number)
    if valid_from and valid_until and valid_until <= valid_from:
        raise AccessRefused(422, f"valid_until {valid_until.isoformat()} is not after valid_from")
    row = conn.execute(
        """INSERT INTO cards (person_id, number, valid_from, valid_until, created_at, created_by)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (number) DO NOTHING RETURNING *""",
        (person_id, number, valid_from, valid_until, now, who.actor),
    ).fetchone()
    if row is None:
        raise AccessRefused(409, f"card number {number} is already issued")
    audit.record(conn, actor=who, action="card_issued", entity="cards", entity_id=row["id"], now=now, after=row)
    whitelist.touch_person(conn, person_id)
    return row


def card_view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    if row["lost_at"] is not None:
        state = "lost"
    elif row["valid_until"] is not None and row["valid_until"] <= now:
        state = "expired"
    elif row["valid_from"] is not None and row["valid_from"] > now:
        state = "not_yet_valid"
    else:
        state = "valid"
    return {
        **{
            k: row[k]
            for k in ("id", "person_id", "number", "valid_from", "valid_until", "lost_at", "created_at", "created_by")
        },
        "state": state,
    }


def cards_of(conn: psycopg.Connection, person_id: int) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM cards WHERE person_id = %s ORDER BY id", (person_id,)).fetchall()


def card(conn: psycopg.Connection, card_id: int) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM cards WHERE id = %s", (card_id,)).fetchone()


def report_lost(conn: psycopg.Connection, card_id: int, *, who: Principal, now: datetime) -> dict[str, Any]:
    before = card(conn, card_id)
    assert before is not None
    row = conn.execute(
        "UPDATE cards SET lost_at = coalesce(lost_at, %s), lost_by = coalesce(lost_by, %s) WHERE id = %s RETURNING *",
        (now, who.actor, card_id),
    ).fetchone()
    assert row is not None
    audit.record(
        conn, actor=who, action="card_lost", entity="cards", entity_id=card_id, now=now, before=before, after=row
    )
    whitelist.touch_person(conn, row["person_id"])
    return row


def delete_card(conn: psycopg.Connection, card_id: int, *, who: Principal, now: datetime) -> None:
    row = conn.execute("DELETE FROM cards WHERE id = %s RETURNING *", (card_id,)).fetchone()
    if row is not None:
        audit.record(conn, actor=who, action="delete", entity="cards", entity_id=card_id, now=now, before=row)
        whitelist.touch_person(conn, row["person_id"])


# --- doors -------------------------------------------------------------------------------------


def doors(conn: psycopg.Connection, site_ids: list[str] | None) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT gateway_id, name, site_id, building, floor, room FROM doors
           WHERE %(all)s OR site_id = ANY(%(sites)s) ORDER BY site_id, gateway_id, name""",
        {"all": site_ids is None, "sites": site_ids or []},
    ).fetchall()


def check_doors(conn: psycopg.Connection, site_id: str, wanted: list[dict[str, str]]) -> None:
    """AccessRefused (422) naming the first door that is not a door of this site."""
    known = {(d["gateway_id"], d["name"]) for d in doors(conn, [site_id])}
    for i, door in enumerate(wanted):
        if (door["gateway_id"], door["door"]) not in known:
            raise AccessRefused(
                422,
                f"doors[{i}]: gateway {door['gateway_id']!r} has no door {door['door']!r} at site {site_id} "
                "(doors come from the gateway's pushed configuration, access.doors; GET /api/v1/doors lists them)",
            )


def building_entrances(conn: psycopg.Connection, person_id: int) -> list[dict[str, str]]:
    """The doors of the buildings a person lives in: doors whose location names the building's code."""
    rows = conn.execute(
        """SELECT DISTINCT d.gateway_id, d.name FROM unit_occupants uo JOIN units u ON u.id = uo.unit_id
           JOIN buildings b ON b.id = u.building_id
           JOIN doors d ON d.site_id = b.site_id AND d.building = b.code
           WHERE uo.person_id = %s ORDER BY 1, 2""",
        (person_id,),
    ).fetchall()
    return [{"gateway_id": r["gateway_id"], "door": r["name"]} for r in rows]


def doors_of_person(conn: psycopg.Connection, person_id: int) -> set[tuple[str, str]]:
    """Doors a person has a right on, directly or as a resident of a building a right names (only
    those on the floor of their unit when the right says `own_floor`)."""
    rows = conn.execute(
        """SELECT d->>'gateway_id' AS gateway_id, d->>'door' AS door
           FROM access_rights r, jsonb_array_elements(r.doors) d
           WHERE r.person_id = %(p)s
              OR r.building_id IN (SELECT u.building_id FROM unit_occupants uo JOIN units u ON u.id = uo.unit_id
                                   WHERE uo.person_id = %(p)s
                                     AND (NOT r.own_floor OR u.floor = (
                                         SELECT dd.floor FROM doors dd
                                         WHERE dd.gateway_id = d->>'gateway_id' AND dd.name = d->>'door')))
              OR (r.site_residents AND r.site_id IN (
                    SELECT b.site_id FROM unit_occupants uo JOIN units u ON u.id = uo.unit_id
                    JOIN buildings b ON b.id = u.building_id WHERE uo.person_id = %(p)s))""",
        {"p": person_id},
    ).fetchall()
    return {(r["gateway_id"], r["door"]) for r in rows}


# --- time profiles, holidays, rights -------------------------------------------------------------


def add_time_profile(
    conn: psycopg.Connection, values: dict[str, Any], *, who: Principal, now: datetime
) -> dict[str, Any]:
    row = conn.execute(
        """INSERT INTO time_profiles (site_id, name, weekdays, segments, on_holidays, created_at)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
        (values["site_id"], values["name"], values["weekdays"], Jsonb(values["segments"]), values["on_holidays"], now),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=who, action="create", entity="time_profiles", entity_id=row["id"], now=now, after=row)
    whitelist.touch_sites(conn, [values["site_id"]])
    return row


def delete_time_profile(conn: psycopg.Connection, profile_id: int, *, who: Principal, now: datetime) -> None:
    used = conn.execute("SELECT id FROM access_rights WHERE time_profile_id = %s LIMIT 1", (profile_id,)).fetchone()
    if used is not None:
        raise AccessRefused(409, f"time profile {profile_id} is used by access right {used['id']}; delete that first")
    row = conn.execute("DELETE FROM time_profiles WHERE id = %s RETURNING *", (profile_id,)).fetchone()
    if row is not None:
        audit.record(
            conn, actor=who, action="delete", entity="time_profiles", entity_id=profile_id, now=now, before=row
        )
        whitelist.touch_sites(conn, [row["site_id"]])


def set_holiday(conn: psycopg.Connection, site_id: str, day: Any, name: str, *, who: Principal, now: datetime) -> dict:
    row = conn.execute(
        """INSERT INTO holidays (site_id, day, name) VALUES (%s, %s, %s)
           ON CONFLICT (site_id, day) DO UPDATE SET name = EXCLUDED.name RETURNING *""",
        (site_id, day, name),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=who, action="set", entity="holidays", entity_id=f"{site_id}:{day}", now=now, after=row)
    whitelist.touch_sites(conn, [site_id])
    return row


def delete_holiday(conn: psycopg.Connection, site_id: str, day: Any, *, who: Principal, now: datetime) -> bool:
    row = conn.execute("DELETE FROM holidays WHERE site_id = %s AND day = %s RETURNING *", (site_id, day)).fetchone()
    if row is None:
        return False
    audit.record(conn, actor=who, action="delete", entity="holidays", entity_id=f"{site_id}:{day}", now=now, before=row)
    whitelist.touch_sites(conn, [site_id])
    return True


def add_right(conn: psycopg.Connection, values: dict[str, Any], *, who: Principal, now: datetime) -> dict[str, Any]:
    site = values["site_id"]
    check_doors(conn, site, values["doors"])
    profile = values.get("time_profile_id")
    if profile is not None:
        found = conn.execute("SELECT site_id FROM time_profiles WHERE id = %s", (profile,)).fetchone()
        if found is None or found["site_id"] != site:
            raise AccessRefused(422, f"time_profile_id: no time profile {profile} at site {site}")
    if values.get("building_id") is not None:
        found = conn.execute("SELECT site_id FROM buildings WHERE id = %s", (values["building_id"],)).fetchone()
        if found is None or found["site_id"] != site:
            raise AccessRefused(422, f"building_id: no building {values['building_id']} at site {site}")
    if values.get("own_floor"):
        if values.get("building_id") is None:
            raise AccessRefused(
                422, "own_floor: gives a building's residents the doors of their own floor; name building_id"
            )
        no_floor = [
            d["door"]
            for d in values["doors"]
            if (
                door := conn.execute(
                    "SELECT floor FROM doors WHERE gateway_id = %s AND name = %s", (d["gateway_id"], d["door"])
                ).fetchone()
            )
            is None
            or not door["floor"]
        ]
        if no_floor:
            raise AccessRefused(
                422, f"own_floor: doors without a floor in their location: {', '.join(no_floor)} (set location.floor)"
            )
    row = conn.execute(
        """INSERT INTO access_rights (site_id, person_id, building_id, site_residents, own_floor, time_profile_id,
                                      doors, created_at, created_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (
            site,
            values.get("person_id"),
            values.get("building_id"),
            bool(values.get("site_residents")),
            bool(values.get("own_floor")),
            profile,
            Jsonb(values["doors"]),
            now,
            who.actor,
        ),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=who, action="create", entity="access_rights", entity_id=row["id"], now=now, after=row)
    whitelist.touch_sites(conn, [site])
    return row


def delete_right(conn: psycopg.Connection, right_id: int, *, who: Principal, now: datetime) -> None:
    row = conn.execute("DELETE FROM access_rights WHERE id = %s RETURNING *", (right_id,)).fetchone()
    if row is not None:
        audit.record(conn, actor=who, action="delete", entity="access_rights", entity_id=right_id, now=now, before=row)
        whitelist.touch_sites(conn, [row["site_id"]])
