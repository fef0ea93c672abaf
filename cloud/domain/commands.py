"""Device commands: checked against what the device's profile defines, stored, acknowledged, expired.

The `commands` table is the queue: the API stores a command as `pending`, the API's MQTT
publisher (cloud/api/downlink.py) sends it and notes when the broker took it, the ingest's
control lane turns the gateway's CommandAck into its final state, and the scheduler marks
what nobody answered in time `expired`. Functions take connections with `dict_row` rows.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain import audit
from cloud.domain.access import Principal, Role
from cloud.domain.errors import Refused
from contract.ids import uuid7
from contract.messages import CommandAck, CommandInfo, CommandMessage

log = logging.getLogger(__name__)

FINAL_STATES = ("succeeded", "failed", "rejected", "expired")


class CommandRefused(Refused):
    """A command that cannot be sent; `status` is the HTTP status that says why."""


COLUMNS = """c.id, c.device_id, d.name AS device, c.gateway_id, g.site_id, c.command, c.params, c.requested_by,
             c.state, c.reason, c.result, c.created_at, c.expires_at, c.published_at, c.finished_at, c.acked_at"""
_FROM = "FROM commands c JOIN devices d ON d.id = c.device_id JOIN gateways g ON g.id = c.gateway_id"


def _check_value(info: CommandInfo, name: str, value: Any, kind: str, low: float | None, high: float | None) -> Any:
    where = f"params.{name}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise CommandRefused(422, f"{where}: {info.name} takes true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRefused(422, f"{where}: {info.name} takes a number, not {value!r}")
    if kind == "integer":
        if isinstance(value, float):
            if not value.is_integer():
                raise CommandRefused(422, f"{where}: {info.name} takes a whole number, not {value!r}")
            value = int(value)
    elif value != value or value in (float("inf"), float("-inf")):
        raise CommandRefused(422, f"{where}: must be a finite number")
    if low is not None and value < low:
        raise CommandRefused(422, f"{where}: {value:g} is below the minimum {low:g} of {info.name}")
    if high is not None and value > high:
        raise CommandRefused(422, f"{where}: {value:g} is above the maximum {high:g} of {info.name}")
    return value


def check_params(info: CommandInfo, params: dict[str, Any]) -> dict[str, Any]:
    """The params, checked against the command's declared parameters and limits (422 naming the field)."""
    declared = {p.name: p for p in info.params}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        takes = ", ".join(declared) or "no parameters"
        raise CommandRefused(422, f"params.{unknown[0]}: {info.name} takes {takes}")
    checked: dict[str, Any] = {}
    for name, p in declared.items():
        if name not in params:
            limits = ""
            if p.min is not None or p.max is not None:
                limits = f" ({'' if p.min is None else f'{p.min:g}'}..{'' if p.max is None else f'{p.max:g}'}"
                limits += f" {p.unit})" if p.unit else ")"
            raise CommandRefused(422, f"params.{name}: missing; {info.name} needs it{limits}")
        checked[name] = _check_value(info, name, params[name], p.type, p.min, p.max)
    return checked


def find_command(device: dict, command: str) -> CommandInfo:
    """The device's command by name, from its gateway's last birth (422 naming the command otherwise)."""
    infos = [CommandInfo.model_validate(c) for c in device["commands"] or []]
    for info in infos:
        if info.name == command:
            return info
    known = ", ".join(i.name for i in infos)
    if not known:
        raise CommandRefused(422, f"command: device {device['name']} defines no commands, so not {command!r}")
    raise CommandRefused(422, f"command: device {device['name']} has no command {command!r} (it has: {known})")


def may_send(who: Principal, info: CommandInfo) -> bool:
    return who.role == Role.ADMIN or who.role.value in info.roles


@dataclass(frozen=True)
class Request:
    command: str
    params: dict[str, Any]
    ttl_seconds: int


def create(
    conn: psycopg.Connection, *, device: dict, request: Request, who: Principal, now: datetime
) -> dict[str, Any]:
    """Check and store a command for a device row (id, name, gateway_id, site_id, commands, announced,
    gateway_status); audited in the same transaction. Raises CommandRefused."""
    info = find_command(device, request.command)
    if not may_send(who, info):
        allowed = ", ".join(["admin", *[r for r in info.roles if r != "admin"]])
        raise CommandRefused(403, f"{info.name} may be sent by {allowed}; not by the role {who.role.value}")
    params = check_params(info, request.params)
    if not device["announced"]:
        raise CommandRefused(409, f"device {device['name']} is no longer announced by gateway {device['gateway_id']}")
    if device["gateway_status"] == "offline":
        raise CommandRefused(409, f"gateway {device['gateway_id']} is offline: the command would not arrive")
    command_id = uuid7()
    row = conn.execute(
        """INSERT INTO commands (id, device_id, gateway_id, command, params, requested_by, created_at, expires_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            command_id,
            device["id"],
            device["gateway_id"],
            info.name,
            Jsonb(params),
            who.actor,
            now,
            now + timedelta(seconds=request.ttl_seconds),
        ),
    ).fetchone()
    assert row is not None
    stored = get(conn, command_id)
    assert stored is not None
    audit.record(conn, actor=who, action="send_command", entity="command", entity_id=command_id, now=now, after=stored)
    return stored


def get(conn: psycopg.Connection, command_id: UUID) -> dict[str, Any] | None:
    return conn.execute(f"SELECT {COLUMNS} {_FROM} WHERE c.id = %s", (command_id,)).fetchone()


def for_device(conn: psycopg.Connection, device_id: int, *, limit: int, offset: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {COLUMNS} {_FROM} WHERE c.device_id = %s ORDER BY c.created_at DESC, c.id DESC LIMIT %s OFFSET %s",
        (device_id, limit, offset),
    ).fetchall()


def message_of(row: dict[str, Any]) -> CommandMessage:
    """The CommandMessage a stored command goes out as: its id is the command's id, made once."""
    return CommandMessage(
        id=row["id"],
        ts=row["created_at"],
        device=row["device"],
        command=row["command"],
        params=row["params"],
        expires_at=row["expires_at"],
    )


def unpublished(conn: psycopg.Connection, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Pending commands the broker has not acknowledged yet, oldest first, not yet expired."""
    return conn.execute(
        f"""SELECT {COLUMNS} {_FROM}
            WHERE c.state = 'pending' AND c.published_at IS NULL AND c.expires_at > %s
            ORDER BY c.created_at LIMIT %s""",
        (now, limit),
    ).fetchall()


def mark_published(conn: psycopg.Connection, command_id: UUID, at: datetime) -> None:
    conn.execute("UPDATE commands SET published_at = %s WHERE id = %s AND published_at IS NULL", (at, command_id))


def apply_ack(conn: psycopg.Connection, *, gateway: str, ack: CommandAck, now: datetime) -> str:
    """Record a gateway's answer on its command; returns what happened (for the log and the event).

    Idempotent: the first answer decides. An answer after the cloud gave up (`expired`) still
    wins, because it says what the device did. An answer for a command that is unknown, or
    that belongs to another gateway, changes nothing (the caller records it as an event).
    """
    row = conn.execute(
        "SELECT id, gateway_id, state FROM commands WHERE id = %s FOR UPDATE", (ack.command_id,)
    ).fetchone()
    if row is None:
        return "unknown command"
    if row["gateway_id"] != gateway:
        log.warning("gateway %s answered command %s of gateway %s; ignored", gateway, ack.command_id, row["gateway_id"])
        return f"command belongs to gateway {row['gateway_id']}"
    if row["state"] not in ("pending", "expired"):
        return f"already {row['state']}"
    conn.execute(
        """UPDATE commands SET state = %s, reason = %s, result = %s, finished_at = %s, acked_at = %s
           WHERE id = %s""",
        (ack.status, ack.reason, Jsonb(ack.result), ack.ts, now, ack.command_id),
    )
    audit.record(
        conn,
        actor=f"gateway:{gateway}",
        action=f"command_{ack.status}",
        entity="command",
        entity_id=ack.command_id,
        now=now,
        before={"state": row["state"]},
        after={"state": ack.status, "reason": ack.reason, "result": ack.result},
    )
    return ack.status if row["state"] == "pending" else f"{ack.status} after it had expired"


def expire_due(conn: psycopg.Connection, now: datetime) -> int:
    """Pending commands past their expiry become `expired`; returns how many."""
    rows = conn.execute(
        """UPDATE commands SET state = 'expired', finished_at = expires_at,
               reason = CASE WHEN published_at IS NULL THEN 'expired before the broker took it'
                             ELSE 'no answer from the gateway before it expired' END
           WHERE state = 'pending' AND expires_at <= %s
           RETURNING id, reason""",
        (now,),
    ).fetchall()
    for r in rows:
        audit.record(
            conn,
            actor="scheduler",
            action="command_expired",
            entity="command",
            entity_id=r["id"],
            now=now,
            after={"state": "expired", "reason": r["reason"]},
        )
    return len(rows)
