"""Start an MQTT broker for tests and the demo: Mosquitto with the repository's config when the
binary is on PATH, an in-process amqtt broker otherwise (slower, demo only)."""

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from community.paths import MOSQUITTO_CONF

log = logging.getLogger(__name__)

BEGIN = "# --- environment: BEGIN"
END = "# --- environment: END"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def render_mosquitto_conf(
    port: int,
    data_dir: Path,
    *,
    bind: str = "127.0.0.1",
    auth_lines: list[str] | None = None,
    source: Path = MOSQUITTO_CONF,
) -> str:
    """The repository's mosquitto.conf with only its environment block replaced.

    `auth_lines` replaces anonymous access (for example a password_file and acl_file line).
    """
    text = source.read_text()
    start, end = text.index(BEGIN), text.index(END)
    env = [
        f"{BEGIN} (rendered for {bind}:{port})",
        f"listener {port} {bind}",
        # stay the user who started it (as root Mosquitto would switch to `mosquitto`, which
        # cannot write a data folder made by the tests or the demo)
        f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        *(auth_lines if auth_lines is not None else ["allow_anonymous true"]),
        f"persistence_location {data_dir.resolve()}/",
    ]
    return text[:start] + "\n".join(env) + "\n" + text[end:]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


class MosquittoProcess:
    """A mosquitto child process running the repository's config on a port of its own."""

    def __init__(self, data_dir: Path, port: int | None = None, *, auth_lines: list[str] | None = None) -> None:
        binary = shutil.which("mosquitto")
        if binary is None:
            raise FileNotFoundError("mosquitto is not on PATH (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.auth_lines = auth_lines
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "MosquittoProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(render_mosquitto_conf(self.port, self.data_dir, auth_lines=self.auth_lines))
        log_file = (self.data_dir / "mosquitto.log").open("ab")
        # its own session: a Ctrl-C in the terminal reaches the launcher, which stops the broker
        # last, after the processes that still need it
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=log_file, stderr=log_file, start_new_session=True
        )
        try:
            wait_for_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start; see {self.data_dir / 'mosquitto.log'}") from None
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "MosquittoProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InProcessBroker:
    """amqtt running on a thread of this process: the demo's broker when Mosquitto is absent.

    It speaks MQTT 3.1.1 only, which is what every client of the platform uses.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "InProcessBroker":
        self._thread = threading.Thread(target=self._run, name="amqtt", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise RuntimeError(f"in-process broker failed to start: {self._error}")
        wait_for_port("127.0.0.1", self.port)
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def boot() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        try:
            self._loop.run_until_complete(boot())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def start_local_broker(data_dir: Path, port: int | None = None) -> MosquittoProcess | InProcessBroker:
    """Mosquitto when installed, else the in-process broker; says which."""
    if shutil.which("mosquitto"):
        return MosquittoProcess(data_dir, port).start()
    log.warning("mosquitto is not on PATH: using the in-process amqtt broker (fine for a demo, slow)")
    return InProcessBroker(port).start()
