"""Apply the numbered SQL migrations in order, once each, under an advisory lock.

`community db upgrade` runs this, and so does every cloud process at start; concurrent
starters wait on the lock, and the second finds nothing left to do.
"""

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: Any fixed number: the advisory lock that serialises migrations across processes.
_LOCK_KEY = 7_342_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    folder = resources.files("cloud.storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


def _log_warning(diagnostic: psycopg.errors.Diagnostic) -> None:
    """A migration's WARNING asks the operator to act (e.g. 0021 when it may not create a role):
    psycopg drops server messages unless handled, so they go to the log. NOTICEs stay quiet."""
    if diagnostic.severity_nonlocalized == "WARNING":
        hint = f" ({diagnostic.message_hint})" if diagnostic.message_hint else ""
        log.warning("database: %s%s", diagnostic.message_primary, hint)


def upgrade(database_url: str) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.add_notice_handler(_log_warning)
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in available():
                if migration.version in done:
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied_now.append(f"{migration.version:04d}_{migration.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def current_version(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE to_regclass('schema_migrations') IS NOT NULL"
        ).fetchone()
        return int(row[0]) if row else 0
