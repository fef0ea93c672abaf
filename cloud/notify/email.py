"""E-mail over SMTP with the standard library: one connection per message, with a timeout."""

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from cloud.notify import SendError
from cloud.settings import CloudSettings

#: Seconds smtplib waits on each network operation (connect, each command), so a server that
#: hangs cannot hold the dispatcher: a send takes at most a few of these.
SMTP_TIMEOUT_SECONDS = 20.0


class EmailSender(Protocol):
    def send(self, to: str, subject: str, body: str, *, message_key: str | None = None) -> None:
        """Send one plain-text message or raise SendError."""


def _one_line(text: str) -> str:
    """Headers are one line: a title with line breaks must not add headers of its own."""
    return " ".join(text.split())


class SmtpEmailSender:
    """Sends through one SMTP server, with STARTTLS and login when configured."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        sender: str = "community@localhost",
        *,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.sender = sender
        self.timeout = timeout

    def _message(self, to: str, subject: str, body: str, message_key: str | None) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = _one_line(to)
        msg["Subject"] = _one_line(subject)
        msg["Date"] = formatdate(usegmt=True)
        domain = self.sender.rpartition("@")[2] or "localhost"
        # the same key gives the same Message-ID: a copy resent after a crash is recognisably a duplicate
        msg["Message-ID"] = f"<{message_key}@{domain}>" if message_key else make_msgid(domain=domain)
        msg.set_content(body)
        return msg

    def send(self, to: str, subject: str, body: str, *, message_key: str | None = None) -> None:
        """Send one message; SendError says why not (permanent when the server refused it for good)."""
        try:
            msg = self._message(to, subject, body, message_key)
        except ValueError as exc:
            raise SendError(f"the message could not be built: {exc}", permanent=True) from exc
        where = f"SMTP {self.host}:{self.port}"
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"{where}: cannot connect: {exc}") from exc
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise SendError(
                f"{where}: recipient refused: {exc.recipients}", permanent=all(c >= 500 for c in codes)
            ) from exc
        except smtplib.SMTPDataError as exc:
            permanent = exc.smtp_code >= 500
            raise SendError(
                f"{where}: message refused: {exc.smtp_code} {exc.smtp_error!r}", permanent=permanent
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"{where}: {type(exc).__name__}: {exc}") from exc
        finally:
            # once the server has accepted the message, a failing QUIT must not make it a failure
            # (that would send it again)
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def email_sender_from(settings: CloudSettings) -> SmtpEmailSender | None:
    """The configured SMTP sender; None when no SMTP host is set (e-mail is then not sent)."""
    if not settings.smtp_host:
        return None
    return SmtpEmailSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        settings.smtp_starttls,
        settings.smtp_from,
    )
