"""Start child processes of `community …`, stop them all on Ctrl-C or when one dies."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


class Supervisor:
    def __init__(self, *, log_dir: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes], Path | None]] = []
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.exit_code = 0
        self._stopping = False

    def spawn(self, name: str, args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out: IO[bytes] | None = None
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            out = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "community", *args],
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        self.children.append((name, proc, log_path))
        return proc

    def dead_child(self) -> tuple[str, int, Path | None] | None:
        for name, proc, log_path in self.children:
            code = proc.poll()
            if code is not None:
                return name, code, log_path
        return None

    def wait(self, *, poll: float = 0.5) -> None:
        """Block until Ctrl-C/SIGTERM or a child exits; then stop the rest."""
        stop = {"flag": False}

        def _stop(_sig: int, _frame: object) -> None:
            stop["flag"] = True

        old_int = signal.signal(signal.SIGINT, _stop)
        old_term = signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop["flag"]:
                dead = self.dead_child()
                if dead is not None:
                    name, code, log_path = dead
                    print(
                        f"{name} exited with code {code}" + (f"; see {log_path}" if log_path else ""), file=sys.stderr
                    )
                    self.exit_code = code or 1
                    break
                time.sleep(poll)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM to every child, newest first; SIGKILL to those still running after the timeout."""
        if self._stopping:
            return
        self._stopping = True
        for _name, proc, _log in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
