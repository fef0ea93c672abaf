"""`community demo` (what `make demo` runs): a ticket opens by itself, and Ctrl-C stops everything it started."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from community.broker import free_port


def test_demo_opens_a_ticket_by_itself_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "COMMUNITY_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # the demo's own embedded PostgreSQL
    env.pop("MQTT_URL", None)  # and its own broker
    out = (tmp_path / "demo.out").open("w+b")
    demo = subprocess.Popen(
        [sys.executable, "-m", "community", "demo", "--http-port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 120  # the scenario's fault comes ~25 s after the devices start
        text = ""
        while time.monotonic() < deadline and demo.poll() is None:
            text = (tmp_path / "demo.out").read_text(errors="replace")
            started |= {p.pid for p in psutil.Process(demo.pid).children(recursive=True)}
            if re.search(r"ticket  T-\d{8}-\d{4} opened by itself: repair/facility", text):
                break
            time.sleep(1)
        assert "The platform is running" in text, text
        assert f"http://127.0.0.1:{port}/docs" in text
        assert re.search(r"ticket  T-\d{8}-\d{4} opened by itself: repair/facility, urgent: pump-1", text), text
        # Ctrl-C, as a terminal sends it to the foreground process group
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = (tmp_path / "demo.out").read_text(errors="replace")
    assert "stopped." in text
    alive = [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"still running after Ctrl-C: {alive}"
    # the embedded PostgreSQL was stopped too (its pid file goes when it shuts down)
    assert not (tmp_path / "var" / "pgdata" / "postmaster.pid").exists()
    logs = {p.name for p in (tmp_path / "var" / "logs").iterdir()}
    assert {"api.log", "ingest.log", "edge.log", "simulator.log"} <= logs
