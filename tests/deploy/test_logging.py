"""The CLI's logging writes to stderr as it is at each line (community.logs.CurrentStderr)."""

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from community.logs import setup_logging


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_line_after_the_set_up_stderr_was_closed_goes_to_the_current_one(
    restored_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as typer's CliRunner does: its own stderr during the command, closed when it returns
    during = io.StringIO()
    monkeypatch.setattr(sys, "stderr", during)
    setup_logging("INFO")
    logging.getLogger("community.test").info("during the command")
    assert "INFO    community.test: during the command" in during.getvalue()
    during.close()

    after = io.StringIO()
    monkeypatch.setattr(sys, "stderr", after)
    logging.getLogger("community.test").warning("after it, from anywhere")
    assert "WARNING community.test: after it, from anywhere" in after.getvalue()
