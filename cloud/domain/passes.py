"""Visitor passes: a resident lets a guest in through some doors, within a time window, a number of times.

The answer to the creation shows the 6-digit PIN and the QR token once; only a random salt and
`contract.access.hash_secret(salt, secret)` of each are kept, and that is what gateways get. A
PIN is drawn again when it would open another active pass of the site (gateways could not tell
the two apart). Every use is an access event with the pass id, logged against the host; the
cloud counts uses down from the events and rebuilds the whitelists, so another gateway with the
same pass learns the new count.
"""

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain import audit, whitelist
from cloud.domain.access import Principal
from cloud.domain.door_access import AccessRefused, building_entrances, check_doors, doors_of_person
from contract.access import hash_secret


def _unique_pin(conn: psycopg.Connection, site_id: str, now: datetime) -> str:
    active = conn.execute(
        """SELECT salt, pin_hash FROM visitor_passes
           WHERE site_id = %s AND revoked_at IS NULL AND valid_until > %s AND uses_left > 0""",
        (site_id, now),
    ).fetchall()
    for _ in range(100):
        pin = f"{secrets.randbelow(1_000_000):06d}"
        if all(hash_secret(p["salt"], pin) != p["pin_hash"] for p in active):
            return pin
    raise AccessRefused(409, "no free PIN found for this site; revoke passes no longer needed")


def create(
    conn: psycopg.Connection,
    *,
    site_id: str,
    host_person_id: int,
    guest_name: str,
    doors: list[dict[str, str]] | None,
    valid_from: datetime,
    valid_until: datetime,
    uses: int,
    max_days: int,
    restrict_to_host_doors: bool,
    who: Principal,
    now: datetime,
) -> dict[str, Any]:
    """Store a pass; the returned row carries `pin` and `qr_token` in clear (shown once, never stored)."""
    if valid_until <= valid_from:
        raise AccessRefused(422, "valid_until: must be after valid_from")
    if valid_until <= now:
        raise AccessRefused(422, "valid_until: already past")
    if valid_until - valid_from > timedelta(days=max_days):
        raise AccessRefused(422, f"valid_until: a pass lasts at most {max_days} days")
    if doors is None:
        doors = building_entrances(conn, host_person_id)
        if not doors:
            raise AccessRefused(422, "doors: the host's buildings have no doors on any gateway; name the doors")
    else:
        check_doors(conn, site_id, doors)
        if restrict_to_host_doors:
            mine = doors_of_person(conn, host_person_id) | {
                (d["gateway_id"], d["door"]) for d in building_entrances(conn, host_person_id)
            }
            for i, d in enumerate(doors):
                if (d["gateway_id"], d["door"]) not in mine:
                    raise AccessRefused(
                        403, f"doors[{i}]: you have no right on door {d['door']!r} of {d['gateway_id']}"
                    )
    salt = secrets.token_hex(16)
    pin = _unique_pin(conn, site_id, now)
    qr_token = secrets.token_urlsafe(24)
    row = conn.execute(
        """INSERT INTO visitor_passes (id, site_id, host_person_id, guest_name, doors, valid_from, valid_until,
                                       uses_total, uses_left, salt, pin_hash, qr_hash, created_at, created_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (
            uuid.uuid4(),
            site_id,
            host_person_id,
            guest_name,
            Jsonb(doors),
            valid_from,
            valid_until,
            uses,
            uses,
            salt,
            hash_secret(salt, pin),
            hash_secret(salt, qr_token),
            now,
            who.actor,
        ),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=who, action="create", entity="visitor_passes", entity_id=row["id"], now=now, after=row)
    whitelist.touch_sites(conn, [site_id])
    return {**row, "pin": pin, "qr_token": qr_token}


def view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in (
            "id",
            "site_id",
            "host_person_id",
            "guest_name",
            "doors",
            "valid_from",
            "valid_until",
            "uses_total",
            "uses_left",
            "created_at",
            "created_by",
            "revoked_at",
        )
    }


def revoke(conn: psycopg.Connection, pass_id: uuid.UUID, *, who: Principal, now: datetime) -> None:
    row = conn.execute(
        "UPDATE visitor_passes SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s RETURNING *", (now, pass_id)
    ).fetchone()
    if row is not None:
        audit.record(conn, actor=who, action="revoke", entity="visitor_passes", entity_id=pass_id, now=now, after=row)
        whitelist.touch_sites(conn, [row["site_id"]])


def record_use(conn: psycopg.Connection, pass_id: uuid.UUID) -> dict[str, Any] | None:
    """One granted use of the pass (from an access event); the pass's site is marked for a rebuild."""
    row = conn.execute(
        """UPDATE visitor_passes SET uses_left = greatest(uses_left - 1, 0) WHERE id = %s
           RETURNING site_id, host_person_id""",
        (pass_id,),
    ).fetchone()
    if row is not None:
        whitelist.touch_sites(conn, [row["site_id"]])
    return row
