"""`community classifier retrain` on a real database: prints the figures and says what it decided."""

from typer.testing import CliRunner

from cloud.storage.db import connect
from community.cli import app


def test_retrain_from_the_command_line_stores_and_activates_a_model(database_url: str) -> None:
    result = CliRunner().invoke(app, ["classifier", "retrain"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    with connect(database_url) as conn:
        [stored] = conn.execute("SELECT id, active, created_by, figures, note FROM classifier_models").fetchall()
    assert stored["active"] and stored["created_by"].startswith("cli:") and stored["note"] == "no model was active"
    figures = stored["figures"]
    lines = result.output.splitlines()
    assert "held-out figure" in lines[1] and "majority" in lines[1]
    row = next(line.split() for line in lines if line.startswith("subcategory_macro_f1"))
    assert row == [
        "subcategory_macro_f1",
        f"{figures['subcategory_macro_f1']:.3f}",
        "-",
        f"{figures['baseline_subcategory_macro_f1']:.3f}",
    ]
    assert lines[-1] == f"model {stored['id']}: no model was active; active model: {stored['id']}"
