"""Per-gateway whitelists: built from people, cards, faces, rights and passes; versioned; sent as deltas.

A change anywhere (people, cards, consent, faces, rights, time profiles, holidays, passes, a
gateway's doors) marks the gateways it may affect `dirty`, in the same transaction. The API's
downlink thread (cloud/api/downlink.py) rebuilds dirty gateways: it builds the whitelist for the
gateway's doors afresh, compares a digest of every entry with the digests of the version last
built, and when anything differs makes the next version as a delta against it (upserts of
changed people and passes, removals, time profiles and holidays when they changed). A gateway
that is new (no version yet) or asked for the full whitelist (a WhitelistRequest on the control
lane sets `full_requested`) gets a full one. Messages are queued in `whitelist_messages`
(encrypted, since they carry face encodings) and published QoS 1, not retained.

Who is on a gateway's whitelist: every person with a right on one of its doors (directly, as a
resident of a building a right names, or as a resident of the site for common areas) who holds a
card or an enrolled face, labelled "Sun M." rather than by the whole name; their cards (lost ones
as `blocked`), their face encodings only while their consent stands, their rights on this
gateway's doors; every visitor pass for one of its doors that is not revoked, not expired and has
uses left; the site's time profiles, holidays and time zone.
"""

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cloud.security.biometric import FaceCipher
from contract.access import (
    AccessRight,
    Card,
    TimeProfile,
    TimeSegment,
    WhitelistMessage,
    WhitelistPass,
    WhitelistPerson,
)
from contract.ids import uuid7

log = logging.getLogger(__name__)

MAX_CARDS = 20
MAX_FACES = 10


# --- what changed: mark gateways dirty ---------------------------------------------------------


def touch_gateway(conn: psycopg.Connection, gateway_id: str) -> None:
    conn.execute(
        """INSERT INTO whitelist_state (gateway_id, dirty) VALUES (%s, true)
           ON CONFLICT (gateway_id) DO UPDATE SET dirty = true""",
        (gateway_id,),
    )


def touch_sites(conn: psycopg.Connection, site_ids: list[str] | None) -> None:
    """Mark every gateway with doors (or a whitelist already) at these sites (None: all sites) for a rebuild."""
    conn.execute(
        """INSERT INTO whitelist_state (gateway_id, dirty)
           SELECT g.id, true FROM gateways g
           WHERE (%(all)s OR g.site_id = ANY(%(sites)s))
             AND (EXISTS (SELECT 1 FROM doors d WHERE d.gateway_id = g.id)
                  OR EXISTS (SELECT 1 FROM whitelist_state w WHERE w.gateway_id = g.id))
           ON CONFLICT (gateway_id) DO UPDATE SET dirty = true""",
        {"all": site_ids is None, "sites": site_ids or []},
    )


def sites_of_person(conn: psycopg.Connection, person_id: int) -> list[str]:
    rows = conn.execute(
        """SELECT site_id FROM access_rights WHERE person_id = %(p)s
           UNION SELECT b.site_id FROM unit_occupants uo JOIN units u ON u.id = uo.unit_id
                 JOIN buildings b ON b.id = u.building_id WHERE uo.person_id = %(p)s
           UNION SELECT site_id FROM staff_sites WHERE person_id = %(p)s
           UNION SELECT site_id FROM visitor_passes WHERE host_person_id = %(p)s""",
        {"p": person_id},
    ).fetchall()
    return [r["site_id"] for r in rows]


def touch_person(conn: psycopg.Connection, person_id: int) -> None:
    sites = sites_of_person(conn, person_id)
    if sites:
        touch_sites(conn, sites)


def request_full(conn: psycopg.Connection, gateway_id: str) -> None:
    """The gateway asked for the full whitelist (it lacks a delta's base, or starts empty)."""
    conn.execute(
        """INSERT INTO whitelist_state (gateway_id, dirty, full_requested) VALUES (%s, true, true)
           ON CONFLICT (gateway_id) DO UPDATE SET dirty = true, full_requested = true""",
        (gateway_id,),
    )


# --- doors, learned from pushed gateway configurations ------------------------------------------


def sync_doors(conn: psycopg.Connection, gateway_id: str, site_id: str, access: dict[str, Any] | None) -> None:
    """Replace the gateway's doors with those of its configuration's `access.doors`; mark it for a rebuild."""
    doors = (access or {}).get("doors") or []
    before = conn.execute("SELECT count(*) AS n FROM doors WHERE gateway_id = %s", (gateway_id,)).fetchone()
    conn.execute("DELETE FROM doors WHERE gateway_id = %s", (gateway_id,))
    for door in doors:
        location = door.get("location") or {}
        conn.execute(
            "INSERT INTO doors (gateway_id, name, site_id, building, floor, room) VALUES (%s, %s, %s, %s, %s, %s)",
            (gateway_id, door["name"], site_id, location.get("building"), location.get("floor"), location.get("room")),
        )
    if doors or (before and before["n"]):
        touch_gateway(conn, gateway_id)


# --- building ---------------------------------------------------------------------------------


def door_label(full_name: str) -> str:
    """What the door and the guard's screen show of a person: "Sun M.", not the whole legal name."""
    words = full_name.split()
    if len(words) > 1:
        return f"{words[0]} {''.join(w[0] for w in words[1:])}."[:500]
    name = full_name.strip()
    return (name[:1] + "*" * (len(name) - 1))[:500] if len(name) > 2 else name


def time_profile_key(profile_id: int) -> str:
    return f"tp_{profile_id}"


def build(conn: psycopg.Connection, gateway_id: str, now: datetime, cipher: FaceCipher) -> dict[str, Any]:
    """The whole whitelist of one gateway, as the fields of a full WhitelistMessage (JSON-ready)."""
    gateway = conn.execute(
        "SELECT g.id, g.site_id, s.timezone FROM gateways g JOIN sites s ON s.id = g.site_id WHERE g.id = %s",
        (gateway_id,),
    ).fetchone()
    if gateway is None:
        raise LookupError(f"gateway {gateway_id} does not exist")
    site = gateway["site_id"]
    door_names = {r["name"] for r in conn.execute("SELECT name FROM doors WHERE gateway_id = %s", (gateway_id,))}

    profiles = [
        TimeProfile(
            id=time_profile_key(r["id"]),
            name=r["name"][:500],
            weekdays=r["weekdays"],
            segments=[TimeSegment.model_validate(s) for s in r["segments"]],
            on_holidays=r["on_holidays"],
        ).model_dump(mode="json")
        for r in conn.execute("SELECT * FROM time_profiles WHERE site_id = %s ORDER BY id", (site,))
    ]
    holidays = [
        r["day"].isoformat() for r in conn.execute("SELECT day FROM holidays WHERE site_id = %s ORDER BY day", (site,))
    ]

    # rights on this gateway's doors, per person: {person: {time_profile or None: {doors}}}
    rights: dict[int, dict[str | None, set[str]]] = {}
    rows = conn.execute(
        """SELECT r.time_profile_id, d->>'door' AS door,
                  CASE WHEN r.person_id IS NOT NULL THEN ARRAY[r.person_id]
                       WHEN r.site_residents THEN
                            ARRAY(SELECT DISTINCT uo.person_id FROM unit_occupants uo JOIN units u ON u.id = uo.unit_id
                                  JOIN buildings b ON b.id = u.building_id WHERE b.site_id = r.site_id)
                       ELSE ARRAY(SELECT uo.person_id FROM unit_occupants uo JOIN units u ON u.id = uo.unit_id
                                  WHERE u.building_id = r.building_id
                                    AND (NOT r.own_floor OR u.floor = (
                                        SELECT dd.floor FROM doors dd
                                        WHERE dd.gateway_id = d->>'gateway_id' AND dd.name = d->>'door'))
                                  ) END AS people
           FROM access_rights r, jsonb_array_elements(r.doors) d
           WHERE r.site_id = %s AND d->>'gateway_id' = %s""",
        (site, gateway_id),
    ).fetchall()
    for r in rows:
        if r["door"] not in door_names:
            continue
        profile = time_profile_key(r["time_profile_id"]) if r["time_profile_id"] is not None else None
        for person in r["people"]:
            rights.setdefault(person, {}).setdefault(profile, set()).add(r["door"])

    people: dict[str, Any] = {}
    if rights:
        ids = sorted(rights)
        names = {
            r["id"]: r["full_name"] for r in conn.execute("SELECT id, full_name FROM people WHERE id = ANY(%s)", (ids,))
        }
        cards: dict[int, list[Card]] = {}
        for c in conn.execute(
            "SELECT * FROM cards WHERE person_id = ANY(%s) ORDER BY person_id, created_at DESC, id DESC", (ids,)
        ):
            bucket = cards.setdefault(c["person_id"], [])
            if len(bucket) < MAX_CARDS:
                bucket.append(
                    Card(
                        number=c["number"],
                        valid_from=c["valid_from"],
                        valid_until=c["valid_until"],
                        blocked=c["lost_at"] is not None,
                    )
                )
        faces: dict[int, list[list[float]]] = {}
        for f in conn.execute(
            """SELECT f.person_id, f.encoding_enc FROM face_enrolments f
               JOIN face_consents c ON c.person_id = f.person_id
               WHERE f.person_id = ANY(%s) ORDER BY f.person_id, f.id DESC""",
            (ids,),
        ):
            bucket = faces.setdefault(f["person_id"], [])
            if len(bucket) < MAX_FACES:
                bucket.append(cipher.decrypt(f["person_id"], f["encoding_enc"]))
        for person_id in ids:
            if person_id not in names or not (cards.get(person_id) or faces.get(person_id)):
                continue  # nothing to enter with
            entry = WhitelistPerson(
                id=person_id,
                label=door_label(names[person_id]),
                cards=cards.get(person_id, []),
                faces=faces.get(person_id, []),
                rights=[
                    AccessRight(doors=sorted(doors), time_profile=profile)
                    for profile, doors in sorted(rights[person_id].items(), key=lambda kv: kv[0] or "")
                ],
            )
            people[str(person_id)] = entry.model_dump(mode="json")

    passes: dict[str, Any] = {}
    for p in conn.execute(
        """SELECT * FROM visitor_passes
           WHERE site_id = %s AND revoked_at IS NULL AND valid_until > %s AND uses_left > 0 ORDER BY id""",
        (site, now),
    ):
        doors = sorted({d["door"] for d in p["doors"] if d["gateway_id"] == gateway_id and d["door"] in door_names})
        if not doors:
            continue
        entry = WhitelistPass(
            id=p["id"],
            host_person_id=p["host_person_id"],
            label=p["guest_name"][:500],
            salt=p["salt"],
            pin_hash=p["pin_hash"],
            qr_hash=p["qr_hash"],
            valid_from=p["valid_from"],
            valid_until=p["valid_until"],
            uses=min(p["uses_left"], 1000),
            doors=doors,
        )
        passes[str(p["id"])] = entry.model_dump(mode="json")

    return {
        "timezone": gateway["timezone"],
        "time_profiles": profiles,
        "holidays": holidays,
        "people": people,
        "passes": passes,
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def digests(content: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a built version to diff the next one against: digests only, no encodings."""
    return {
        "timezone": content["timezone"],
        "time_profiles": _digest(content["time_profiles"]),
        "holidays": _digest(content["holidays"]),
        "people": {k: _digest(v) for k, v in content["people"].items()},
        "passes": {k: _digest(v) for k, v in content["passes"].items()},
    }


def full_message(content: dict[str, Any], version: int, now: datetime) -> WhitelistMessage:
    return WhitelistMessage(
        id=uuid7(),
        ts=now,
        version=version,
        timezone=content["timezone"],
        time_profiles=content["time_profiles"],
        holidays=content["holidays"],
        people=list(content["people"].values()),
        passes=list(content["passes"].values()),
    )


def delta_message(
    old: dict[str, Any], new: dict[str, Any], content: dict[str, Any], version: int, base: int, now: datetime
) -> WhitelistMessage:
    return WhitelistMessage(
        id=uuid7(),
        ts=now,
        version=version,
        base_version=base,
        timezone=content["timezone"],
        time_profiles=content["time_profiles"] if old["time_profiles"] != new["time_profiles"] else None,
        holidays=content["holidays"] if old["holidays"] != new["holidays"] else None,
        people=[content["people"][k] for k, d in new["people"].items() if old["people"].get(k) != d],
        passes=[content["passes"][k] for k, d in new["passes"].items() if old["passes"].get(k) != d],
        removed_people=sorted(int(k) for k in old["people"] if k not in new["people"]),
        removed_passes=sorted(k for k in old["passes"] if k not in new["passes"]),
    )


def rebuild(conn: psycopg.Connection, gateway_id: str, now: datetime, cipher: FaceCipher) -> WhitelistMessage | None:
    """Rebuild one gateway's whitelist (in the caller's transaction); the message queued, if any."""
    state = conn.execute("SELECT * FROM whitelist_state WHERE gateway_id = %s FOR UPDATE", (gateway_id,)).fetchone()
    if state is None:
        return None
    content = build(conn, gateway_id, now, cipher)
    new = digests(content)
    old = state["snapshot"]
    changed = old is None or old != new
    version = state["version"] + 1 if changed else state["version"]
    message = None
    if old is None or state["full_requested"]:
        message = full_message(content, version, now)
    elif changed:
        message = delta_message(old, new, content, version, state["version"], now)
    if message is not None:
        body = message.model_dump_json().encode()
        conn.execute(
            """INSERT INTO whitelist_messages (id, gateway_id, version, base_version, people, passes, removed,
                                              body_enc, created_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                message.id,
                gateway_id,
                message.version,
                message.base_version,
                len(message.people),
                len(message.passes),
                len(message.removed_people) + len(message.removed_passes),
                cipher.seal(f"whitelist:{message.id}", body),
                now,
            ),
        )
    conn.execute(
        """UPDATE whitelist_state SET version = %s, snapshot = %s, dirty = false, full_requested = false,
               built_at = %s WHERE gateway_id = %s""",
        (version, Jsonb(new), now, gateway_id),
    )
    return message


def rebuild_dirty(conn: psycopg.Connection, now: datetime, cipher: FaceCipher) -> int:
    """Rebuild every gateway marked dirty, each in a transaction of its own; returns the messages queued."""
    queued = 0
    gateways = [
        r["gateway_id"]
        for r in conn.execute("SELECT gateway_id FROM whitelist_state WHERE dirty OR full_requested ORDER BY 1")
    ]
    for gateway_id in gateways:
        try:
            with conn.transaction():
                if rebuild(conn, gateway_id, now, cipher) is not None:
                    queued += 1
        except Exception:
            log.exception("building the whitelist of gateway %s failed; trying again later", gateway_id)
    return queued


def unpublished(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT m.id, m.gateway_id, g.site_id, m.version, m.body_enc FROM whitelist_messages m
           JOIN gateways g ON g.id = m.gateway_id
           WHERE m.published_at IS NULL AND m.body_enc IS NOT NULL ORDER BY m.seq"""
    ).fetchall()


def message_of(row: dict[str, Any], cipher: FaceCipher) -> WhitelistMessage:
    return WhitelistMessage.model_validate_json(cipher.open(f"whitelist:{row['id']}", row["body_enc"]))


def mark_published(conn: psycopg.Connection, message_id: object, at: datetime) -> None:
    """Published: the body (with its encodings) is not kept."""
    conn.execute(
        "UPDATE whitelist_messages SET published_at = %s, body_enc = NULL WHERE id = %s AND published_at IS NULL",
        (at, message_id),
    )


def status(conn: psycopg.Connection, gateway_id: str) -> dict[str, Any]:
    state = conn.execute(
        "SELECT version, dirty, full_requested, built_at FROM whitelist_state WHERE gateway_id = %s", (gateway_id,)
    ).fetchone()
    messages = conn.execute(
        """SELECT id, version, base_version, people, passes, removed, created_at, published_at
           FROM whitelist_messages WHERE gateway_id = %s ORDER BY seq DESC LIMIT 20""",
        (gateway_id,),
    ).fetchall()
    doors = conn.execute(
        "SELECT name, building, floor, room FROM doors WHERE gateway_id = %s ORDER BY name", (gateway_id,)
    ).fetchall()
    return {
        "gateway_id": gateway_id,
        "version": state["version"] if state else 0,
        "pending_rebuild": bool(state and (state["dirty"] or state["full_requested"])),
        "built_at": state["built_at"] if state else None,
        "doors": doors,
        "messages": messages,
    }
