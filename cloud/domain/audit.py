"""The audit log: every write, with who, when, what, and the row before and after.

Called in the same transaction as the write it records, so the log and the data never disagree.
Personal data goes in masked (see cloud/security/pii.py), never in clear.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain.access import Principal


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.endswith(("_enc", "_hash", "password_hash"))}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None
    return value


def record(
    conn: psycopg.Connection,
    *,
    actor: Principal | str,
    action: str,
    entity: str,
    entity_id: object,
    now: datetime,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    user_id = actor.user_id if isinstance(actor, Principal) else None
    name = actor.actor if isinstance(actor, Principal) else actor
    conn.execute(
        """INSERT INTO audit_log (at, actor_user_id, actor, action, entity, entity_id, before, after)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            now,
            user_id,
            name,
            action,
            entity,
            None if entity_id is None else str(entity_id),
            Jsonb(plain(before)) if before is not None else None,
            Jsonb(plain(after)) if after is not None else None,
        ),
    )
