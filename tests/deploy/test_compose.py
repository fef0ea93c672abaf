"""docker-compose.yml must be true to the code: commands, variables, mounted files, broker files.

No Docker engine runs here; these tests read the compose file as compose would and check each
piece against what it names: the `community` CLI parses every command (the real typer app, with
container paths mapped to the repository files mounted there), every variable of the platform's
services is consumed by CloudSettings or EdgeSettings, every bind mount exists, and the broker is
given THE mosquitto.conf plus the files its environment block names.
"""

from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

import community.cli
from cloud.settings import CloudSettings
from contract import topics
from contract.urls import parse_mqtt_url
from edge.settings import EdgeSettings
from tests.deploy import support
from tests.deploy.support import REPO

# Which settings model reads the environment of each service that runs our image.
SETTINGS_OF = {"cloud": CloudSettings, "edge": EdgeSettings, "simulator": EdgeSettings}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return support.load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def test_services_are_the_ones_the_issue_names(services: dict[str, dict[str, Any]]) -> None:
    assert {"timescaledb", "mosquitto", "cloud", "simulator", "edge", "grafana"} <= set(services)
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    pg_major = int(services["timescaledb"]["image"].rsplit("-pg", 1)[1])
    assert pg_major >= 16, "the issue asks for PostgreSQL 16 or later under TimescaleDB"
    assert services["grafana"]["image"].startswith("grafana/grafana")
    for name in SETTINGS_OF:
        assert support.builds_our_image(services[name]), f"{name} must run the repository's image"


# --- the image -----------------------------------------------------------------------------


def test_dockerfile_builds_the_project_as_a_non_root_community_entrypoint() -> None:
    instructions = support.dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "pip install '.[cloud,edge]'" in runs
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert support.dockerfile_exec_form("ENTRYPOINT") == ["community"]
    # pip builds from the context: what pyproject.toml needs must not be ignored.
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for needed in ("pyproject.toml", "README.md", "contract", "edge", "cloud", "simulator", "community"):
        assert needed not in ignored, f".dockerignore leaves out {needed}, which the build needs"
    for secret in (".env", ".git", ".venv", "var"):
        assert secret in ignored, f".dockerignore must keep {secret} out of the image"


# --- commands ------------------------------------------------------------------------------


def _map_container_paths(service: dict[str, Any], args: list[str]) -> list[str]:
    """Container paths that a bind mount serves, as the repository paths behind them."""
    mapped = []
    for arg in args:
        host = support.host_path_of(service, arg) if arg.startswith("/") else None
        mapped.append(str(host) if host is not None else arg)
    return mapped


def parse_cli(args: list[str]) -> dict[str, Any]:
    """Parse `community <args>` with the real CLI (every check typer makes), without running it."""
    group = typer.main.get_command(community.cli.app)
    ctx = group.context_class(group, info_name="community")
    command = group
    rest = list(args)
    while hasattr(command, "get_command"):
        assert rest, f"`community {' '.join(args)}` names no subcommand"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`community {' '.join(args)}`: there is no subcommand {name!r}"
        if hasattr(sub, "get_command"):
            ctx = sub.context_class(sub, info_name=name, parent=ctx)
            command = sub
            continue
        return {"command": name, **sub.make_context(name, rest, parent=ctx).params}
    raise AssertionError("unreachable")


def refusal(args: list[str]) -> str:
    """Why the CLI refuses `community <args>`; fails the test when it accepts them."""
    try:
        parse_cli(args)
    except Exception as exc:  # typer's usage errors and our own assertions alike
        return str(exc)
    raise AssertionError(f"`community {' '.join(args)}` was accepted")


def test_parse_cli_refuses_what_the_cli_refuses() -> None:
    """The check below is only worth something if a wrong command fails it."""
    assert parse_cli(["cloud", "--role", "ingest"])["role"] == "ingest"
    assert parse_cli(["db", "upgrade"]) == {"command": "upgrade"}
    assert "everything" in refusal(["cloud", "--role", "everything"])
    assert "--cfg" in refusal(["edge", "--cfg", "x.yaml"])
    assert "nosuch" in refusal(["nosuch"])
    assert "downgrade" in refusal(["db", "downgrade"])
    assert "extra" in refusal(["simulate", "--config", str(REPO / "pyproject.toml"), "extra"])
    # A container path that no mount maps does not exist on this machine.
    assert "does not exist" in refusal(["edge", "--config", "/app/examples/demo-site.yaml"])


def community_services(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {name: support.argv(svc) for name, svc in services.items() if support.argv(svc)[:1] == ["community"]}


def test_every_community_command_is_a_valid_cli_invocation(services: dict[str, dict[str, Any]]) -> None:
    commands = community_services(services)
    assert set(commands) == set(SETTINGS_OF), f"services running `community`: {sorted(commands)}"
    for name, args in commands.items():
        parsed = parse_cli(_map_container_paths(services[name], args[1:]))
        assert parsed["command"] == {"cloud": "cloud", "edge": "edge", "simulator": "simulate"}[name]


def test_config_files_are_mounted_from_the_repository(services: dict[str, dict[str, Any]]) -> None:
    """`--config` names a container path; a bind mount must put the repository's file there."""
    for name in ("edge", "simulator"):
        args = support.argv(services[name])
        config = PurePosixPath(args[args.index("--config") + 1])
        host = support.host_path_of(services[name], config)
        assert host is not None and host.is_file(), f"{name}: nothing mounts a repository file at {config}"
        assert host.is_relative_to(REPO)


def _container_config(service: dict[str, Any]) -> tuple[PurePosixPath, dict[str, Any]]:
    args = support.argv(service)
    path = PurePosixPath(args[args.index("--config") + 1])
    host = support.host_path_of(service, path)
    assert host is not None
    return path, yaml.safe_load(host.read_text())


def _container_join(base: PurePosixPath, relative: str) -> PurePosixPath:
    """`relative` resolved against the folder of `base`, inside the container."""
    parts: list[str] = []
    for part in (base.parent / relative).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts)


def test_files_the_configs_name_are_there_in_the_container(services: dict[str, dict[str, Any]]) -> None:
    """The gateway config's profiles folder and the scenario's gateway config, as the container sees them."""
    site_path, site = _container_config(services["edge"])
    profiles = support.host_path_of(services["edge"], _container_join(site_path, site["profiles_dir"]))
    assert profiles is not None and profiles.is_dir(), f"edge: profiles_dir {site['profiles_dir']} is not mounted"
    for device in site["devices"]:
        assert (profiles / f"{device['profile']}.yaml").is_file(), f"profile {device['profile']} missing"

    scenario_path, scenario = _container_config(services["simulator"])
    gateway = _container_join(scenario_path, scenario["gateway_config"])
    assert gateway == site_path, "the simulator must serve the devices of the gateway config the edge runs"
    host = support.host_path_of(services["simulator"], gateway)
    assert host is not None and host.is_file()
    sim_site = yaml.safe_load(host.read_text())
    sim_profiles = support.host_path_of(services["simulator"], _container_join(gateway, sim_site["profiles_dir"]))
    assert sim_profiles is not None and sim_profiles.is_dir()


def test_the_edge_reaches_the_simulated_devices(services: dict[str, dict[str, Any]]) -> None:
    """The demo config puts its Modbus devices on loopback, where the simulator serves them, so
    the edge must share the simulator's network namespace."""
    _, site = _container_config(services["edge"])
    hosts = {d["modbus"]["host"] for d in site["devices"] if "modbus" in d}
    assert hosts, "the demo site has no Modbus devices"
    if hosts <= {"127.0.0.1", "localhost", "::1"}:
        assert services["edge"].get("network_mode") == "service:simulator"
    assert "simulator" in services["edge"].get("depends_on", {})


# --- environment ---------------------------------------------------------------------------


def test_every_variable_is_a_real_setting(services: dict[str, dict[str, Any]]) -> None:
    for name, model in SETTINGS_OF.items():
        accepted = support.field_of_env(model)
        for variable in support.environment(services[name]):
            assert variable.upper() in accepted, f"{name}: {variable} is not read by {model.__name__}"


@pytest.mark.parametrize("name", sorted(SETTINGS_OF))
def test_the_settings_take_every_value(
    name: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build the settings from the service's environment alone: every value validates and lands in its field."""
    model = SETTINGS_OF[name]
    for envs in support.env_names(model).values():
        for env in envs:
            monkeypatch.delenv(env, raising=False)
    env = support.environment(services[name])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = model(_env_file=None)  # type: ignore[call-arg]
    fields = support.field_of_env(model)
    for key, value in env.items():
        got = getattr(settings, fields[key.upper()])
        got = got.get_secret_value() if hasattr(got, "get_secret_value") else got
        assert str(got) == value, f"{name}: {key}={value!r} gave {fields[key.upper()]}={got!r}"


def test_cloud_reaches_the_database_the_timescaledb_service_creates(services: dict[str, dict[str, Any]]) -> None:
    db = support.environment(services["timescaledb"])
    url = urlsplit(support.environment(services["cloud"])["DATABASE_URL"])
    assert url.scheme in ("postgresql", "postgres")
    assert (url.hostname, url.port or 5432) == ("timescaledb", 5432)
    assert url.username == db["POSTGRES_USER"] and url.password == db["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == db["POSTGRES_DB"]
    assert services["cloud"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert "healthcheck" in services["timescaledb"]


def test_cloud_api_is_published(services: dict[str, dict[str, Any]]) -> None:
    env = support.environment(services["cloud"])
    assert env["COMMUNITY_HTTP_HOST"] == "0.0.0.0", "inside a container the API must listen beyond loopback"
    port = env.get("COMMUNITY_HTTP_PORT", str(CloudSettings.model_fields["http_port"].default))
    assert f"{port}:{port}" in services["cloud"]["ports"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(services["cloud"]["healthcheck"]["test"])


def test_broker_logins_match_the_password_file_and_the_acl(services: dict[str, dict[str, Any]]) -> None:
    """Each MQTT client logs in as a user of deploy/mosquitto/passwd, at the broker's listener;
    the edge's username is its gateway id, which the ACL's patterns are keyed on."""
    passwords = support.plain_passwords()
    rules = support.acl_rules()
    listener = int(support.mosquitto_environment_block()["listener"][0].split()[0])
    assert f"{listener}:{listener}" in services["mosquitto"]["ports"]
    logins = {}
    for name in SETTINGS_OF:
        endpoint = parse_mqtt_url(support.environment(services[name])["MQTT_URL"])
        assert (endpoint.host, endpoint.port) == ("mosquitto", listener), name
        assert endpoint.username in passwords, f"{name} logs in as {endpoint.username!r}, not in passwd"
        assert passwords[endpoint.username] == endpoint.password, f"{name}: password differs from passwd"
        logins[name] = endpoint.username
    _, site = _container_config(services["edge"])
    assert logins["edge"] == site["gateway"]["id"]
    for subscription in topics.cloud_subscriptions():
        assert support.acl_allows(rules, logins["cloud"], subscription, "read"), subscription
    for device in site["devices"]:
        if "mqtt" in device:
            topic = device["mqtt"]["topic"]
            assert support.acl_allows(rules, logins["simulator"], topic, "write"), topic
            assert support.acl_allows(rules, logins["edge"], topic, "read"), topic


# --- mounts --------------------------------------------------------------------------------


def test_every_bind_mount_exists_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for mount in support.mounts(service):
            if mount.bind:
                host = mount.host_path()
                assert host.is_relative_to(REPO), f"{name}: {mount.source} is outside the repository"
                assert host.exists(), f"{name}: {mount.source} does not exist"
                assert mount.read_only, f"{name}: {mount.source} should be mounted read-only"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for mount in support.mounts(service):
            if not mount.bind:
                assert mount.source in declared, f"{name}: volume {mount.source} is not declared"


def _file_at(service: dict[str, Any], script: list[list[str]], path: str) -> Path | None:
    """The repository file that ends up at `path`: bind-mounted there, or copied there from a mount."""
    direct = support.host_path_of(service, path)
    if direct is not None:
        return direct
    for words in script:
        if words[:1] == ["cp"] and words[-1] == path:
            return support.host_path_of(service, words[-2])
    return None


def test_mosquitto_runs_the_repository_config_with_its_password_file_and_acl(
    services: dict[str, dict[str, Any]],
) -> None:
    service = services["mosquitto"]
    conf = support.MOSQUITTO_DIR / "mosquitto.conf"
    block = support.mosquitto_environment_block(conf)
    assert block["allow_anonymous"] == ["false"]
    password_file, acl_file = block["password_file"][0], block["acl_file"][0]

    args = support.argv(service)
    assert args[:2] == ["sh", "-c"], "the broker starts through its init step"
    script = list(support.shell_lines(args[2]))
    assert script[-1][:1] == ["exec"] and script[-1][1:] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    assert support.host_path_of(service, "/mosquitto/config/mosquitto.conf") == conf

    assert _file_at(service, script, password_file) == support.MOSQUITTO_DIR / "passwd"
    assert _file_at(service, script, acl_file) == support.MOSQUITTO_DIR / "acl"
    # The plain password file is hashed in place at the path the conf names, once, before the broker.
    copied = next(i for i, words in enumerate(script) if words[:1] == ["cp"] and words[-1] == password_file)
    hashed = [i for i, words in enumerate(script) if words == ["mosquitto_passwd", "-U", password_file]]
    assert len(hashed) == 1 and copied < hashed[0] < len(script) - 1
    # Readable by the user mosquitto drops to, by no one else.
    owned = [w for w in script if w[:2] == ["chown", "mosquitto:mosquitto"]]
    assert owned and {password_file, acl_file} <= {p for w in owned for p in w[2:]}
    private = [w for w in script if w[:2] == ["chmod", "0600"]]
    assert private and {password_file, acl_file} <= {p for w in private for p in w[2:]}

    data = PurePosixPath(block["persistence_location"][0])
    assert any(not m.bind and m.target == data for m in support.mounts(service)), "persistence needs a volume"


def test_acl_confines_each_gateway_to_its_own_topics() -> None:
    rules = support.acl_rules()
    patterns = [r for r in rules if r.kind == "pattern"]
    assert patterns, "gateways are confined by `pattern` lines keyed on %u"
    for rule in patterns:
        levels = rule.topic.split("/")
        assert levels[:2] == ["community", "v1"] and levels[3] == "%u", f"pattern not confined: {rule.topic}"
    assert not [r for r in rules if r.kind == "topic" and r.user is None], "no grants for anonymous clients"

    site, mine, other = "estate-a", "gw-a", "gw-b"
    for kind in topics.Kind:
        topic = topics.topic(site, mine, kind)
        assert support.acl_allows(rules, mine, topic, "write" if kind != topics.Kind.COMMAND else "read"), topic
        foreign = topics.topic(site, other, kind)
        assert not support.acl_allows(rules, mine, foreign, "write"), f"{mine} may write {foreign}"
        assert not support.acl_allows(rules, mine, foreign, "read"), f"{mine} may read {foreign}"
    assert not support.acl_allows(rules, mine, "community/v1/#", "read")
    assert not support.acl_allows(rules, mine, "community/v1/+/+/cmd", "read")


def test_acl_gives_the_cloud_what_it_needs_and_no_more() -> None:
    rules = support.acl_rules()
    cloud = parse_mqtt_url(support.environment(support.load_compose()["services"]["cloud"])["MQTT_URL"]).username
    assert cloud is not None
    for subscription in topics.cloud_subscriptions():
        assert support.acl_allows(rules, cloud, subscription, "read")
    assert support.acl_allows(rules, cloud, "community/v1/+/+/cmd", "write")
    assert support.acl_allows(rules, cloud, topics.topic("estate-a", "gw-a", topics.Kind.COMMAND), "write")
    for kind in topics.UPLINK_KINDS:
        assert not support.acl_allows(rules, cloud, topics.topic("estate-a", "gw-a", kind), "write"), kind


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert support.interpolate("${SET:-d}/${UNSET:-d}/${EMPTY:-d}/${EMPTY-d}/$SET/$$", env) == "x/d/d//x/$"
    assert support.interpolate("${UNSET:?needed}", env) == "<UNSET>"
