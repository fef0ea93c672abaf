"""The configuration tables of docs/operations.md, computed from the settings models.

`python -m tests.deploy.settings_table` prints them (meanings from each field's description or
its `#:` comment; fill in the rest by hand); tests/deploy/test_operations_doc.py fails when the
document and the models disagree.
"""

import inspect
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydantic_settings import BaseSettings

from cloud.settings import CloudSettings
from edge.settings import EdgeSettings
from tests.deploy.support import env_names

MODELS: dict[str, type[BaseSettings]] = {"CloudSettings": CloudSettings, "EdgeSettings": EdgeSettings}


@dataclass(frozen=True)
class Row:
    field: str
    env: tuple[str, ...]
    default: str
    meaning: str

    def markdown(self) -> str:
        env = ", ".join(f"`{name}`" for name in self.env)
        return f"| `{self.field}` | {env} | {self.default} | {self.meaning} |"


def render_default(value: object) -> str:
    """How a default is written in the table: `value`, or "unset" for None."""
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    elif isinstance(value, Path):
        value = value.as_posix()
    return f"`{value}`"


def _comments(model: type[BaseSettings]) -> dict[str, str]:
    """The `#:` comment lines written above each field in the model's source."""
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(model).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and pending:
            found[match[1]] = " ".join(pending)
        pending = []
    return found


def rows(model: type[BaseSettings]) -> list[Row]:
    comments = _comments(model)
    names = env_names(model)
    return [
        Row(
            field=name,
            env=names[name],
            default=render_default(field.get_default(call_default_factory=True)),
            meaning=field.description or comments.get(name, ""),
        )
        for name, field in model.model_fields.items()
    ]


def main() -> None:
    for title, model in MODELS.items():
        print(f"### {title}\n")
        print("| setting | environment | default | meaning |")
        print("|---|---|---|---|")
        for row in rows(model):
            print(row.markdown())
        print()


if __name__ == "__main__":
    main()
