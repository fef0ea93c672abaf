"""`community …`: one command whose subcommands start each part of the platform.

Imports are inside the commands, so an edge-only install (no FastAPI, no psycopg) can run
`community edge` and `community simulate`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # cloud imports stay lazy: an edge-only install has no cloud dependencies
    from cloud.settings import CloudSettings

app = typer.Typer(help="Smart-community platform: cloud service, edge agent, simulator and demo.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
classifier_app = typer.Typer(help="The complaint classifier (docs/classification.md).", no_args_is_help=True)
app.add_typer(classifier_app, name="classifier")


class Role(StrEnum):
    ALL = "all"
    API = "api"
    INGEST = "ingest"


def _cloud_settings() -> "CloudSettings":
    from cloud.settings import CloudSettings

    return CloudSettings()


@contextmanager
def _database_url(settings: "CloudSettings") -> Iterator[str]:
    """DATABASE_URL; unset, the embedded PostgreSQL's under data_dir/pgdata, stopped when the block ends."""
    if settings.database_url:
        yield settings.database_url
        return
    from community.embedded_db import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.data_dir / "pgdata").start()
    try:
        yield pg.ensure_database("community")
    finally:
        pg.stop()


@app.command()
def cloud(
    role: Annotated[Role, typer.Option(help="all: API and ingest (two processes); or just one of them")] = Role.ALL,
) -> None:
    """Run the cloud service: the HTTP API on COMMUNITY_HTTP_HOST:PORT and the MQTT ingest."""
    from community.logs import setup_logging

    settings = _cloud_settings()
    setup_logging(settings.log_level)
    with _database_url(settings) as url:
        if not settings.database_url:
            typer.echo(f"DATABASE_URL not set: using the embedded PostgreSQL in {settings.data_dir / 'pgdata'}")
            settings = settings.model_copy(update={"database_url": url})
        if role == Role.INGEST:
            from cloud.ingest.worker import run_ingest

            run_ingest(settings)
        elif role == Role.API:
            from cloud.api.app import run_api

            run_api(settings)
        else:
            from community.supervisor import Supervisor

            # the children read the same settings; the database URL is passed on when it was made here
            with Supervisor(env={"DATABASE_URL": settings.require_database_url()}) as sup:
                sup.spawn("ingest", ["cloud", "--role", "ingest"])
                sup.spawn("api", ["cloud", "--role", "api"])
                sup.wait()
            raise typer.Exit(sup.exit_code)


@app.command()
def edge(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway config file (YAML)", exists=True)],
    mqtt_url: Annotated[str | None, typer.Option(help="uplink broker; default MQTT_URL")] = None,
) -> None:
    """Run the edge agent of one gateway."""
    from community.logs import setup_logging
    from edge.agent import run_agent
    from edge.settings import EdgeSettings

    overrides: dict[str, object] = {"config": config}
    if mqtt_url:
        overrides["mqtt_url"] = mqtt_url
    settings = EdgeSettings(**overrides)  # type: ignore[arg-type]
    setup_logging(settings.log_level)
    run_agent(settings)


@app.command()
def simulate(
    config: Annotated[Path, typer.Option("--config", "-c", help="simulation scenario file (YAML)", exists=True)],
    mqtt_url: Annotated[str | None, typer.Option(help="broker for MQTT-speaking devices; default MQTT_URL")] = None,
) -> None:
    """Run simulated devices (Modbus servers on loopback, MQTT sensors) from a scenario."""
    from community.logs import setup_logging
    from edge.settings import EdgeSettings
    from simulator.run import run_simulator

    settings = EdgeSettings()
    setup_logging(settings.log_level)
    # without --mqtt-url the simulator takes the gateway config's local broker, else MQTT_URL
    run_simulator(config, mqtt_url, log_level=settings.log_level)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the SQL migrations that are not applied yet."""
    from cloud.storage.migrate import upgrade
    from community.logs import setup_logging

    settings = _cloud_settings()
    setup_logging(settings.log_level)
    with _database_url(settings) as url:
        applied = upgrade(url)
    typer.echo("applied: " + ", ".join(applied) if applied else "the schema is up to date")


@classifier_app.command("retrain")
def classifier_retrain(
    force: Annotated[bool, typer.Option(help="replace the running model even when the new one is worse")] = False,
) -> None:
    """Train on the corpus' training part and the staff's overrides, print the held-out figures beside the
    running model's and the majority baseline, and replace the running model unless the new one is worse."""
    import getpass

    from cloud.classify.retrain import format_report, retrain
    from cloud.classify.service import ClassifierSettings
    from cloud.storage.db import connect
    from cloud.storage.migrate import upgrade
    from community.logs import setup_logging
    from contract.clock import SystemClock

    settings = _cloud_settings()
    setup_logging(settings.log_level)
    with _database_url(settings) as url:
        upgrade(url)
        with connect(url) as conn:
            report = retrain(
                conn,
                ClassifierSettings.from_settings(settings),
                actor=f"cli:{getpass.getuser()}",
                user_id=None,
                now=SystemClock().now(),
                force=force,
            )
            conn.commit()
    typer.echo(format_report(report))


@app.command()
def demo(
    http_port: Annotated[int | None, typer.Option(help="port of the API (default COMMUNITY_HTTP_PORT, 8000)")] = None,
    scenario: Annotated[Path | None, typer.Option(help="simulation scenario")] = None,
) -> None:
    """Run the whole platform on one machine: database, broker, cloud, an edge agent and simulated devices."""
    from community.demo import run_demo

    raise typer.Exit(run_demo(http_port=http_port, scenario=scenario))


if __name__ == "__main__":
    app()
