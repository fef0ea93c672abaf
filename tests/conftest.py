"""Fixtures that start the real services the tests talk to.

`MQTT_URL` and `DATABASE_URL`, when set, point the tests at running services; otherwise the
fixtures start a `mosquitto` process with the repository's config and an embedded PostgreSQL 18.
Storage tests (marker `storage`) run against every PostgreSQL available: the embedded one
always, and the server behind `DATABASE_URL` too when it is set.
"""

import os
import shutil
import uuid
from pathlib import Path

import pytest

from community.broker import MosquittoProcess


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


@pytest.fixture(scope="session")
def mqtt_url(mosquitto_factory) -> str:
    """The broker for tests that need an ordinary one: MQTT_URL, or a private mosquitto."""
    if os.environ.get("MQTT_URL"):
        return os.environ["MQTT_URL"]
    return mosquitto_factory().url


@pytest.fixture
def unique_id() -> str:
    """A slug no other test uses, for site and gateway ids on a shared broker."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
