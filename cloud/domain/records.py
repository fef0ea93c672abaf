"""Small helpers for the registry's plain records: fetch a row, apply changes, audit both."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cloud.domain import audit
from cloud.domain.access import Principal


def fetch(conn: psycopg.Connection, table: str, row_id: object, *, key: str = "id") -> dict | None:
    return conn.execute(
        sql.SQL("SELECT * FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(key)), (row_id,)
    ).fetchone()


def update(
    conn: psycopg.Connection,
    table: str,
    row_id: object,
    changes: Mapping[str, Any],
    *,
    columns: Iterable[str],
    actor: Principal,
    now: datetime,
    key: str = "id",
    before: dict | None = None,
) -> dict:
    """Set the given columns (only those in `columns`), record before and after, return the new row."""
    allowed = set(columns)
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    before = before if before is not None else fetch(conn, table, row_id, key=key)
    if before is None:
        raise LookupError(f"{table} {row_id} does not exist")
    if changes:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(col), sql.Placeholder(col)) for col in changes
        )
        conn.execute(
            sql.SQL("UPDATE {} SET {} WHERE {} = {}").format(
                sql.Identifier(table), assignments, sql.Identifier(key), sql.Placeholder("_key")
            ),
            {**changes, "_key": row_id},
        )
    after = fetch(conn, table, row_id, key=key)
    assert after is not None
    audit.record(
        conn, actor=actor, action="update", entity=table, entity_id=row_id, now=now, before=before, after=after
    )
    return after


def insert(
    conn: psycopg.Connection, table: str, values: Mapping[str, Any], *, actor: Principal | str, now: datetime
) -> dict:
    cols = list(values)
    row = conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(map(sql.Placeholder, cols)),
        ),
        dict(values),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=actor, action="create", entity=table, entity_id=row.get("id"), now=now, after=row)
    return row


def delete(conn: psycopg.Connection, table: str, row_id: object, *, actor: Principal, now: datetime) -> bool:
    before = fetch(conn, table, row_id)
    if before is None:
        return False
    conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(table)), (row_id,))
    audit.record(conn, actor=actor, action="delete", entity=table, entity_id=row_id, now=now, before=before)
    return True
