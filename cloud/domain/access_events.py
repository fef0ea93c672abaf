"""Access events from gateways, and camera snapshots of alarms: stored once, snapshots as files.

An AccessEvent is stored under its message id (a repeat changes nothing). Its JPEG snapshot, if
any, is checked like any uploaded photo (cloud/domain/attachments.py) and kept as a file under
the attachments folder, named by the id in `snapshot_id`. A granted use of a visitor pass counts
the pass down and is logged against its host (`host_person_id`).

A camera's `alarm_snapshot` event (EventMessage, data: alarm_device, rule, jpeg) is kept the same
way and linked to the alarm of that device and rule, and added to the alarm's ticket as an
internal attachment when the alarm has one.
"""

import base64
import binascii
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from cloud.domain import alarms, attachments, passes
from cloud.domain.access import OFFICE, Principal, Role
from cloud.domain.tickets import add_event
from contract.access import AccessEvent

log = logging.getLogger(__name__)


def store_jpeg(directory: Path, encoded: str | None) -> tuple[attachments.Stored | None, str | None]:
    """The snapshot stored as a file, or None and why not (a bad snapshot never loses the event)."""
    if not encoded:
        return None, None
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None, "snapshot: not base64"
    try:
        if attachments.check(data) != "image/jpeg":
            return None, "snapshot: not a JPEG"
        return attachments.store(directory, data, "snapshot.jpg"), None
    except attachments.AttachmentRefused as exc:
        return None, f"snapshot: {exc}"


def _exists(conn: psycopg.Connection, table: str, row_id: object) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,)).fetchone() is not None


def store(
    conn: psycopg.Connection, *, site: str, gateway: str, msg: AccessEvent, now: datetime, attachments_dir: Path
) -> bool:
    """Store one decision; False when this message id was stored before."""
    if conn.execute("SELECT 1 FROM access_events WHERE id = %s", (msg.id,)).fetchone():
        return False
    notes = [msg.detail] if msg.detail else []
    person_id = msg.person_id
    if person_id is not None and not _exists(conn, "people", person_id):
        notes.append(f"person {person_id} no longer exists")
        person_id = None
    pass_id, host = msg.pass_id, None
    if pass_id is not None:
        row = conn.execute("SELECT host_person_id FROM visitor_passes WHERE id = %s", (pass_id,)).fetchone()
        if row is None:
            notes.append(f"pass {pass_id} no longer exists")
            pass_id = None
        else:
            host = row["host_person_id"]
    stored, why = store_jpeg(attachments_dir, msg.snapshot_jpeg)
    if why:
        notes.append(why)
    conn.execute(
        """INSERT INTO access_events (id, at, received_at, site_id, gateway_id, door, method, granted, reason,
                                      person_id, pass_id, host_person_id, card, distance, offline,
                                      whitelist_version, source, detail, snapshot_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            msg.id,
            msg.ts,
            now,
            site,
            gateway,
            msg.door,
            msg.method,
            msg.granted,
            msg.reason,
            person_id,
            pass_id,
            host,
            msg.card,
            msg.distance,
            msg.offline,
            msg.whitelist_version,
            msg.source,
            "; ".join(notes)[:2000] or None,
            stored.id if stored else None,
        ),
    )
    if msg.granted and pass_id is not None:
        passes.record_use(conn, pass_id)
    return True


def attach_alarm_snapshot(
    conn: psycopg.Connection,
    *,
    device_id: int | None,
    data: dict[str, Any],
    camera: str | None,
    now: datetime,
    attachments_dir: Path,
) -> dict[str, Any]:
    """Keep an alarm snapshot and link it to the alarm (and its ticket); returns what to record of the event."""
    out = {k: v for k, v in data.items() if k != "jpeg"}
    stored, why = store_jpeg(attachments_dir, data.get("jpeg") if isinstance(data.get("jpeg"), str) else None)
    if stored is None:
        out["snapshot_error"] = why or "snapshot: missing"
        return out
    out["snapshot_id"] = str(stored.id)
    rule = data.get("rule")
    if device_id is None or not isinstance(rule, str):
        return out
    alarm = conn.execute(
        """SELECT id, ticket_id FROM alarms WHERE alarm_key = %s
           ORDER BY (state <> 'cleared') DESC, raised_at DESC LIMIT 1""",
        (alarms.device_key(device_id, rule),),
    ).fetchone()
    if alarm is None:
        out["alarm_id"] = None
        return out
    conn.execute("UPDATE alarms SET snapshot_id = %s WHERE id = %s", (stored.id, alarm["id"]))
    out["alarm_id"] = alarm["id"]
    if alarm["ticket_id"] is not None:
        conn.execute(
            """INSERT INTO attachments (id, ticket_id, uploaded_by, original_name, content_type, size_bytes, sha256,
                                        visibility, created_at)
               VALUES (%s, %s, NULL, %s, %s, %s, %s, 'internal', %s)""",
            (
                stored.id,
                alarm["ticket_id"],
                f"snapshot-{camera or 'camera'}.jpg",
                stored.content_type,
                stored.size,
                stored.sha256,
                now,
            ),
        )
        add_event(
            conn,
            alarm["ticket_id"],
            at=now,
            kind="attachment",
            actor=f"camera {camera or ''}".strip(),
            body=f"Camera snapshot of alarm {rule} ({stored.size} bytes).",
            data={"attachment_id": str(stored.id), "alarm_id": alarm["id"]},
        )
        out["ticket_id"] = alarm["ticket_id"]
    return out


def search(
    conn: psycopg.Connection,
    who: Principal,
    *,
    gateway_id: str | None,
    door: str | None,
    person_id: int | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Events within reach: the office and guards see their sites' events; a resident only their own
    and those of passes they made."""
    mine = who.role == Role.RESIDENT
    return conn.execute(
        """SELECT id, at, received_at, site_id, gateway_id, door, method, granted, reason, person_id, pass_id,
                  host_person_id, card, distance, offline, whitelist_version, source, detail,
                  snapshot_id IS NOT NULL AS has_snapshot
           FROM access_events e
           WHERE (%(all)s OR e.site_id = ANY(%(sites)s))
             AND (NOT %(mine)s OR e.person_id = %(me)s OR e.host_person_id = %(me)s)
             AND (%(gateway)s::text IS NULL OR e.gateway_id = %(gateway)s)
             AND (%(door)s::text IS NULL OR e.door = %(door)s)
             AND (%(person)s::bigint IS NULL OR e.person_id = %(person)s OR e.host_person_id = %(person)s)
             AND (%(since)s::timestamptz IS NULL OR e.at >= %(since)s)
             AND (%(until)s::timestamptz IS NULL OR e.at < %(until)s)
           ORDER BY e.at DESC, e.id LIMIT %(limit)s OFFSET %(offset)s""",
        {
            "all": who.site_ids is None,
            "sites": who.site_list() or [],
            "mine": mine,
            "me": who.person_id,
            "gateway": gateway_id,
            "door": door,
            "person": person_id,
            "since": since,
            "until": until,
            "limit": limit,
            "offset": offset,
        },
    ).fetchall()


def snapshot_of(conn: psycopg.Connection, who: Principal, event_id: uuid.UUID) -> uuid.UUID | None:
    """The snapshot file id of an event within reach (None: no such event in reach, or no snapshot)."""
    row = conn.execute("SELECT * FROM access_events WHERE id = %s", (event_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        return None
    if who.role == Role.RESIDENT and who.person_id not in (row["person_id"], row["host_person_id"]):
        return None
    if who.role not in (*OFFICE, Role.GUARD, Role.RESIDENT):
        return None
    return row["snapshot_id"]
