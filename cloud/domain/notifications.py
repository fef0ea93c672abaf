"""Notifications: the in-app message per user, and the e-mail and SMS copies still to go out.

`notify` writes both in the caller's transaction, so a message exists exactly when the change
that caused it commits, and nothing is sent for a change that rolled back. The copies are sent
later by cloud.notify.dispatch, which retries them when a server is down.

Functions that take a connection expect one with `dict_row` rows (cloud.storage.db).
"""

from collections.abc import Iterable, Sequence
from datetime import datetime

import psycopg

CHANNELS = ("email", "sms")
#: Largest page `list_for_user` returns, whatever is asked.
MAX_PAGE = 500


def notify(
    conn: psycopg.Connection,
    *,
    user_ids: Iterable[int],
    kind: str,
    title: str,
    body: str,
    ticket_id: int | None,
    now: datetime,
    channels: Sequence[str] = CHANNELS,
) -> list[int]:
    """Tell these users: one in-app message each, and a pending delivery per channel that reaches them.

    Each user is told once however often listed; deactivated and unknown users are skipped, and
    a channel is skipped for a user whose person has no address for it. Returns the new
    notifications' ids in user-id order.
    """
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown notification channels: {sorted(unknown)}")
    ids = sorted({int(u) for u in user_ids})
    if not ids:
        return []
    targets = conn.execute(
        """SELECT u.id AS user_id, p.email_enc IS NOT NULL AS email, p.phone_enc IS NOT NULL AS sms
           FROM users u JOIN people p ON p.id = u.person_id
           WHERE u.id = ANY(%s) AND u.active
           ORDER BY u.id""",
        (ids,),
    ).fetchall()
    created: list[int] = []
    for target in targets:
        row = conn.execute(
            """INSERT INTO notifications (user_id, ticket_id, kind, title, body, created_at)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
            (target["user_id"], ticket_id, kind, title, body, now),
        ).fetchone()
        assert row is not None
        created.append(row["id"])
        wanted = [c for c in CHANNELS if c in channels and target[c]]
        if wanted:
            conn.cursor().executemany(
                """INSERT INTO notification_deliveries (notification_id, channel, next_attempt_at)
                   VALUES (%s, %s, %s)""",
                [(row["id"], channel, now) for channel in wanted],
            )
    return created


def list_for_user(
    conn: psycopg.Connection, user_id: int, *, unread_only: bool = False, limit: int = 50, offset: int = 0
) -> list[dict]:
    """A user's messages, newest first, with the ticket's number when there is one."""
    if limit < 1 or offset < 0:
        raise ValueError("limit must be positive and offset not negative")
    return list(
        conn.execute(
            """SELECT n.id, n.ticket_id, t.number AS ticket_number, n.kind, n.title, n.body, n.created_at, n.read_at
               FROM notifications n LEFT JOIN tickets t ON t.id = n.ticket_id
               WHERE n.user_id = %s AND (NOT %s OR n.read_at IS NULL)
               ORDER BY n.created_at DESC, n.id DESC
               LIMIT %s OFFSET %s""",
            (user_id, unread_only, min(limit, MAX_PAGE), offset),
        ).fetchall()
    )


def unread_count(conn: psycopg.Connection, user_id: int) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM notifications WHERE user_id = %s AND read_at IS NULL", (user_id,)
    ).fetchone()
    return int(row["n"]) if row else 0


def mark_read(conn: psycopg.Connection, user_id: int, notification_id: int, now: datetime) -> bool:
    """Mark one of the user's own messages read; False when it is not theirs (or does not exist).

    A message read before keeps its first read time.
    """
    row = conn.execute(
        """UPDATE notifications SET read_at = coalesce(read_at, %s)
           WHERE id = %s AND user_id = %s RETURNING id""",
        (now, notification_id, user_id),
    ).fetchone()
    return row is not None


def mark_all_read(conn: psycopg.Connection, user_id: int, now: datetime) -> int:
    """Mark all of a user's unread messages read; returns how many were."""
    cur = conn.execute("UPDATE notifications SET read_at = %s WHERE user_id = %s AND read_at IS NULL", (now, user_id))
    return cur.rowcount
