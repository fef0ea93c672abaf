"""The workflow as tests drive it: the API on a real PostgreSQL, two seeded estates, a clock the test moves."""

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import scheduler, workflow
from cloud.security.pii import PiiCipher
from cloud.seed import Estate, seed_estate
from cloud.settings import CloudSettings
from cloud.storage.db import connect
from contract.clock import ManualClock

#: Tuesday 24 November 2026, 09:00 in Shanghai (01:00 UTC): office hours
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


@dataclass
class Session:
    """A logged-in user: requests carry their token."""

    client: TestClient
    username: str
    headers: dict[str, str]

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=json, headers=self.headers, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.put(path, json=json, headers=self.headers, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(path, json=json, headers=self.headers, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers=self.headers, **kw)

    def ok(self, method: str, path: str, json: Any = None, status: int | tuple[int, ...] = (200, 201, 204)) -> Any:
        resp = getattr(self, method)(path, json=json) if method != "get" else self.get(path)
        allowed = (status,) if isinstance(status, int) else status
        assert resp.status_code in allowed, f"{method.upper()} {path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content else None


@dataclass
class World:
    app: FastAPI
    client: TestClient
    clock: ManualClock
    settings: CloudSettings
    database_url: str
    a: Estate
    b: Estate
    cipher: PiiCipher
    _sessions: dict[str, Session] = field(default_factory=dict)
    _logged_in: dict[str, datetime] = field(default_factory=dict)

    def login(self, username: str, password: str = "community-demo") -> Session:
        fresh = self._logged_in.get(username)
        if fresh is not None and (self.clock.now() - fresh).total_seconds() > (self.settings.token_minutes - 1) * 60:
            del self._sessions[username]  # the token ran out with the moved clock: log in again
        if username not in self._sessions:
            self._logged_in[username] = self.clock.now()
            resp = self.client.post("/api/v1/auth/token", data={"username": username, "password": password})
            assert resp.status_code == 200, resp.text
            token = resp.json()["access_token"]
            self._sessions[username] = Session(self.client, username, {"Authorization": f"Bearer {token}"})
        return self._sessions[username]

    def as_(self, key: str, estate: str = "a") -> Session:
        """A session of one of the seeded users: admin, manager, desk, tech1, tech2, env1, guard, resident…"""
        est = self.a if estate == "a" else self.b
        return self.login(est.accounts[key][0])

    def tick(self) -> scheduler.PassCounts:
        """One scheduler pass at the clock's time (the background thread is off in tests)."""
        with connect(self.database_url) as conn:
            return scheduler.run_pass(conn, self.clock.now(), workflow.settings_from(self.settings))

    def sql(self, query: str, params: Any = ()) -> list[dict]:
        with connect(self.database_url) as conn:
            return conn.execute(query, params).fetchall()


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> CloudSettings:
    return CloudSettings(
        database_url=database_url,
        data_dir=data_dir,
        scheduler_enabled=False,
        jwt_secret="test-secret-" + "x" * 40,
        data_key=base64.b64encode(os.urandom(32)).decode(),
        **overrides,
    )


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    settings = make_settings(database_url, tmp_path)
    clock = ManualClock(START)
    app = create_app(settings, clock=clock, apply_migrations=False)
    cipher = app.state.cipher
    with connect(database_url) as conn:
        a = seed_estate(
            conn,
            cipher,
            site_id="estate-a",
            site_name="Sunny Gardens",
            timezone="Asia/Shanghai",
            prefix="a.",
            now=clock.now(),
        )
        b = seed_estate(
            conn,
            cipher,
            site_id="estate-b",
            site_name="Harbour View",
            timezone="Asia/Shanghai",
            prefix="b.",
            now=clock.now(),
            with_admin=False,
        )
        conn.commit()
    with TestClient(app) as client:
        yield World(app, client, clock, settings, database_url, a, b, cipher)
