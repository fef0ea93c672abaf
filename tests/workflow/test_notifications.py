"""Notifications end to end: in-app messages, e-mail through a real SMTP server, SMS to the log,
retries with backoff, and two dispatchers at once sending each delivery exactly once."""

import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cloud.domain import notifications
from cloud.notify import SendError
from cloud.notify.dispatch import (
    BACKOFF_CAP_SECONDS,
    MAX_ATTEMPTS,
    SEND_BUDGET_SECONDS,
    SMS_MAX_CHARS,
    backoff,
    deliver_due,
    sms_text,
)
from cloud.notify.email import SmtpEmailSender, email_sender_from
from cloud.notify.sms import LogSmsProvider, sms_provider_from
from cloud.security.pii import PiiCipher
from cloud.settings import CloudSettings
from cloud.storage.db import connect
from contract.clock import ManualClock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse = refuse or set()
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [msg for _, rcpts, msg in self.messages if address in rcpts]


class SmtpServer:
    def __init__(self, mailbox: Mailbox, controller: Controller) -> None:
        self.mailbox = mailbox
        self.controller = controller
        self.port = controller.port

    def sender(self, **kwargs) -> SmtpEmailSender:
        return SmtpEmailSender("127.0.0.1", self.port, sender="desk@community.test", timeout=5, **kwargs)


def start_smtp(mailbox: Mailbox, **kwargs) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on a loopback port of its own, recording what it receives."""
    mailbox = Mailbox(refuse={"gone@example.org"})
    controller = start_smtp(mailbox)
    try:
        yield SmtpServer(mailbox, controller)
    finally:
        controller.stop()


@pytest.fixture
def cipher() -> PiiCipher:
    return PiiCipher(os.urandom(32))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as c:
        yield c


@pytest.fixture
def sms_log(tmp_path: Path) -> LogSmsProvider:
    return LogSmsProvider(tmp_path / "sms" / "sms.log", clock=ManualClock())


def make_user(
    conn: psycopg.Connection,
    cipher: PiiCipher,
    username: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    active: bool = True,
) -> int:
    email_enc, email_hash = cipher.seal("email", email)
    phone_enc, phone_hash = cipher.seal("phone", phone)
    person = conn.execute(
        """INSERT INTO people (kind, full_name, email_enc, email_hash, phone_enc, phone_hash)
           VALUES ('resident', %s, %s, %s, %s, %s) RETURNING id""",
        (username.title(), email_enc, email_hash, phone_enc, phone_hash),
    ).fetchone()
    user = conn.execute(
        """INSERT INTO users (username, password_hash, role, person_id, active)
           VALUES (%s, 'x', 'resident', %s, %s) RETURNING id""",
        (username, person["id"], active),
    ).fetchone()
    conn.commit()
    return user["id"]


def deliveries(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute(
        """SELECT d.*, n.user_id FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id
           ORDER BY d.id"""
    ).fetchall()
    conn.commit()
    return rows


def sms_lines(provider: LogSmsProvider) -> list[dict]:
    if not provider.path.exists():
        return []
    return [json.loads(line) for line in provider.path.read_text(encoding="utf-8").splitlines()]


# --- in-app messages and what notify writes ------------------------------------------------------


def test_notify_sends_email_sms_and_keeps_the_in_app_message(conn, cipher, clock, smtp, sms_log):
    anna = make_user(conn, cipher, "anna", email="Anna@Example.org", phone="+86 138-0000-0001")
    bert = make_user(conn, cipher, "bert", email="bert@example.org")
    gone = make_user(conn, cipher, "gone", email="gone-user@example.org", active=False)
    ticket = conn.execute(
        """INSERT INTO tickets (number, type, category, channel, priority, title, created_at, updated_at)
           VALUES ('T-20260105-0001', 'complaint', 'facility', 'app', 'normal', 'Lift stuck', %s, %s)
           RETURNING id""",
        (clock.now(), clock.now()),
    ).fetchone()["id"]

    ids = notifications.notify(
        conn,
        user_ids=[anna, anna, gone, 999_999],
        kind="status_changed",
        title="Your complaint T-20260105-0001 is in progress",
        body="A technician is on the way.\nExpected within the hour.",
        ticket_id=ticket,
        now=clock.now(),
    )
    conn.commit()
    assert len(ids) == 1  # anna once; the deactivated and the unknown user not at all
    rows = deliveries(conn)
    assert [(r["channel"], r["status"], r["attempts"], r["next_attempt_at"]) for r in rows] == [
        ("email", "pending", 0, clock.now()),
        ("sms", "pending", 0, clock.now()),
    ]

    counts = deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now())
    assert (counts.claimed, counts.sent, counts.retrying, counts.failed) == (2, 2, 0, 0)

    [msg] = smtp.mailbox.to("anna@example.org")
    assert msg["Subject"] == "Your complaint T-20260105-0001 is in progress"
    assert msg["From"] == "desk@community.test"
    assert msg["To"] == "anna@example.org"
    assert msg.get_content().replace("\r\n", "\n").strip() == "A technician is on the way.\nExpected within the hour."
    assert msg["Message-ID"].endswith("@community.test>")
    assert len(smtp.mailbox.messages) == 1
    [line] = sms_lines(sms_log)
    assert line["to"] == "+8613800000001"
    assert line["text"] == (
        "Your complaint T-20260105-0001 is in progress: A technician is on the way. Expected within the hour."
    )
    assert line["at"].endswith("Z")
    rows = deliveries(conn)
    assert all(r["status"] == "sent" and r["sent_at"] == clock.now() and r["attempts"] == 1 for r in rows)
    assert all(r["last_error"] is None for r in rows)

    # nothing is sent twice
    again = deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now() + timedelta(hours=1))
    assert again.claimed == 0
    assert len(smtp.mailbox.messages) == 1 and len(sms_lines(sms_log)) == 1

    # the in-app message, and only its owner can mark it read
    [item] = notifications.list_for_user(conn, anna)
    assert item["id"] == ids[0] and item["ticket_number"] == "T-20260105-0001" and item["read_at"] is None
    assert notifications.unread_count(conn, anna) == 1
    assert notifications.list_for_user(conn, bert) == []
    assert notifications.mark_read(conn, bert, ids[0], clock.now()) is False
    assert notifications.unread_count(conn, anna) == 1
    first_read = clock.now() + timedelta(minutes=5)
    assert notifications.mark_read(conn, anna, ids[0], first_read) is True
    assert notifications.mark_read(conn, anna, ids[0], first_read + timedelta(hours=1)) is True
    conn.commit()
    assert notifications.unread_count(conn, anna) == 0
    assert notifications.list_for_user(conn, anna, unread_only=True) == []
    assert notifications.list_for_user(conn, anna)[0]["read_at"] == first_read
    assert notifications.mark_read(conn, anna, 999_999, clock.now()) is False


def test_notify_writes_deliveries_only_for_channels_that_reach_the_user(conn, cipher, clock):
    mail_only = make_user(conn, cipher, "mailonly", email="m@example.org")
    phone_only = make_user(conn, cipher, "phoneonly", phone="13800000002")
    nothing = make_user(conn, cipher, "nothing")
    both = make_user(conn, cipher, "both", email="b@example.org", phone="13800000003")

    now = clock.now()
    ids = notifications.notify(
        conn, user_ids={mail_only, phone_only, nothing}, kind="k", title="t", body="", ticket_id=None, now=now
    )
    ids += notifications.notify(
        conn, user_ids=[both], kind="k", title="t", body="", ticket_id=None, now=now, channels=("email",)
    )
    conn.commit()
    assert len(ids) == 4  # everyone gets the in-app message
    assert sorted((r["user_id"], r["channel"]) for r in deliveries(conn)) == [
        (mail_only, "email"),
        (phone_only, "sms"),
        (both, "email"),
    ]
    assert notifications.notify(conn, user_ids=[], kind="k", title="t", body="", ticket_id=None, now=now) == []
    with pytest.raises(ValueError, match="fax"):
        notifications.notify(
            conn, user_ids=[both], kind="k", title="t", body="", ticket_id=None, now=now, channels=("fax",)
        )


def test_notify_is_part_of_the_callers_transaction(conn, cipher, clock):
    user = make_user(conn, cipher, "anna", email="a@example.org")
    notifications.notify(conn, user_ids=[user], kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    conn.rollback()  # the change that caused it did not happen: neither did the message
    assert notifications.list_for_user(conn, user) == []
    assert deliveries(conn) == []


def test_list_pages_newest_first_and_mark_all_read(conn, cipher, clock):
    user = make_user(conn, cipher, "anna")
    for i in range(5):
        notifications.notify(conn, user_ids=[user], kind="k", title=f"m{i}", body="", ticket_id=None, now=clock.now())
        clock.advance(60)
    conn.commit()
    titles = [n["title"] for n in notifications.list_for_user(conn, user, limit=2, offset=1)]
    assert titles == ["m3", "m2"]
    assert notifications.mark_all_read(conn, user, clock.now()) == 5
    assert notifications.unread_count(conn, user) == 0
    with pytest.raises(ValueError):
        notifications.list_for_user(conn, user, limit=0)


# --- dispatching -------------------------------------------------------------------------------


def test_smtp_down_is_retried_with_backoff_then_failed(conn, cipher, clock, sms_log):
    user = make_user(conn, cipher, "anna", email="anna@example.org")
    notifications.notify(
        conn, user_ids=[user], kind="k", title="t", body="b", ticket_id=None, now=clock.now(), channels=("email",)
    )
    conn.commit()
    down = SmtpEmailSender("127.0.0.1", free_port(), timeout=2)  # nothing listens there

    for attempt in range(1, MAX_ATTEMPTS + 1):
        counts = deliver_due(conn, cipher=cipher, email=down, sms=sms_log, now=clock.now())
        assert counts.claimed == 1
        [row] = deliveries(conn)
        assert row["attempts"] == attempt
        assert "cannot connect" in row["last_error"]
        if attempt == MAX_ATTEMPTS:
            assert (row["status"], counts.failed) == ("failed", 1)
            break
        assert (row["status"], counts.retrying) == ("pending", 1)
        wait = row["next_attempt_at"] - clock.now()
        assert wait == backoff(attempt) == timedelta(seconds=min(60 * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS))
        # not due before its time
        clock.advance(wait.total_seconds() - 1)
        assert deliver_due(conn, cipher=cipher, email=down, sms=sms_log, now=clock.now()).claimed == 0
        clock.advance(1)

    clock.advance(24 * 3600)  # failed for good: never tried again
    assert deliver_due(conn, cipher=cipher, email=down, sms=sms_log, now=clock.now()).claimed == 0


def test_delivery_goes_out_when_the_server_is_back(conn, cipher, clock, smtp, sms_log):
    user = make_user(conn, cipher, "anna", email="anna@example.org")
    notifications.notify(
        conn, user_ids=[user], kind="k", title="Back", body="b", ticket_id=None, now=clock.now(), channels=("email",)
    )
    conn.commit()
    down = SmtpEmailSender("127.0.0.1", free_port(), timeout=2)
    assert deliver_due(conn, cipher=cipher, email=down, sms=sms_log, now=clock.now()).retrying == 1
    clock.advance(60)
    assert deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now()).sent == 1
    [row] = deliveries(conn)
    assert (row["status"], row["attempts"], row["last_error"], row["sent_at"]) == ("sent", 2, None, clock.now())
    assert [m["Subject"] for m in smtp.mailbox.to("anna@example.org")] == ["Back"]


def test_refused_recipient_fails_at_once(conn, cipher, clock, smtp, sms_log):
    user = make_user(conn, cipher, "gone", email="gone@example.org")
    notifications.notify(conn, user_ids=[user], kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    conn.commit()
    counts = deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now())
    assert counts.failed == 1
    [row] = deliveries(conn)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "550" in row["last_error"]


def test_channels_without_a_sender_fail_with_the_reason(conn, cipher, clock):
    user = make_user(conn, cipher, "anna", email="anna@example.org", phone="13800000001")
    notifications.notify(conn, user_ids=[user], kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    conn.commit()
    counts = deliver_due(conn, cipher=cipher, email=None, sms=None, now=clock.now())
    assert (counts.claimed, counts.failed) == (0, 2)
    assert [(r["channel"], r["status"], r["attempts"], r["last_error"]) for r in deliveries(conn)] == [
        ("email", "failed", 0, "e-mail is not configured"),
        ("sms", "failed", 0, "SMS is not configured"),
    ]


def test_undeliverable_rows_fail_without_retrying(conn, cipher, clock, smtp, sms_log):
    leaver = make_user(conn, cipher, "leaver", email="leaver@example.org")
    rekeyed = make_user(conn, cipher, "rekeyed", email="rekeyed@example.org")
    notifications.notify(
        conn, user_ids=[leaver, rekeyed], kind="k", title="t", body="", ticket_id=None, now=clock.now()
    )
    conn.execute("UPDATE users SET active = false WHERE id = %s", (leaver,))
    conn.commit()
    other_key = PiiCipher(os.urandom(32))
    deliver_due(conn, cipher=other_key, email=smtp.sender(), sms=sms_log, now=clock.now())
    errors = {r["user_id"]: (r["status"], r["last_error"]) for r in deliveries(conn)}
    assert errors[leaver] == ("failed", "the user has been deactivated")
    assert errors[rekeyed][0] == "failed" and "does not decrypt" in errors[rekeyed][1]
    assert smtp.mailbox.messages == []


def test_send_budget_hands_unsent_rows_back(conn, cipher, clock, smtp, sms_log):
    users = [make_user(conn, cipher, f"u{i}", email=f"u{i}@example.org") for i in range(3)]
    notifications.notify(conn, user_ids=users, kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    conn.commit()
    ticks = iter([0.0, 0.0, SEND_BUDGET_SECONDS + 1])  # the claim, the first send, then too late
    counts = deliver_due(
        conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now(), monotonic=lambda: next(ticks)
    )
    assert (counts.claimed, counts.sent, counts.released) == (3, 1, 2)
    rows = deliveries(conn)
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1), ("pending", 0), ("pending", 0)]
    assert rows[1]["next_attempt_at"] == clock.now()  # due again at once
    assert deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now()).sent == 2
    assert len(smtp.mailbox.messages) == 3


def test_rows_locked_by_another_dispatcher_are_skipped(database_url, conn, cipher, clock, smtp, sms_log):
    users = [make_user(conn, cipher, f"u{i}", email=f"u{i}@example.org") for i in range(3)]
    notifications.notify(conn, user_ids=users, kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    conn.commit()
    first = deliveries(conn)[0]["id"]
    with connect(database_url) as other:
        # another dispatcher in the middle of its claim holds this row
        other.execute("SELECT id FROM notification_deliveries WHERE id = %s FOR UPDATE", (first,))
        counts = deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now())
        assert (counts.claimed, counts.sent) == (2, 2)
        other.rollback()
    assert [r["status"] for r in deliveries(conn)] == ["pending", "sent", "sent"]
    assert deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now()).sent == 1


class MeetFirst:
    """Wraps a sender: each thread's first send waits for the other thread's, so both
    dispatchers are certainly in the middle of a batch at the same time."""

    def __init__(self, inner, barrier: threading.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.local = threading.local()

    def send(self, *args, **kwargs) -> None:
        if not getattr(self.local, "met", False):
            self.local.met = True
            self.barrier.wait(timeout=30)
        self.inner.send(*args, **kwargs)


def test_two_dispatchers_send_each_delivery_exactly_once(database_url, conn, cipher, clock, smtp, tmp_path):
    n = 30
    users = [make_user(conn, cipher, f"u{i}", email=f"u{i}@example.org", phone=f"+8613900000{i:03d}") for i in range(n)]
    notifications.notify(conn, user_ids=users, kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    conn.commit()
    sms = LogSmsProvider(tmp_path / "sms.log")
    email = MeetFirst(smtp.sender(), threading.Barrier(2))
    totals: list[int] = []
    errors: list[BaseException] = []

    def dispatcher() -> None:
        try:
            sent = 0
            with connect(database_url) as own:
                while True:
                    counts = deliver_due(own, cipher=cipher, email=email, sms=sms, now=clock.now(), batch=4)
                    sent += counts.sent
                    if counts.claimed == 0:
                        break
            totals.append(sent)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sum(totals) == 2 * n
    assert all(total > 0 for total in totals)  # both took part
    per_address = Counter(rcpt for _, rcpts, _ in smtp.mailbox.messages for rcpt in rcpts)
    assert per_address == {f"u{i}@example.org": 1 for i in range(n)}
    assert Counter(line["to"] for line in sms_lines(sms)) == {f"+8613900000{i:03d}": 1 for i in range(n)}
    assert {(r["status"], r["attempts"]) for r in deliveries(conn)} == {("sent", 1)}


def test_deliver_due_takes_a_connection_factory_and_refuses_an_open_transaction(
    database_url, conn, cipher, clock, smtp, sms_log
):
    user = make_user(conn, cipher, "anna", email="anna@example.org")
    notifications.notify(conn, user_ids=[user], kind="k", title="t", body="b", ticket_id=None, now=clock.now())
    with pytest.raises(ValueError, match="no transaction open"):
        deliver_due(conn, cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now())
    conn.commit()
    counts = deliver_due(
        lambda: connect(database_url), cipher=cipher, email=smtp.sender(), sms=sms_log, now=clock.now()
    )
    assert counts.sent == 1


# --- the senders ---------------------------------------------------------------------------------


def test_smtp_login_and_header_injection(tmp_path):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"desk", b"s3cret")
        return AuthResult(success=ok, handled=False)  # unhandled failure: the server answers 535

    mailbox = Mailbox()
    controller = start_smtp(mailbox, authenticator=authenticate, auth_require_tls=False)
    try:
        sender = SmtpEmailSender(
            "127.0.0.1", controller.port, "desk", "s3cret", sender="desk@community.test", timeout=5
        )
        sender.send("anna@example.org", "Hello\r\nBcc: eve@example.org", "body", message_key="delivery.7.1")
        [(_, rcpts, msg)] = mailbox.messages
        assert rcpts == ["anna@example.org"]
        assert msg["Subject"] == "Hello Bcc: eve@example.org" and msg["Bcc"] is None
        assert msg["Message-ID"] == "<delivery.7.1@community.test>"

        wrong = SmtpEmailSender("127.0.0.1", controller.port, "desk", "wrong", sender="desk@community.test", timeout=5)
        with pytest.raises(SendError) as info:
            wrong.send("anna@example.org", "s", "b")
        assert "535" in str(info.value)
        assert not info.value.permanent  # a configuration fix makes the retries succeed
    finally:
        controller.stop()


def test_senders_from_settings(tmp_path):
    assert email_sender_from(CloudSettings(_env_file=None, smtp_host=None)) is None
    sender = email_sender_from(
        CloudSettings(
            _env_file=None,
            smtp_host="mail.example.org",
            smtp_port=587,
            smtp_username="desk",
            smtp_password="pw",
            smtp_starttls=True,
            smtp_from="desk@example.org",
        )
    )
    assert sender is not None
    assert (sender.host, sender.port, sender.username, sender.password, sender.starttls, sender.sender) == (
        "mail.example.org",
        587,
        "desk",
        "pw",
        True,
        "desk@example.org",
    )
    assert sms_provider_from(CloudSettings(_env_file=None, sms_provider="none")) is None
    default = sms_provider_from(CloudSettings(_env_file=None, data_dir=tmp_path), tmp_path)
    assert isinstance(default, LogSmsProvider) and default.path == tmp_path / "sms.log"
    explicit = sms_provider_from(CloudSettings(_env_file=None, sms_log_file=tmp_path / "x.log"), tmp_path)
    assert isinstance(explicit, LogSmsProvider) and explicit.path == tmp_path / "x.log"


def test_sms_text_is_one_line_and_bounded():
    assert sms_text("Title", "") == "Title"
    assert sms_text("Title", "line one\nline two") == "Title: line one line two"
    long = sms_text("T", "x" * 1000)
    assert len(long) == SMS_MAX_CHARS and long.endswith("…")
