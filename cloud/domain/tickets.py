"""Tickets: one model for complaints, repair requests and the tickets alarms open.

This module holds what the backbone needs: readable numbers, opening a ticket for an alarm
(or attaching a repeat to the open one), the timeline, and reading tickets back.
"""

import threading
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cloud.domain.changes import notify
from contract.common import Category, Severity


class TicketType(StrEnum):
    COMPLAINT = "complaint"
    REPAIR = "repair"
    SAFETY = "safety"


class Channel(StrEnum):
    APP = "app"
    WEB = "web"
    PHONE = "phone"
    WALK_IN = "walk_in"
    DEVICE = "device"


class Status(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REDIRECTED = "redirected"
    REOPENED = "reopened"
    CANCELLED = "cancelled"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


#: A ticket in one of these states is finished: a repeat of its alarm opens a new ticket.
FINISHED = (Status.CLOSED, Status.CANCELLED)

PRIORITY_FOR_SEVERITY = {
    Severity.CRITICAL: Priority.URGENT,
    Severity.MAJOR: Priority.HIGH,
    Severity.MINOR: Priority.NORMAL,
    Severity.WARNING: Priority.LOW,
}

SYSTEM_ACTOR = "system"


def next_number(conn: psycopg.Connection, *, timezone: str, now: datetime) -> str:
    """`T-YYYYMMDD-NNNN`, dated in the site's time zone, counted per day."""
    day = now.astimezone(ZoneInfo(timezone)).date()
    row = conn.execute(
        """INSERT INTO ticket_counters (day, last_value) VALUES (%s, 1)
           ON CONFLICT (day) DO UPDATE SET last_value = ticket_counters.last_value + 1
           RETURNING last_value""",
        (day,),
    ).fetchone()
    assert row is not None
    return f"T-{day:%Y%m%d}-{row['last_value']:04d}"


class NumberSource:
    """Ticket numbers from a connection of its own, each committed at once.

    Taken inside the filing's transaction, a number would keep the day's counter row locked until
    that transaction commits, and filings would queue behind each other. Taken here, the row is
    locked for one statement. A filing that fails afterwards leaves a gap in the day's numbers.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def __call__(self, *, timezone: str, now: datetime) -> str:
        with self._lock:
            for attempt in range(2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self._url, autocommit=True, row_factory=dict_row)
                    return next_number(self._conn, timezone=timezone, now=now)
                except psycopg.OperationalError:
                    self._conn = None  # a dropped connection: once more with a new one
                    if attempt:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def add_event(
    conn: psycopg.Connection,
    ticket_id: int,
    *,
    at: datetime,
    kind: str,
    body: str = "",
    actor: str = SYSTEM_ACTOR,
    data: dict[str, Any] | None = None,
    actor_user_id: int | None = None,
    visibility: str = "internal",
) -> None:
    """A timeline entry; `shared` entries are shown to the resident, `internal` ones only to staff.

    Every change of a ticket writes one, so this is where live screens hear of it (a `ticket`
    notification with the ids a screen needs to decide whether the ticket concerns its user).
    """
    # one round trip: the entry, and what its notification says of the ticket
    row = conn.execute(
        """WITH entry AS (
               INSERT INTO ticket_events (ticket_id, at, actor, kind, body, data, actor_user_id, visibility)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING ticket_id)
           SELECT t.site_id, t.number, t.type, t.category, t.complainant_id, t.unit_id, t.assignee_id,
                  t.department_id
             FROM entry JOIN tickets t ON t.id = entry.ticket_id""",
        (ticket_id, at, actor, kind, body, Jsonb(data or {}), actor_user_id, visibility),
    ).fetchone()
    if row is not None:
        notify(
            conn,
            "ticket",
            {
                "site": row["site_id"],
                "ticket_id": ticket_id,
                "number": row["number"],
                "event": kind,
                "visibility": visibility,
                # what cloud.domain.access.ticket_scope decides by, so that a listener can apply it
                "type": row["type"],
                "category": row["category"],
                "complainant_id": row["complainant_id"],
                "unit_id": row["unit_id"],
                "assignee_id": row["assignee_id"],
                "department_id": row["department_id"],
            },
        )


@dataclass(frozen=True)
class AlarmTicketRequest:
    """What an alarm needs from a ticket; filled by cloud.domain.alarms."""

    alarm_id: int
    alarm_key: str
    rule: str
    severity: Severity
    ticket_type: TicketType
    category: Category
    title: str
    description: str
    source_type: str
    site_id: str
    site_timezone: str
    gateway_id: str | None
    device_id: int | None
    building: str | None
    floor: str | None
    location: str | None
    raised_at: datetime


@dataclass(frozen=True)
class TicketRef:
    id: int
    number: str
    created: bool


def _link_alarm(
    conn: psycopg.Connection, ticket_id: int, req: AlarmTicketRequest, now: datetime, kind: str, body: str
) -> None:
    """Put the alarm on the ticket's timeline and point the alarm at its ticket."""
    data = {"alarm_id": req.alarm_id, "severity": req.severity.value, "raised_at": req.raised_at.isoformat()}
    add_event(conn, ticket_id, at=now, kind=kind, body=body, data=data)
    conn.execute("UPDATE alarms SET ticket_id = %s WHERE id = %s", (ticket_id, req.alarm_id))


def open_or_attach(conn: psycopg.Connection, req: AlarmTicketRequest, *, now: datetime) -> TicketRef:
    """Open a ticket for an alarm, or add the alarm to the ticket already open for it.

    Call inside a transaction. The partial unique index on `alarm_key` makes a second open
    ticket for the same source and rule impossible, even with two ingest processes.
    """
    for _attempt in range(2):
        existing = conn.execute(
            """SELECT id, number FROM tickets
               WHERE alarm_key = %s AND status <> ALL(%s) FOR UPDATE""",
            (req.alarm_key, [s.value for s in FINISHED]),
        ).fetchone()
        if existing is not None:
            conn.execute(
                """UPDATE tickets SET occurrences = occurrences + 1, last_occurrence_at = %s, updated_at = %s
                   WHERE id = %s""",
                (req.raised_at, now, existing["id"]),
            )
            _link_alarm(conn, existing["id"], req, now, "alarm_repeated", f"The alarm occurred again: {req.title}")
            return TicketRef(existing["id"], existing["number"], created=False)
        number = next_number(conn, timezone=req.site_timezone, now=now)
        try:
            with conn.transaction():  # a savepoint: a lost race rolls back only this insert
                row = conn.execute(
                    """INSERT INTO tickets (number, type, category, channel, status, priority, title, description,
                                            site_id, building, floor, location, source_type, gateway_id,
                                            device_id, alarm_rule, alarm_key, alarm_id, occurrences,
                                            created_at, updated_at, last_occurrence_at)
                       VALUES (%s, %s, %s, 'device', 'new', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1,
                               %s, %s, %s)
                       RETURNING id""",
                    (
                        number,
                        req.ticket_type.value,
                        req.category.value,
                        PRIORITY_FOR_SEVERITY[req.severity].value,
                        req.title,
                        req.description,
                        req.site_id,
                        req.building,
                        req.floor,
                        req.location,
                        req.source_type,
                        req.gateway_id,
                        req.device_id,
                        req.rule,
                        req.alarm_key,
                        req.alarm_id,
                        now,
                        now,
                        req.raised_at,
                    ),
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            continue  # another process opened it first: attach to that one
        assert row is not None
        if req.building:
            # the gateway names the building as people do: by its code or its name
            conn.execute(
                """UPDATE tickets SET building_id = (SELECT id FROM buildings WHERE site_id = %(site)s
                                                     AND (code = %(b)s OR name = %(b)s) ORDER BY id LIMIT 1)
                   WHERE id = %(id)s""",
                {"site": req.site_id, "b": req.building, "id": row["id"]},
            )
        body = f"Opened by the {req.source_type} alarm '{req.rule}': {req.title}"
        _link_alarm(conn, row["id"], req, now, "created", body)
        return TicketRef(row["id"], number, created=True)
    raise RuntimeError(f"could not open or find the ticket for {req.alarm_key}")


TICKET_COLUMNS = """t.id, t.number, t.type, t.category, t.subcategory, t.channel, t.status, t.priority,
    t.title, t.description, t.site_id, t.building_id, coalesce(b.code, t.building) AS building, t.floor,
    t.unit_id, un.number AS unit_number, t.location, t.source_type, t.gateway_id,
    t.device_id, d.name AS device_name, t.alarm_id, t.alarm_rule, t.occurrences,
    t.complainant_id, cp.full_name AS complainant_name, t.department_id, dep.name AS department_name,
    t.assignee_id, ap.full_name AS assignee_name,
    t.response_due_at, t.resolution_due_at, t.response_breached_at, t.resolution_breached_at, t.escalation_level,
    t.on_hold_since, t.first_response_at, t.triaged_at, t.assigned_at, t.started_at, t.resolved_at, t.closed_at,
    t.cancelled_at, t.redirect_reason, t.redirect_to, t.plan, t.work_done, t.result_note,
    t.cause_kind, t.cause_code, t.cause_note, t.rating, t.rating_comment, t.rated_at, t.reopen_count,
    pt.number AS linked_to, rc.number AS recomplaint_of,
    t.created_at, t.updated_at, t.last_occurrence_at"""

TICKET_JOINS = """
    LEFT JOIN devices d ON d.id = t.device_id
    LEFT JOIN buildings b ON b.id = t.building_id
    LEFT JOIN units un ON un.id = t.unit_id
    LEFT JOIN people cp ON cp.id = t.complainant_id
    LEFT JOIN departments dep ON dep.id = t.department_id
    LEFT JOIN users au ON au.id = t.assignee_id
    LEFT JOIN people ap ON ap.id = au.person_id
    LEFT JOIN tickets pt ON pt.id = t.parent_id
    LEFT JOIN tickets rc ON rc.id = t.recomplaint_of"""
TICKET_FROM = "tickets t" + TICKET_JOINS

ORDERS = {
    "newest": "t.created_at DESC, t.id DESC",
    # the technician's view: what burns first
    "urgency": """CASE t.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END,
                  coalesce(t.resolution_due_at, 'infinity'), t.created_at""",
    "due": "coalesce(t.resolution_due_at, 'infinity'), t.created_at",
}


def list_tickets(
    conn: psycopg.Connection,
    scope: sql.Composable,
    *,
    filters: dict[str, Any],
    order: str = "newest",
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    """Tickets within the scope, filtered; `filters` keys: channel, type, status, category, site,
    assignee, department, unit, device, complainant, breached (bool), open (bool)."""
    params = {
        key: filters.get(key)
        for key in ("channel", "type", "status", "category", "site", "assignee", "department", "unit", "device",
                    "complainant", "breached", "open")
    }  # fmt: skip
    query = sql.SQL(
        f"""SELECT {TICKET_COLUMNS} FROM (
            -- the page first, on tickets alone (an index serves the order); names for 50 rows only
            SELECT t.id FROM tickets t
            WHERE {{scope}}
              AND (%(channel)s::text IS NULL OR t.channel = %(channel)s)
              AND (%(type)s::text IS NULL OR t.type = %(type)s)
              AND (%(status)s::text IS NULL OR t.status = %(status)s)
              AND (%(category)s::text IS NULL OR t.category = %(category)s)
              AND (%(site)s::text IS NULL OR t.site_id = %(site)s)
              AND (%(assignee)s::bigint IS NULL OR t.assignee_id = %(assignee)s)
              AND (%(department)s::bigint IS NULL OR t.department_id = %(department)s)
              AND (%(unit)s::bigint IS NULL OR t.unit_id = %(unit)s)
              AND (%(device)s::bigint IS NULL OR t.device_id = %(device)s)
              AND (%(complainant)s::bigint IS NULL OR t.complainant_id = %(complainant)s)
              AND (%(breached)s::boolean IS NULL OR
                   (t.response_breached_at IS NOT NULL OR t.resolution_breached_at IS NOT NULL) = %(breached)s)
              AND (%(open)s::boolean IS NULL OR
                   (t.status NOT IN ('resolved', 'closed', 'cancelled', 'redirected')) = %(open)s)
            ORDER BY {ORDERS[order]}
            LIMIT %(limit)s OFFSET %(offset)s
            ) page JOIN tickets t ON t.id = page.id {TICKET_JOINS}
            ORDER BY {ORDERS[order]}"""
    ).format(scope=scope)
    return list(conn.execute(query, {**params, "limit": limit, "offset": offset}).fetchall())


def get_ticket(conn: psycopg.Connection, scope: sql.Composable, number: str, *, staff_view: bool) -> dict | None:
    """One ticket with its timeline, alarms, attachments and linked tickets; residents see only what is shared."""
    ticket = conn.execute(
        sql.SQL(f"SELECT {TICKET_COLUMNS} FROM {TICKET_FROM} WHERE t.number = %s AND {{scope}}").format(scope=scope),
        (number,),
    ).fetchone()
    if ticket is None:
        return None
    ticket["timeline"] = conn.execute(
        """SELECT at, actor, kind, body, data, visibility FROM ticket_events
           WHERE ticket_id = %s AND (%s OR visibility = 'shared') ORDER BY at, id""",
        (ticket["id"], staff_view),
    ).fetchall()
    ticket["alarms"] = conn.execute(
        """SELECT id, rule, severity, state, raised_at, acknowledged_at, cleared_at
           FROM alarms WHERE ticket_id = %s ORDER BY raised_at, id""",
        (ticket["id"],),
    ).fetchall()
    ticket["attachments"] = conn.execute(
        """SELECT id, original_name, content_type, size_bytes, visibility, created_at FROM attachments
           WHERE ticket_id = %s AND (%s OR visibility = 'shared') ORDER BY created_at, id""",
        (ticket["id"], staff_view),
    ).fetchall()
    ticket["linked"] = [
        r["number"]
        for r in conn.execute("SELECT number FROM tickets WHERE parent_id = %s ORDER BY id", (ticket["id"],)).fetchall()
    ]
    return ticket
