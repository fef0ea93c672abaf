"""The edge installs without the cloud's dependencies, so it must not import them."""

import subprocess
import sys

from tests.edge.conftest import REPO

FORBIDDEN = ("fastapi", "starlette", "uvicorn", "psycopg", "psycopg_pool", "cloud")


def test_edge_and_simulator_import_nothing_of_the_cloud() -> None:
    code = (
        "import sys, edge.agent, simulator.run\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
