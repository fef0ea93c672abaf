"""Alarm lifecycle: active -> acknowledged -> cleared, with who and when, and the tickets they open.

Alarms name their source: a device (raised by its gateway's rules), a gateway (gone silent),
or a cloud rule. "The same alarm" is identified by `alarm_key`; a raise while one with the same
key is still uncleared is the same alarm reported again (an edge restart), not a new one.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain import tickets, workflow
from cloud.domain.changes import notify
from cloud.domain.registry import DeviceRef
from contract.common import Category, Severity, TicketKind
from contract.messages import AlarmMessage


class AlarmNotFound(LookupError):
    pass


class AlarmConflict(ValueError):
    pass


@dataclass(frozen=True)
class RaiseOutcome:
    alarm_id: int
    duplicate: bool
    ticket: tickets.TicketRef | None


def device_key(device_id: int, rule: str) -> str:
    return f"device:{device_id}:{rule}"


def gateway_key(gateway_id: str, rule: str) -> str:
    return f"gateway:{gateway_id}:{rule}"


def _location_text(building: str | None, floor: str | None, room: str | None) -> str | None:
    parts = [p for p in (building and f"building {building}", floor and f"floor {floor}", room) if p]
    return ", ".join(parts) or None


def _raise(
    conn: psycopg.Connection,
    *,
    key: str,
    source_type: str,
    site_id: str,
    site_timezone: str,
    gateway_id: str | None,
    device_id: int | None,
    rule: str,
    severity: Severity,
    message: str,
    value: Any,
    ticket_kind: TicketKind,
    category: Category | None,
    raised_at: datetime,
    now: datetime,
    title: str,
    building: str | None = None,
    floor: str | None = None,
    room: str | None = None,
    cfg: workflow.Settings | None = None,
    message_id: str | None = None,
) -> RaiseOutcome:
    existing = conn.execute(
        "SELECT id, ticket_id FROM alarms WHERE alarm_key = %s AND state <> 'cleared' FOR UPDATE", (key,)
    ).fetchone()
    if existing is not None:
        outcome = RaiseOutcome(existing["id"], duplicate=True, ticket=None)
        _announce_raise(conn, outcome, site_id, severity, message_id)
        return outcome
    row = conn.execute(
        """INSERT INTO alarms (source_type, site_id, gateway_id, device_id, rule, alarm_key, severity, state,
                               message, value, ticket_type, raised_at, received_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, 'active', %s, %s, %s, %s, %s)
           RETURNING id""",
        (
            source_type,
            site_id,
            gateway_id,
            device_id,
            rule,
            key,
            severity.value,
            message,
            Jsonb(value) if value is not None else None,
            ticket_kind.value,
            raised_at,
            now,
        ),
    ).fetchone()
    assert row is not None
    alarm_id = row["id"]
    ticket = None
    if ticket_kind != TicketKind.NONE:
        ticket_type = tickets.TicketType(ticket_kind.value)
        if category is None:
            category = Category.SAFETY if ticket_kind == TicketKind.SAFETY else Category.FACILITY
        description = message or title
        if value is not None:
            description += f" (value: {value})"
        ticket = tickets.open_or_attach(
            conn,
            tickets.AlarmTicketRequest(
                alarm_id=alarm_id,
                alarm_key=key,
                rule=rule,
                severity=severity,
                ticket_type=ticket_type,
                category=category,
                title=title,
                description=description,
                source_type=source_type,
                site_id=site_id,
                site_timezone=site_timezone,
                gateway_id=gateway_id,
                device_id=device_id,
                building=building,
                floor=floor,
                location=_location_text(building, floor, room),
                raised_at=raised_at,
            ),
            now=now,
        )
        if ticket.created and cfg is not None:
            # a new alarm ticket goes through the same intake as a typed-in one: routed, timed, told
            row = conn.execute("SELECT * FROM tickets WHERE id = %s", (ticket.id,)).fetchone()
            workflow.intake(conn, row, None, now, cfg)
    outcome = RaiseOutcome(alarm_id, duplicate=False, ticket=ticket)
    _announce_raise(conn, outcome, site_id, severity, message_id)
    return outcome


def _announce_raise(
    conn: psycopg.Connection, outcome: RaiseOutcome, site_id: str, severity: Severity, message_id: str | None
) -> None:
    """`alarm_raised`, from every path that raises one (device, gateway watchdog, cloud rules, patrol)."""
    notify(
        conn,
        "alarm_raised",
        {
            "site": site_id,
            "alarm_id": outcome.alarm_id,
            "severity": severity.value,
            "duplicate": outcome.duplicate,
            "ticket": outcome.ticket.number if outcome.ticket else None,
            "message_id": message_id,
        },
    )


def raise_device_alarm(
    conn: psycopg.Connection,
    *,
    device: DeviceRef,
    msg: AlarmMessage,
    now: datetime,
    cfg: workflow.Settings | None = None,
) -> RaiseOutcome:
    text = msg.message or msg.rule.replace("_", " ")
    return _raise(
        conn,
        key=device_key(device.id, msg.rule),
        source_type="device",
        site_id=device.site_id,
        site_timezone=device.site_timezone,
        gateway_id=device.gateway_id,
        device_id=device.id,
        rule=msg.rule,
        severity=msg.severity,
        message=msg.message,
        value=msg.value,
        ticket_kind=msg.ticket,
        category=msg.category,
        raised_at=msg.ts,
        now=now,
        title=f"{device.name}: {text}",
        building=device.building,
        floor=device.floor,
        room=device.room,
        cfg=cfg,
        message_id=str(msg.id),
    )


def raise_gateway_alarm(
    conn: psycopg.Connection,
    *,
    gateway_id: str,
    site_id: str,
    site_timezone: str,
    rule: str,
    severity: Severity,
    message: str,
    ticket_kind: TicketKind,
    raised_at: datetime,
    now: datetime,
    cfg: workflow.Settings | None = None,
) -> RaiseOutcome:
    return _raise(
        conn,
        key=gateway_key(gateway_id, rule),
        source_type="gateway",
        site_id=site_id,
        site_timezone=site_timezone,
        gateway_id=gateway_id,
        device_id=None,
        rule=rule,
        severity=severity,
        message=message,
        value=None,
        ticket_kind=ticket_kind,
        category=None,
        raised_at=raised_at,
        now=now,
        title=f"gateway {gateway_id}: {message}",
        cfg=cfg,
    )


def raise_cloud_alarm(
    conn: psycopg.Connection,
    *,
    key: str,
    site_id: str,
    site_timezone: str,
    rule: str,
    severity: Severity,
    title: str,
    message: str,
    value: Any,
    ticket_kind: TicketKind,
    category: Category | None,
    raised_at: datetime,
    now: datetime,
    location: str | None = None,
    cfg: workflow.Settings | None = None,
) -> RaiseOutcome:
    """An alarm from a rule the cloud evaluates (a missed patrol checkpoint…); `key` names the one alarm."""
    return _raise(
        conn,
        key=key,
        source_type="cloud",
        site_id=site_id,
        site_timezone=site_timezone,
        gateway_id=None,
        device_id=None,
        rule=rule,
        severity=severity,
        message=message,
        value=value,
        ticket_kind=ticket_kind,
        category=category,
        raised_at=raised_at,
        now=now,
        title=title,
        room=location,
        cfg=cfg,
    )


def clear(conn: psycopg.Connection, *, key: str, cleared_at: datetime, value: Any, now: datetime) -> int | None:
    """Clear the uncleared alarm with this key; the ticket stays open until a person confirms the fix."""
    row = conn.execute(
        """UPDATE alarms SET state = 'cleared', cleared_at = %s, clear_value = %s
           WHERE alarm_key = %s AND state <> 'cleared'
           RETURNING id, ticket_id, rule, site_id""",
        (cleared_at, Jsonb(value) if value is not None else None, key),
    ).fetchone()
    if row is None:
        return None
    notify(conn, "alarm_cleared", {"site": row["site_id"], "alarm_id": row["id"]})
    if row["ticket_id"] is not None:
        body = f"The alarm '{row['rule']}' cleared"
        if value is not None:
            body += f" (value: {value})"
        body += "; the ticket stays open until someone confirms the fix."
        tickets.add_event(
            conn,
            row["ticket_id"],
            at=now,
            kind="alarm_cleared",
            body=body,
            data={"alarm_id": row["id"], "cleared_at": cleared_at.isoformat()},
        )
        conn.execute("UPDATE tickets SET updated_at = %s WHERE id = %s", (now, row["ticket_id"]))
    return row["id"]


def acknowledge(conn: psycopg.Connection, *, alarm_id: int, actor: str, note: str | None, now: datetime) -> dict:
    row = conn.execute(
        "SELECT id, state, acknowledged_at, ticket_id, site_id FROM alarms WHERE id = %s FOR UPDATE", (alarm_id,)
    ).fetchone()
    if row is None:
        raise AlarmNotFound(f"alarm {alarm_id} does not exist")
    if row["acknowledged_at"] is not None:
        raise AlarmConflict(f"alarm {alarm_id} was already acknowledged")
    conn.execute(
        """UPDATE alarms SET acknowledged_at = %s, acknowledged_by = %s, ack_note = %s,
               state = CASE WHEN state = 'active' THEN 'acknowledged' ELSE state END
           WHERE id = %s""",
        (now, actor, note, alarm_id),
    )
    notify(conn, "alarm_acknowledged", {"site": row["site_id"], "alarm_id": alarm_id, "by": actor})
    if row["ticket_id"] is not None:
        tickets.add_event(
            conn,
            row["ticket_id"],
            at=now,
            actor=actor,
            kind="alarm_acknowledged",
            body=f"Alarm {alarm_id} acknowledged" + (f": {note}" if note else ""),
            data={"alarm_id": alarm_id},
        )
    return get_alarm(conn, alarm_id)  # type: ignore[return-value]


ALARM_COLUMNS = """a.id, a.source_type, a.site_id, a.gateway_id, a.device_id, d.name AS device_name, a.rule,
    a.severity, a.state, a.message, a.value, a.ticket_type, t.number AS ticket_number, a.raised_at,
    a.received_at, a.acknowledged_at, a.acknowledged_by, a.ack_note, a.cleared_at, a.clear_value,
    a.snapshot_id"""


def get_alarm(conn: psycopg.Connection, alarm_id: int) -> dict | None:
    return conn.execute(
        f"""SELECT {ALARM_COLUMNS} FROM alarms a
            LEFT JOIN devices d ON d.id = a.device_id LEFT JOIN tickets t ON t.id = a.ticket_id
            WHERE a.id = %s""",
        (alarm_id,),
    ).fetchone()


def list_alarms(
    conn: psycopg.Connection,
    *,
    states: list[str] | None = None,
    severity: str | None = None,
    site_id: str | None = None,
    sites: list[str] | None = None,
    device_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    return list(
        conn.execute(
            f"""SELECT {ALARM_COLUMNS} FROM alarms a
                LEFT JOIN devices d ON d.id = a.device_id LEFT JOIN tickets t ON t.id = a.ticket_id
                WHERE (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s))
                  AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)
                  AND (%(site)s::text IS NULL OR a.site_id = %(site)s)
                  AND (%(sites)s::text[] IS NULL OR a.site_id = ANY(%(sites)s))
                  AND (%(device)s::bigint IS NULL OR a.device_id = %(device)s)
                ORDER BY a.raised_at DESC, a.id DESC
                LIMIT %(limit)s OFFSET %(offset)s""",
            {
                "states": states,
                "severity": severity,
                "site": site_id,
                "sites": sites,
                "device": device_id,
                "limit": limit,
                "offset": offset,
            },
        ).fetchall()
    )
