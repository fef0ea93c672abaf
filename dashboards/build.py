"""Writes the Grafana dashboards of dashboards/community/ from the SQL texts of cloud/storage/queries.py.

Every panel and template variable takes its SQL from one named text there, with Grafana's macros and
variables put where the psycopg parameters are (GRAFANA_PARAMETERS). The API runs the same texts with
parameters, so a dashboard shows what the API answers. The JSON files are generated: edit this
file or the texts, then run

    .venv/bin/python -m dashboards.build          # rewrite dashboards/community/*.json
    .venv/bin/python -m dashboards.build --check  # exit 1 when a committed file is not what this makes

tests/deploy/test_dashboards.py fails when they differ, and runs every query for real.
"""

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cloud.storage import queries as q
from cloud.storage.queries import Query

OUT = Path(__file__).resolve().parent / "community"
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "community-db"}

#: What Grafana puts where a text has a psycopg parameter. `${var:sqlstring}` quotes and escapes
#: each value ('a','b'); a device variable with no value becomes NULL (no rows, not an error).
GRAFANA_PARAMETERS = {
    "start": "$__timeFrom()",
    "end": "$__timeTo()",
    "bucket": "($__interval_ms * interval '1 millisecond')",
    "device": "nullif(${device:sqlstring}, '')::bigint",
    "metric": "${metric:sqlstring}",
    "site": "${site:sqlstring}",
    "sites": "ARRAY[${site:sqlstring}]::text[]",
}

_PARAMETER = re.compile(r"%\((\w+)\)s")
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+):")

SEVERITY_COLOURS = {"critical": "red", "major": "orange", "minor": "yellow", "warning": "blue"}


def grafana_sql(query: Query) -> str:
    """The query's text with Grafana's macros and variables in place of its parameters."""

    def substitute(match: re.Match[str]) -> str:
        name = match[1]
        if name not in GRAFANA_PARAMETERS:
            raise ValueError(f"{query.name}: no Grafana form for the parameter %({name})s")
        return GRAFANA_PARAMETERS[name]

    text = _PARAMETER.sub(substitute, query.sql)
    if "%" in text:
        raise ValueError(f"{query.name}: a % that is not a named parameter")
    return text


@dataclass(frozen=True)
class Variable:
    """A template variable whose options come from the database."""

    name: str
    label: str
    query: Query
    multi: bool = False
    include_all: bool = False


@dataclass(frozen=True)
class Panel:
    """One panel: how it draws, the shared text it runs, its size in grid units (24 to a row)."""

    kind: Literal["timeseries", "stat", "table"]
    title: str
    query: Query
    width: int
    height: int
    description: str = ""
    #: "time_series" needs a column named time; "table" keeps the columns as the text names them.
    format: Literal["table", "time_series"] = "table"
    unit: str | None = None
    #: the narrowest bucket Grafana may ask for ($__interval_ms never below it)
    min_interval: str | None = None
    bars: bool = False
    repeat: str | None = None
    overrides: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Dashboard:
    """One dashboard file: its variables, in the order they depend on each other, and its panels."""

    file: str
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-6h"
    refresh: str = "30s"


def _override(name: str, **properties: Any) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key.replace("__", "."), "value": value} for key, value in properties.items()],
    }


def _severity_colours() -> tuple[dict[str, Any], ...]:
    return tuple(
        _override(severity, color={"mode": "fixed", "fixedColor": colour})
        for severity, colour in SEVERITY_COLOURS.items()
    )


# --- the dashboards --------------------------------------------------------------------------

TELEMETRY = Dashboard(
    file="device-telemetry.json",
    uid="community-telemetry",
    title="Device telemetry",
    description=(
        "One device's metrics: min, mean and max per time bucket, the same query as "
        "GET /api/v1/devices/{id}/telemetry. Pick the site, the device and its metrics above."
    ),
    tags=("community", "telemetry"),
    variables=(
        Variable("site", "Site", q.SITES),
        Variable("device", "Device", q.SITE_DEVICES),
        Variable("metric", "Metric", q.DEVICE_METRICS, multi=True, include_all=True),
    ),
    panels=(
        Panel(
            "table",
            "Last values",
            q.DEVICE_LAST_VALUES,
            24,
            6,
            description=(
                "The device's latest value of each metric and when it was measured (refreshed about once a second)."
            ),
        ),
        Panel(
            "timeseries",
            "$metric",
            q.TELEMETRY_BUCKETS,
            12,
            9,
            description=(
                "min, mean and max of the metric per bucket (the bucket follows the zoom), and how many "
                "points each bucket holds (bars, right axis). A gap is a time with no points."
            ),
            min_interval="1s",
            repeat="metric",
            overrides=(
                _override("max", custom__fillBelowTo="min", color={"mode": "fixed", "fixedColor": "blue"}),
                _override("min", color={"mode": "fixed", "fixedColor": "blue"}),
                _override("mean", color={"mode": "fixed", "fixedColor": "green"}, custom__lineWidth=2),
                _override(
                    "count",
                    custom__drawStyle="bars",
                    custom__axisPlacement="right",
                    custom__axisLabel="points",
                    custom__fillOpacity=30,
                    color={"mode": "fixed", "fixedColor": "#8080804d"},
                ),
            ),
        ),
    ),
)

ALARMS = Dashboard(
    file="alarms.json",
    uid="community-alarms",
    title="Alarms",
    description="Alarms raised over time by severity, rule and site, and the alarms not cleared yet.",
    tags=("community", "alarms"),
    time_from="now-7d",
    refresh="1m",
    variables=(Variable("site", "Site", q.SITES, multi=True, include_all=True),),
    panels=(
        Panel(
            "stat",
            "Alarms",
            q.ALARM_COUNTS,
            24,
            4,
            description="Active and acknowledged now (whenever raised); raised and cleared within the time range.",
        ),
        Panel(
            "timeseries",
            "Raised by severity",
            q.ALARMS_BY_SEVERITY,
            8,
            9,
            format="time_series",
            min_interval="1m",
            bars=True,
            overrides=_severity_colours(),
        ),
        Panel(
            "timeseries",
            "Raised by rule",
            q.ALARMS_BY_RULE,
            8,
            9,
            format="time_series",
            min_interval="1m",
            bars=True,
        ),
        Panel(
            "timeseries",
            "Raised by site",
            q.ALARMS_BY_SITE,
            8,
            9,
            format="time_series",
            min_interval="1m",
            bars=True,
        ),
        Panel(
            "table",
            "Open alarms",
            q.OPEN_ALARMS,
            24,
            10,
            description="Alarms not cleared yet, the most severe first, then the newest (at most 200).",
        ),
    ),
)

INGEST = Dashboard(
    file="ingest.json",
    uid="community-ingest",
    title="Ingest rate and lag",
    description=(
        "How fast the cloud stores what the gateways send, and how late. Rates are by the time the cloud "
        "committed each message; lag is from when the gateway made a message to that commit."
    ),
    tags=("community", "ingest"),
    time_from="now-3h",
    refresh="30s",
    panels=(
        Panel(
            "timeseries",
            "Points stored per second",
            q.POINTS_STORED_PER_SECOND,
            12,
            8,
            description="Telemetry points committed per second, by gateway, by the time they were stored.",
            format="time_series",
            unit="short",
            min_interval="10s",
        ),
        Panel(
            "timeseries",
            "Messages stored per second",
            q.MESSAGES_PER_SECOND,
            12,
            8,
            description="Messages committed per second, by kind (telemetry, alarm, event, health, ...).",
            format="time_series",
            unit="short",
            min_interval="10s",
        ),
        Panel(
            "timeseries",
            "Telemetry lag",
            q.TELEMETRY_LAG,
            12,
            8,
            description=(
                "Seconds from when the gateway made a telemetry message (the time in its UUIDv7 id; the readings "
                "in it are at most the outbox's packing delay older) to when the cloud committed it: median, "
                "99th percentile and the most, per bucket of commit time. Includes time waiting in the "
                "gateway's outbox while the broker or the cloud was away; off by the gateway clock's error."
            ),
            format="time_series",
            unit="s",
            min_interval="10s",
        ),
        Panel(
            "timeseries",
            "Lag by kind (p99)",
            q.LAG_BY_KIND,
            12,
            8,
            description="The 99th percentile of the same lag for each kind of message.",
            format="time_series",
            unit="s",
            min_interval="10s",
        ),
        Panel(
            "timeseries",
            "Points by measurement time",
            q.POINTS_BY_MEASUREMENT_TIME,
            12,
            8,
            description=(
                "Stored points per bucket by when they were measured. A backlog delivered late fills in the "
                "past here while it shows as a burst in 'Points stored per second'."
            ),
            format="time_series",
            min_interval="10s",
            bars=True,
        ),
        Panel(
            "timeseries",
            "Dead letters",
            q.DEAD_LETTERS_OVER_TIME,
            12,
            8,
            description="Payloads the ingest could not use, per bucket.",
            format="time_series",
            min_interval="1m",
            bars=True,
        ),
        Panel(
            "table",
            "Gateway outboxes",
            q.OUTBOXES,
            24,
            8,
            description=(
                "Each gateway's latest health report: messages waiting in its durable outbox, the age of the "
                "oldest, and telemetry it had to drop. A snapshot at 'reported', not a history."
            ),
        ),
    ),
)

GATEWAY_HEALTH = Dashboard(
    file="gateway-health.json",
    uid="community-gateway-health",
    title="Gateway health and ingest",
    description=(
        "Are the gateways and their devices talking, is telemetry arriving, and is anything being dead-lettered."
    ),
    tags=("community", "gateways", "ingest"),
    panels=(
        Panel(
            "stat",
            "Gateways",
            q.GATEWAY_COUNTS,
            6,
            4,
            description=(
                "Registered gateways by their last status message (a "
                "gateway that vanished is offline through its last will)."
            ),
        ),
        Panel(
            "stat",
            "Devices",
            q.DEVICE_COUNTS,
            6,
            4,
            description="Devices the gateways announced, by the online/offline state the edge reports.",
        ),
        Panel(
            "stat",
            "Open alarms",
            q.OPEN_ALARM_COUNTS,
            6,
            4,
            description="Alarms not cleared yet, from devices, gateways and cloud rules.",
        ),
        Panel(
            "stat",
            "Dead letters in range",
            q.DEAD_LETTER_COUNT,
            6,
            4,
            description=(
                "Payloads the ingest could not use (kept with topic, "
                "bytes and reason). Anything above zero needs a look."
            ),
        ),
        Panel(
            "timeseries",
            "Telemetry points per gateway",
            q.POINTS_BY_MEASUREMENT_TIME,
            24,
            8,
            description=(
                "Stored telemetry points per time bucket, by the time they were measured at the edge. A gap means "
                "a gateway or its devices went quiet; a late burst is a backlog being delivered."
            ),
            format="time_series",
            min_interval="10s",
        ),
        Panel(
            "timeseries",
            "Telemetry lag",
            q.TELEMETRY_LAG,
            12,
            8,
            description=(
                "From a telemetry message made at the gateway to its commit in the cloud (see 'Ingest rate and lag')."
            ),
            format="time_series",
            unit="s",
            min_interval="10s",
        ),
        Panel(
            "timeseries",
            "Dead letters",
            q.DEAD_LETTERS_OVER_TIME,
            12,
            8,
            format="time_series",
            min_interval="1m",
        ),
        Panel("table", "Gateways", q.GATEWAYS, 24, 7),
        Panel("table", "Open alarms", q.OPEN_ALARMS_ALL_SITES, 24, 8),
        Panel("table", "Devices offline", q.DEVICES_OFFLINE, 12, 8),
        Panel(
            "table",
            "Latest dead letters",
            q.LATEST_DEAD_LETTERS,
            12,
            8,
            description=(
                "The full payload is in the dead_letters table; GET /api/v1/dead-letters shows its first 500 bytes."
            ),
        ),
    ),
)

DASHBOARDS = (TELEMETRY, ALARMS, INGEST, GATEWAY_HEALTH)


# --- JSON ------------------------------------------------------------------------------------


def _variable_json(variable: Variable) -> dict[str, Any]:
    sql = grafana_sql(variable.query)
    current = {"selected": True, "text": ["All"], "value": ["$__all"]} if variable.include_all else {}
    return {
        "type": "query",
        "name": variable.name,
        "label": variable.label,
        "datasource": DATASOURCE,
        "definition": sql,
        "query": sql,
        "refresh": 1,
        "sort": 0,
        "multi": variable.multi,
        "includeAll": variable.include_all,
        "current": current,
        "options": [],
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
    }


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    target = {
        "refId": "A",
        "datasource": DATASOURCE,
        "editorMode": "code",
        "rawQuery": True,
        "format": panel.format,
        "rawSql": grafana_sql(panel.query),
    }
    defaults: dict[str, Any] = {}
    if panel.unit:
        defaults["unit"] = panel.unit
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if panel.bars else "line",
            "fillOpacity": 60 if panel.bars else 10,
            "stacking": {"mode": "normal" if panel.bars else "none", "group": "A"},
            "spanNulls": False,
            "showPoints": "never",
        }
    options: dict[str, Any] = {}
    if panel.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
        }
    elif panel.kind == "timeseries":
        options = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    elif panel.kind == "table":
        options = {"showHeader": True, "cellHeight": "sm"}
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": DATASOURCE,
        "targets": [target],
        "fieldConfig": {"defaults": defaults, "overrides": list(panel.overrides)},
        "options": options,
    }
    if panel.min_interval:
        result["interval"] = panel.min_interval
    if panel.repeat:
        result["repeat"] = panel.repeat
        result["repeatDirection"] = "h"
        result["maxPerRow"] = 2
    return result


def _check_variables(dashboard: Dashboard) -> None:
    """Every ${var} a query uses is a variable of its dashboard, defined before the variables using it."""
    defined: set[str] = set()
    for variable in dashboard.variables:
        used = set(_GRAFANA_VARIABLE.findall(grafana_sql(variable.query)))
        if not used <= defined:
            raise ValueError(
                f"{dashboard.file}: variable {variable.name} uses {sorted(used - defined)} not defined before it"
            )
        defined.add(variable.name)
    for panel in dashboard.panels:
        used = set(_GRAFANA_VARIABLE.findall(grafana_sql(panel.query)))
        if not used <= defined:
            raise ValueError(
                f"{dashboard.file}: panel {panel.title!r} uses undefined variables {sorted(used - defined)}"
            )


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model; panels flow left to right, 24 columns a row."""
    _check_variables(dashboard)
    panels = []
    x = y = row_height = 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel_json(panel, number, {"x": x, "y": y, "w": panel.width, "h": panel.height}))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": dashboard.refresh,
        "time": {"from": dashboard.time_from, "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": [_variable_json(v) for v in dashboard.variables]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    """File name → the JSON text this module makes for it."""
    return {d.file: json.dumps(dashboard_json(d), indent=2, ensure_ascii=False) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs")
    args = parser.parse_args(argv)
    made = rendered()
    stale = []
    for name, text in made.items():
        path = OUT / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in made)
    for name in stale:
        print(f"{'differs' if args.check else 'wrote'}: dashboards/community/{name}")
    for name in extra:
        print(f"not made by dashboards/build.py: dashboards/community/{name}")
    return 1 if (args.check and stale) or extra else 0


if __name__ == "__main__":
    sys.exit(main())
