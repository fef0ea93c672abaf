"""The FastAPI application: one pool, routers by domain, JSON errors."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloud.api import errors
from cloud.api.routers import alarms, devices, health, registry, tickets
from cloud.settings import CloudSettings
from cloud.storage import migrate
from cloud.storage.db import make_pool
from contract.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def create_app(settings: CloudSettings, *, clock: Clock | None = None, apply_migrations: bool = True) -> FastAPI:
    database_url = settings.require_database_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if apply_migrations:
            applied = migrate.upgrade(database_url)
            if applied:
                log.info("database migrated: %s", ", ".join(applied))
        app.state.pool = make_pool(database_url, name="api")
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(
        title="Smart-community platform API",
        version="0.1.0",
        description="Devices, telemetry, alarms and tickets of the estates this platform runs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    errors.install(app)
    for router in (health.router, devices.router, alarms.router, tickets.router, registry.router):
        app.include_router(router)
    return app


def run_api(settings: CloudSettings) -> None:
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level=settings.log_level.lower())
