"""A null-modem cable in software: two pseudo-terminals whose master sides a thread cross-connects.

Whatever is written to one end's terminal (`a_path`) is read from the other's (`b_path`) and back,
byte for byte, like two RS-232/RS-485 adapters wired together. The edge agent opens one end as its
serial port and the simulator serves Modbus RTU on the other, so RTU is exercised through real
terminal devices and pyserial, without `socat` or hardware. Linux and macOS (POSIX ptys) only.
"""

import contextlib
import logging
import os
import selectors
import threading
import tty
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


class VirtualSerialLine:
    """Two linked terminals; `link_a`/`link_b` make symlinks to them (e.g. where a gateway config points)."""

    def __init__(self, link_a: str | Path | None = None, link_b: str | Path | None = None) -> None:
        self.link_a = Path(link_a) if link_a is not None else None
        self.link_b = Path(link_b) if link_b is not None else None
        self._fds: list[int] = []
        self._masters: tuple[int, int] = (-1, -1)
        self._names: tuple[str, str] = ("", "")
        self._stop_r = self._stop_w = -1
        self._thread: threading.Thread | None = None
        self.bytes_relayed = 0

    @property
    def a_path(self) -> str:
        return str(self.link_a) if self.link_a is not None else self._names[0]

    @property
    def b_path(self) -> str:
        return str(self.link_b) if self.link_b is not None else self._names[1]

    def start(self) -> "VirtualSerialLine":
        master_a, slave_a = os.openpty()
        master_b, slave_b = os.openpty()
        self._fds = [master_a, slave_a, master_b, slave_b]
        # Raw at once: a fresh terminal echoes and translates line ends until someone configures it.
        for fd in (slave_a, slave_b):
            tty.setraw(fd)
        # Our own slave descriptors stay open, so a master never reads EOF/EIO while nobody has the
        # port open (the agent reconnecting); we never read from them.
        self._masters = (master_a, master_b)
        self._names = (os.ttyname(slave_a), os.ttyname(slave_b))
        for link, target in ((self.link_a, self._names[0]), (self.link_b, self._names[1])):
            if link is not None:
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="virtual-serial-line", daemon=True)
        self._thread.start()
        log.info("virtual serial line: %s <-> %s", self.a_path, self.b_path)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        self._thread = None
        for fd in [*self._fds, self._stop_r, self._stop_w]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        for link in (self.link_a, self.link_b):
            if link is not None and link.is_symlink():
                link.unlink()

    def _relay(self) -> None:
        master_a, master_b = self._masters
        other = {master_a: master_b, master_b: master_a}
        with selectors.DefaultSelector() as sel:
            sel.register(master_a, selectors.EVENT_READ)
            sel.register(master_b, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fd == self._stop_r:
                        return
                    try:
                        data = os.read(key.fd, 4096)
                    except OSError:  # the far side went away for a moment; keep the line
                        continue
                    view = memoryview(data)
                    while view:
                        try:
                            written = os.write(other[key.fd], view)
                        except BlockingIOError:
                            continue
                        except OSError:
                            break
                        view = view[written:]
                    self.bytes_relayed += len(data)

    def __enter__(self) -> "VirtualSerialLine":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
