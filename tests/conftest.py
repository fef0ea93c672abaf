"""Fixtures that start the real services the tests talk to.

`MQTT_URL` and `DATABASE_URL`, when set, point the tests at running services; otherwise the
fixtures start a `mosquitto` process with the repository's config and an embedded PostgreSQL 18.
Storage tests (marker `storage`) run against every PostgreSQL available: the embedded one
always, and the server behind `DATABASE_URL` too when it is set.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cloud.storage.migrate import upgrade
from community.broker import MosquittoProcess
from community.embedded_db import EmbeddedPostgres


@pytest.fixture(autouse=True)
def edge_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every agent a test starts (in-process or as a CLI process) keeps its outbox and pushed
    configuration in a folder of its own, never in the repository's `var/edge`."""
    path = tmp_path_factory.mktemp("edge-state")
    monkeypatch.setenv("COMMUNITY_EDGE_STATE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory):
    """Start a private mosquitto (the repository's config, a port of its own); stopped at the end."""
    started: list[MosquittoProcess] = []

    def start(*, auth_lines: list[str] | None = None, data_dir: Path | None = None) -> MosquittoProcess:
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed: apt-get install mosquitto (or run .ci/run as root)")
        proc = MosquittoProcess(data_dir or tmp_path_factory.mktemp("mosquitto"), auth_lines=auth_lines)
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker for tests that need an ordinary one: MQTT_URL, or a fresh mosquitto for this test.

    Fresh per test, because gateways leave retained births and statuses behind that would reach
    the next test's ingest. With MQTT_URL, tests keep apart by their unique site and gateway ids.
    """
    if os.environ.get("MQTT_URL"):
        yield os.environ["MQTT_URL"]
        return
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (or run .ci/run as root)")
    proc = MosquittoProcess(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture
def unique_id() -> str:
    """A slug no other test uses, for site and gateway ids on a shared broker."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# --- the face photo set -------------------------------------------------------------------


def faces_path() -> Path:
    """Where the shared photo set is: FACES_DIR, or ../shared/faces beside the repository."""
    return Path(os.environ.get("FACES_DIR") or Path(__file__).resolve().parent.parent.parent / "shared" / "faces")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The photo set (enroll/<person>/*, probes/*), kept outside the repository.

    Missing: the test is skipped, naming the path, so a plain `make test` runs without photos;
    with REQUIRE_FACES=1 (set by .ci/run) it fails instead.
    """
    path = faces_path()
    if not (path / "enroll").is_dir() or not (path / "probes").is_dir():
        reason = f"face photo set not found at {path} (set FACES_DIR to the directory holding enroll/ and probes/)"
        if os.environ.get("REQUIRE_FACES") == "1":
            pytest.fail(reason + "; REQUIRE_FACES=1 makes this a failure")
        pytest.skip(reason)
    return path


# --- PostgreSQL ---------------------------------------------------------------------------

EMBEDDED = "embedded-pg18"
EXTERNAL = "database-url"


def _server_names() -> list[str]:
    return [EMBEDDED, EXTERNAL] if os.environ.get("DATABASE_URL") else [EMBEDDED]


class DatabaseFactory:
    """Creates fresh, migrated databases on the servers under test; drops them at the end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._embedded: EmbeddedPostgres | None = None
        self._created: list[tuple[str, str]] = []  # (admin url, database name)
        self._by_server: dict[str, str] = {}

    def admin_url(self, server: str) -> str:
        if server == EXTERNAL:
            return os.environ["DATABASE_URL"]
        if self._embedded is None:
            self._embedded = EmbeddedPostgres(self._tmp.mktemp("pg") / "data", cleanup="delete").start()
        return self._embedded.url()

    def create(self, server: str) -> str:
        admin = self.admin_url(server)
        name = f"community_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append((admin, name))
        url = make_conninfo(admin, dbname=name)
        upgrade(url)
        return url

    def shared(self, server: str) -> str:
        """One migrated database per server for the whole session (tables emptied per test)."""
        if server not in self._by_server:
            self._by_server[server] = self.create(server)
        return self._by_server[server]

    def close(self) -> None:
        for admin, name in self._created:
            try:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            except psycopg.Error:
                pass
        if self._embedded is not None:
            self._embedded.stop()


def empty_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                     AND c.relname <> 'schema_migrations'"""
            ).fetchall()
        ]
        if names:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in names)
                )
            )


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> str:
    """An empty, migrated database: on DATABASE_URL's server when set, else the embedded one."""
    url = database_factory.shared(EXTERNAL if os.environ.get("DATABASE_URL") else EMBEDDED)
    empty_tables(url)
    return url


@pytest.fixture
def storage_url(request: pytest.FixtureRequest, database_factory: DatabaseFactory) -> str:
    """Like database_url, once per PostgreSQL under test (embedded 18, and DATABASE_URL's)."""
    url = database_factory.shared(request.param)
    empty_tables(url)
    return url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage_url" in metafunc.fixturenames:
        metafunc.parametrize("storage_url", _server_names(), indirect=True)
