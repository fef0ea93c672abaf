"""Web-screen tests: the workflow's `world` (API on a real database, two seeded estates), a real
uvicorn server for the browser, and Debian's chromium driven by Playwright."""

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from cloud.api.app import create_app
from tests.workflow.conftest import World, world  # noqa: F401 - the fixture, shared

#: screenshots of every screen, kept for CI to publish (ignored by git; docs/web.md)
SCREENS_DIR = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "screens"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedApp:
    """A second instance of the API (same database, keys and clock as `world`) served by uvicorn on a free port."""

    def __init__(self, of: World) -> None:
        self.app = create_app(of.settings, clock=of.clock, apply_migrations=False)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> "ServedApp":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def served(world: World) -> Iterator[ServedApp]:  # noqa: F811 - `world` is the imported fixture
    app = ServedApp(world).start()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's chromium (never `playwright install`); `make test` checks that it is installed.

    One per test module, not per session: while Playwright's sync API is open it marks the main
    thread's event loop as running, and `asyncio.run` in any later test would refuse to start.
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "chromium is not installed: apt-get install chromium (.ci/run does)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screens_dir() -> Path:
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENS_DIR
