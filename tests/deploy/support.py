"""Reading docker-compose.yml, the Dockerfile and the broker files the way their tools do.

No Docker engine runs here, so the deployment is checked by reading it: these helpers turn the
compose file into what a container would see (interpolated values, argv, which repository file
sits at which container path) and compute what the code accepts (CLI, settings env names).
"""

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from community.broker import BEGIN, END

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
MOSQUITTO_DIR = REPO / "deploy" / "mosquitto"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR and $$ (a literal $).
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution. A required variable that is unset becomes `<NAME>`."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"]
        current = env.get(name)
        if op in (":-", ":?") and not current:
            current = None
        if current is not None:
            return current
        if op in (":-", "-"):
            return arg or ""
        if op in (":?", "?"):
            return f"<{name}>"
        return ""

    return _INTERPOLATION.sub(replace, value)


def variables(value: str) -> set[str]:
    """The names of the variables a compose value refers to."""
    return {m["braced"] or m["named"] for m in _INTERPOLATION.finditer(value) if not m["escaped"]}


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as compose sees it with no variables set (defaults applied)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return _interpolate_tree(raw, env or {})


def raw_compose() -> dict[str, Any]:
    """docker-compose.yml before interpolation (to see which values come from variables)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's two forms, as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


# --- mounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    source: str  # a host path (bind) or a volume name
    target: PurePosixPath
    bind: bool
    read_only: bool

    def host_path(self) -> Path:
        assert self.bind, f"{self.source} is a volume, not a host path"
        return (REPO / self.source).resolve()


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    """The service's volumes, short or long syntax; bind sources are relative to the repository."""
    found = []
    for item in service.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else ""
            bind = source.startswith((".", "/", "~"))
            found.append(Mount(source, PurePosixPath(target), bind, "ro" in mode.split(",")))
        else:
            bind = item.get("type") == "bind"
            found.append(Mount(item["source"], PurePosixPath(item["target"]), bind, bool(item.get("read_only"))))
    return found


def host_path_of(service: Mapping[str, Any], container_path: str | PurePosixPath) -> Path | None:
    """The repository file a bind mount puts at `container_path`, or None when nothing does."""
    path = PurePosixPath(container_path)
    best: Mount | None = None
    for mount in mounts(service):
        covers = mount.bind and (path == mount.target or mount.target in path.parents)
        if covers and (best is None or len(mount.target.parts) > len(best.target.parts)):
            best = mount
    if best is None:
        return None
    return best.host_path() / path.relative_to(best.target)


# --- the image -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def dockerfile_exec_form(instruction: str) -> list[str]:
    """The last ENTRYPOINT or CMD, which must be in exec (JSON) form."""
    values = [args for word, args in dockerfile_instructions() if word == instruction]
    assert values, f"the Dockerfile has no {instruction}"
    parsed = yaml.safe_load(values[-1])
    assert isinstance(parsed, list), f"{instruction} must be in exec form (a JSON list): {values[-1]}"
    return [str(part) for part in parsed]


def builds_our_image(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return (REPO / context / dockerfile).resolve() == DOCKERFILE


def argv(service: Mapping[str, Any]) -> list[str]:
    """What the container runs: entrypoint + command, as Docker combines them."""
    entrypoint = service.get("entrypoint")
    command = service.get("command")
    if entrypoint is None and builds_our_image(service):
        entrypoint = dockerfile_exec_form("ENTRYPOINT")
        if command is None:
            command = dockerfile_exec_form("CMD")
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    if isinstance(command, str):
        command = shlex.split(command)
    return [*(entrypoint or []), *(command or [])]


# --- settings ------------------------------------------------------------------------------


def env_names(model: type[BaseSettings]) -> dict[str, tuple[str, ...]]:
    """Per field, the environment variables pydantic-settings reads it from (upper-cased)."""
    config = model.model_config
    prefix = config.get("env_prefix") or ""
    case_sensitive = bool(config.get("case_sensitive"))
    names: dict[str, tuple[str, ...]] = {}
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            choices = [choice for choice in alias.choices if isinstance(choice, str)]
        elif isinstance(alias, str):
            choices = [alias]
        elif field.alias:
            choices = [field.alias]
        else:
            choices = [prefix + field_name]
        if not case_sensitive:
            choices = [choice.upper() for choice in choices]
        names[field_name] = tuple(dict.fromkeys(choices))
    return names


def field_of_env(model: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> the field it sets."""
    return {env: field for field, envs in env_names(model).items() for env in envs}


# --- mosquitto -----------------------------------------------------------------------------


def mosquitto_environment_block(conf: Path = MOSQUITTO_DIR / "mosquitto.conf") -> dict[str, list[str]]:
    """Directives of the conf's "environment" block (the part compose uses as written)."""
    text = conf.read_text()
    block = text[text.index(BEGIN) : text.index(END)]
    directives: dict[str, list[str]] = {}
    for line in block.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            directives.setdefault(key, []).append(value.strip())
    return directives


def plain_passwords(path: Path = MOSQUITTO_DIR / "passwd") -> dict[str, str]:
    """The plain `user:password` lines, read as `mosquitto_passwd -U` reads them."""
    users = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        user, sep, password = line.partition(":")
        assert sep and user.strip() and password.strip(), f"{path}:{number}: not a `user:password` line: {line!r}"
        assert ":" not in password, f"{path}:{number}: mosquitto_passwd stops a password at ':'"
        users[user.strip()] = password.strip()
    return users


@dataclass(frozen=True)
class AclRule:
    kind: str  # "topic" (for `user`, or anonymous when None) or "pattern" (every client)
    access: str  # read, write, readwrite, deny
    topic: str
    user: str | None


def acl_rules(path: Path = MOSQUITTO_DIR / "acl") -> list[AclRule]:
    """The ACL file as mosquitto's acl_file parser reads it."""
    rules = []
    user: str | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "user":
            user = rest
        elif word in ("topic", "pattern"):
            access, _, topic = rest.partition(" ")
            if access not in ("read", "write", "readwrite", "deny"):
                access, topic = "readwrite", rest
            rules.append(AclRule(word, access, topic.strip(), user if word == "topic" else None))
        else:
            raise AssertionError(f"{path}:{number}: mosquitto does not know ACL line {raw!r}")
    return rules


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest)."""
    f_parts, t_parts = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


def acl_allows(rules: list[AclRule], user: str, topic: str, access: str) -> bool:
    """Whether the ACL gives `user` read or write on a concrete topic (filters: the same, for `+`/`#`)."""
    for rule in rules:
        if rule.kind == "topic" and rule.user != user:
            continue
        pattern = rule.topic.replace("%u", user) if rule.kind == "pattern" else rule.topic
        if rule.access in (access, "readwrite") and topic_matches(pattern, topic):
            return True
    return False


def shell_lines(script: str) -> Iterator[list[str]]:
    """The simple commands of a `sh -c` script, one per line."""
    for line in script.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield shlex.split(line)
