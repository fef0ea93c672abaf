"""Logging for the edge processes (agent, simulator): one format, pymodbus kept quiet."""

import logging


def configure_logging(level: str = "INFO") -> None:
    """Log lines with time, level and source.

    pymodbus logs every timeout and refused connection as an error with a hex dump of the last
    frames; our drivers already report those (once, naming the device), so pymodbus speaks only
    at DEBUG.
    """
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
