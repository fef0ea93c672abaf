"""Sending the due e-mail and SMS copies of notifications, each once, retrying failures with backoff.

Several processes may dispatch at once (every API process runs the scheduler). How a delivery
is sent once without holding a lock while talking to a mail server:

1. Claim, in one short transaction: take up to `batch` due pending rows with
   `FOR UPDATE SKIP LOCKED` (two dispatchers never take the same row), count the attempt and
   push `next_attempt_at` forward by CLAIM_SECONDS. That timestamp is the claim: until it
   passes no dispatcher sees the row as due. Commit; no lock is held from here on.
2. Send each claimed delivery, with no transaction open.
3. Record each outcome straight after its send in its own short transaction (sent; or the
   error, with the next attempt after a backoff; or failed for good). The update matches the
   attempt count the claim wrote, so it only ever records this dispatcher's own attempt.

A claim could only be taken over after it runs out, so a dispatcher starts no send later than
SEND_BUDGET_SECONDS after claiming and hands unsent rows back: with CLAIM_SECONDS twice that,
the last send has minutes to finish, far more than smtplib's per-operation timeout allows.

What remains is a crash (or a lost database connection) between a server accepting a message
and the "sent" commit: the claim runs out and the delivery is sent again. Nothing can close
that gap without the receiving side's help; the e-mail's Message-ID is stable per delivery so
mail clients can spot the copy. Because the attempt is counted when claimed, a delivery whose
sending kills the process still ends `failed` after MAX_ATTEMPTS instead of looping.
"""

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from cloud.notify import SendError
from cloud.notify.email import EmailSender
from cloud.notify.sms import SmsProvider
from cloud.security.pii import PiiCipher

log = logging.getLogger(__name__)

#: A delivery that failed this many times is marked `failed` and not tried again. With the
#: backoff below the attempts span about two hours (1, 2, 4 … 32, 60 minutes apart).
MAX_ATTEMPTS = 8
#: Wait after the first failure; doubled after each further one, up to the cap.
BACKOFF_BASE_SECONDS = 60.0
BACKOFF_CAP_SECONDS = 3600.0
#: How long a claimed delivery is hidden from other dispatchers.
CLAIM_SECONDS = 600.0
#: A dispatcher starts no send later than this after its claim (see the module's docstring).
SEND_BUDGET_SECONDS = CLAIM_SECONDS / 2
#: Longest SMS text; longer notifications are cut with an ellipsis.
SMS_MAX_CHARS = 320

NOT_CONFIGURED = {"email": "e-mail is not configured", "sms": "SMS is not configured"}

#: A connection to use, or something that gives one as a context manager: a pool's
#: `pool.connection`, or `lambda: cloud.storage.db.connect(url)`.
ConnectionSource = psycopg.Connection | Callable[[], AbstractContextManager[psycopg.Connection]]


@dataclass
class DeliveryCounts:
    claimed: int = 0  # rows this call took; equal to `batch`: more may be due, call again
    sent: int = 0
    retrying: int = 0  # failed this time, to be tried again later
    failed: int = 0  # given up (including channels with no sender configured)
    released: int = 0  # claimed but handed back unsent (the send budget ran out)


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4 … minutes, capped."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS))


def sms_text(title: str, body: str) -> str:
    text = " ".join(f"{title}: {body}".split()) if body.strip() else " ".join(title.split())
    return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 1] + "…"


def deliver_due(
    source: ConnectionSource,
    *,
    cipher: PiiCipher,
    email: EmailSender | None,
    sms: SmsProvider | None,
    now: datetime,
    batch: int = 50,
    monotonic: Callable[[], float] = time.monotonic,
) -> DeliveryCounts:
    """Send up to `batch` due deliveries once each; see the module's docstring for how.

    A channel without a sender (`email`/`sms` None) is not retried: its due deliveries are
    marked failed with the reason. A given connection must have no transaction open, as this
    commits as it goes. All times recorded are `now`.
    """
    if batch < 1:
        raise ValueError("batch must be positive")
    if isinstance(source, psycopg.Connection):
        return _deliver(source, cipher, {"email": email, "sms": sms}, now, batch, monotonic)
    with source() as conn:
        return _deliver(conn, cipher, {"email": email, "sms": sms}, now, batch, monotonic)


_FAIL_UNCONFIGURED = """
UPDATE notification_deliveries SET status = 'failed', last_error = %(reason)s
WHERE id IN (SELECT id FROM notification_deliveries
             WHERE status = 'pending' AND next_attempt_at <= %(now)s AND channel = %(channel)s
             FOR UPDATE SKIP LOCKED)
"""

_CLAIM = """
WITH due AS (
    SELECT id FROM notification_deliveries
    WHERE status = 'pending' AND next_attempt_at <= %(now)s AND channel = ANY(%(channels)s)
    ORDER BY next_attempt_at, id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE notification_deliveries d SET attempts = d.attempts + 1, next_attempt_at = %(until)s
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.notification_id, d.channel, d.attempts
)
SELECT c.id, c.channel, c.attempts, n.title, n.body, n.created_at, u.active, p.email_enc, p.phone_enc
FROM claimed c
JOIN notifications n ON n.id = c.notification_id
JOIN users u ON u.id = n.user_id
JOIN people p ON p.id = u.person_id
ORDER BY c.id
"""


def _deliver(
    conn: psycopg.Connection,
    cipher: PiiCipher,
    senders: dict[str, Any],
    now: datetime,
    batch: int,
    monotonic: Callable[[], float],
) -> DeliveryCounts:
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("deliver_due commits as it goes: pass a connection with no transaction open")
    counts = DeliveryCounts()
    configured = [channel for channel, sender in senders.items() if sender is not None]
    started = monotonic()
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for channel, sender in senders.items():
            if sender is None:
                cur.execute(_FAIL_UNCONFIGURED, {"reason": NOT_CONFIGURED[channel], "now": now, "channel": channel})
                counts.failed += cur.rowcount
        rows = []
        if configured:
            until = now + timedelta(seconds=CLAIM_SECONDS)
            params = {"now": now, "channels": configured, "batch": batch, "until": until}
            rows = cur.execute(_CLAIM, params).fetchall()
    counts.claimed = len(rows)

    for i, row in enumerate(rows):
        if monotonic() - started > SEND_BUDGET_SECONDS:
            counts.released += _release(conn, rows[i:], now)
            break
        error = _attempt(row, cipher, senders)
        if error is None:
            _record(conn, row, "sent", None, None, now)
            counts.sent += 1
        elif error.permanent or row["attempts"] >= MAX_ATTEMPTS:
            _record(conn, row, "failed", str(error), None, now)
            counts.failed += 1
        else:
            _record(conn, row, "pending", str(error), now + backoff(row["attempts"]), now)
            counts.retrying += 1
    return counts


def _attempt(row: dict, cipher: PiiCipher, senders: dict[str, Any]) -> SendError | None:
    """Send one claimed delivery; the error, or None when it went out."""
    channel = row["channel"]
    what = "e-mail address" if channel == "email" else "phone number"
    if not row["active"]:
        return SendError("the user has been deactivated", permanent=True)
    blob = row["email_enc"] if channel == "email" else row["phone_enc"]
    if blob is None:
        return SendError(f"no {what} on file", permanent=True)
    try:
        address = cipher.decrypt("email" if channel == "email" else "phone", blob)
    except (ValueError, InvalidTag):
        return SendError(f"the {what} does not decrypt (has the data key changed?)", permanent=True)
    try:
        if channel == "email":
            created = int(row["created_at"].timestamp() * 1_000_000)
            body = row["body"] if row["body"].strip() else row["title"]
            senders["email"].send(address, row["title"], body, message_key=f"delivery.{row['id']}.{created}")
        else:
            senders["sms"].send(address, sms_text(row["title"], row["body"]))
    except SendError as exc:
        log.info("delivery %s (%s), attempt %s failed: %s", row["id"], channel, row["attempts"], exc)
        return exc
    except Exception as exc:  # a faulty provider must not stall the batch with rows left claimed
        log.exception("delivery %s (%s): the sender failed unexpectedly", row["id"], channel)
        return SendError(f"{type(exc).__name__}: {exc}")
    return None


def _record(
    conn: psycopg.Connection,
    row: dict,
    status: str,
    error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    """Write one attempt's outcome, only while the row still carries this dispatcher's claim."""
    with conn.transaction():
        cur = conn.execute(
            """UPDATE notification_deliveries
               SET status = %(status)s, last_error = %(error)s,
                   sent_at = CASE WHEN %(status)s = 'sent' THEN %(now)s::timestamptz END,
                   next_attempt_at = coalesce(%(next)s, next_attempt_at)
               WHERE id = %(id)s AND attempts = %(attempts)s AND status = 'pending'""",
            {
                "status": status,
                "error": error,
                "now": now,
                "next": next_attempt_at,
                "id": row["id"],
                "attempts": row["attempts"],
            },
        )
    if cur.rowcount != 1:
        log.warning("delivery %s: the claim was lost before its outcome (%s) was recorded", row["id"], status)


def _release(conn: psycopg.Connection, rows: list[dict], now: datetime) -> int:
    """Hand claimed, unsent deliveries back: due now, the attempt not counted."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """UPDATE notification_deliveries SET attempts = attempts - 1, next_attempt_at = %s
               WHERE id = %s AND attempts = %s AND status = 'pending'""",
            [(now, row["id"], row["attempts"]) for row in rows],
        )
    return len(rows)
