"""docs/operations.md must describe every setting the code has, by its real names and defaults."""

import re

import pytest

from tests.deploy import support
from tests.deploy.settings_table import MODELS, rows
from tests.deploy.support import REPO

DOC = REPO / "docs" / "operations.md"


def documented(model_name: str, text: str) -> dict[str, dict[str, str]]:
    """The rows of the table under the `### <model_name>` heading: field -> its columns."""
    match = re.search(rf"^### {model_name}\s*$(.*?)(?=^#)", text + "\n#", re.S | re.M)
    assert match, f"docs/operations.md has no `### {model_name}` section"
    table: dict[str, dict[str, str]] = {}
    for line in match[1].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = {"env": cells[1], "default": cells[2], "meaning": cells[3]}
    return table


def check(model_name: str, text: str) -> None:
    table = documented(model_name, text)
    fields = {row.field: row for row in rows(MODELS[model_name])}
    missing = sorted(set(fields) - set(table))
    assert not missing, f"docs/operations.md does not document {model_name} fields: {missing}"
    unknown = sorted(set(table) - set(fields))
    assert not unknown, f"docs/operations.md documents {model_name} fields the code does not have: {unknown}"
    for name, row in fields.items():
        doc = table[name]
        env = ", ".join(f"`{env}`" for env in row.env)
        assert doc["env"] == env, f"{model_name}.{name}: read from {env}, doc says {doc['env']}"
        assert doc["default"] == row.default, (
            f"{model_name}.{name}: default is {row.default}, doc says {doc['default']}"
        )
        assert doc["meaning"], f"{model_name}.{name}: say what it is for"


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_setting_is_documented_with_its_names_and_default(model_name: str) -> None:
    check(model_name, DOC.read_text())


def test_the_check_notices_a_missing_or_wrong_row() -> None:
    text = DOC.read_text()
    with pytest.raises(AssertionError, match="http_port"):
        check("CloudSettings", re.sub(r"^\| `http_port` .*\n", "", text, flags=re.M))
    with pytest.raises(AssertionError, match="ingest_queue_size: default"):
        check("CloudSettings", text.replace("| `20000` |", "| `10000` |"))
    with pytest.raises(AssertionError, match="log_level: read from"):
        check("EdgeSettings", text.replace("`COMMUNITY_LOG_LEVEL`, `LOG_LEVEL`", "`LOG_LEVEL`"))


def test_the_env_example_names_every_variable_compose_reads() -> None:
    used: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, str):
            used.update(support.variables(node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(support.raw_compose())
    example = REPO / "deploy" / "compose.env.example"
    listed = {line.split("=", 1)[0] for line in example.read_text().splitlines() if line and not line.startswith("#")}
    assert used == listed, f"compose reads {sorted(used)}; {example.name} lists {sorted(listed)}"
