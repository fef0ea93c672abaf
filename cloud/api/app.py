"""The FastAPI application: one pool, routers by domain, JSON errors."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cloud.api import errors
from cloud.api.background import Background
from cloud.api.downlink import Downlink
from cloud.api.routers import (
    alarms,
    analytics,
    attachments,
    auth,
    cameras,
    classifier,
    commands,
    devices,
    entry,
    followups,
    forecast,
    gateways,
    health,
    inbox,
    org,
    patrol,
    people,
    places,
    registry,
    rules,
    tickets,
)
from cloud.broker_admin import broker_admin_from
from cloud.classify.service import Classifier, ClassifierSettings
from cloud.domain.tickets import NumberSource
from cloud.security.biometric import face_cipher_from
from cloud.security.keys import load_secrets
from cloud.security.pii import PiiCipher
from cloud.settings import CloudSettings
from cloud.storage import migrate
from cloud.storage.db import make_pool
from cloud.web import live, pages
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
        # three more than requests may use: the scheduler thread's and the MQTT publisher's
        app.state.pool = make_pool(database_url, max_size=settings.api_db_connections + 3, name="api")
        app.state.db_slots = asyncio.Semaphore(settings.api_db_connections)
        app.state.downlink = Downlink(app.state.pool, settings, app.state.clock, app.state.face_cipher)
        app.state.downlink.start()
        background = None
        if settings.scheduler_enabled:
            background = Background(app.state.pool, settings, app.state.clock, app.state.cipher)
            background.start()
        app.state.background = background
        app.state.numbers = NumberSource(database_url)
        app.state.live = live.LiveHub(database_url, queue_size=settings.live_queue_size)
        app.state.live.start()
        try:
            yield
        finally:
            await app.state.live.stop()
            app.state.numbers.close()
            app.state.downlink.stop()
            if background is not None:
                background.stop()
                background.join(10)
            app.state.pool.close()

    app = FastAPI(
        title="Smart-community platform API",
        version="0.1.0",
        description="Devices, telemetry, alarms and tickets of the estates this platform runs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.secrets = load_secrets(settings)
    app.state.cipher = PiiCipher(app.state.secrets.data_key)
    app.state.face_cipher = face_cipher_from(
        settings.face_key.get_secret_value() if settings.face_key else None, app.state.secrets.data_key
    )
    app.state.broker_admin = broker_admin_from(settings)
    app.state.classifier = Classifier(ClassifierSettings.from_settings(settings))
    errors.install(app)
    for router in (
        health.router,
        auth.router,
        devices.router,
        alarms.router,
        tickets.router,
        registry.router,
        gateways.router,
        commands.router,
        places.router,
        people.router,
        org.router,
        attachments.router,
        rules.router,
        inbox.router,
        followups.router,
        entry.router,
        analytics.router,
        forecast.router,
        classifier.router,
        patrol.router,
        cameras.router,
        live.router,
        pages.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    return app


def run_api(settings: CloudSettings) -> None:
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level=settings.log_level.lower())
