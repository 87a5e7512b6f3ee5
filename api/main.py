"""Builds the FastAPI app: resources in the lifespan, one router per resource."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client

from api.deps import get_workspace
from api.errors import install_error_handlers
from api.fast_events import EventsFastPath
from api.limits import BodySizeLimit
from api.openapi import document_journey_schema, serve_docs
from api.routes import (
    activation,
    channels,
    contacts,
    dead_letters,
    enrollments,
    events,
    health,
    journeys,
    messages,
    metrics,
    records,
    simulation,
    templates,
    tracking,
    ui,
)
from services.relay import Relay
from services.sender import SenderOptions, run_sender
from services.temporal import connect
from shared.rates import Buckets
from shared.settings import Settings
from store.db import create_pool


def create_app(
    settings: Settings | None = None,
    *,
    pool: asyncpg.Pool | None = None,
    temporal: Client | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_pool = claims = None
        if getattr(app.state, "pool", None) is None:
            owned_pool = await create_pool(
                settings.require_database_url(), settings.db_pool_min, settings.db_pool_max
            )
            app.state.pool = owned_pool
            # the relay's statements, each planned once: its routing pass's, and the
            # hand-off that stores the events POSTed here (`store_events`)
            claims = await create_pool(
                settings.require_database_url(), 1, settings.db_pool_max, generic_plans=True
            )
        if getattr(app.state, "temporal", None) is None:
            # lazy: the API starts (and /healthz answers) even while Temporal is down
            app.state.temporal = await connect(settings, lazy=True)
        # the relay delivers committed changes to the workflows
        stop_relay = asyncio.Event()
        app.state.relay = Relay(app.state.pool, app.state.temporal, settings, claims=claims)
        relay = asyncio.create_task(app.state.relay.run(stop_relay))
        # the sender hands queued messages to the providers: here, not in the
        # worker, so a worker that dies never cuts a hand-over short
        sender = None
        if settings.send_from_api:
            sender = asyncio.create_task(
                run_sender(
                    settings,
                    stop_relay,
                    # an injected pool (tests) is shared: a few hand-overs at a time
                    pool=None if owned_pool is not None else app.state.pool,
                    options=None if owned_pool is not None else SenderOptions(concurrency=4),
                )
            )
        try:
            yield
        finally:
            stop_relay.set()
            await relay
            app.state.relay = None
            if sender is not None:
                await sender
            if getattr(app.state, "simulator", None) is not None:
                await app.state.simulator.close()
            if owned_pool is not None:
                await owned_pool.close()
            if claims is not None:
                await claims.close()

    app = FastAPI(
        title="nurture",
        version="1",
        summary="Durable customer journeys on Temporal",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.temporal = temporal
    app.state.relay = None
    app.state.key_cache = {}
    app.state.eligible_cache = {}
    app.state.ingest_buckets = Buckets(settings.ingest_rate, settings.ingest_burst)
    install_error_handlers(app)
    app.add_middleware(EventsFastPath, api=app)  # inside the size limit
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    document_journey_schema(app)
    serve_docs(app)
    app.include_router(health.router)
    app.include_router(tracking.router)  # mail clients: a signed token, no key
    app.include_router(ui.router)  # people: an API key in a cookie (docs/web.md)
    app.mount("/ui/static", StaticFiles(directory=ui.UI / "static"), name="ui-static")
    routers = (
        simulation, journeys, activation, enrollments, contacts, events, metrics, templates,
        channels,
    )  # fmt: skip
    for module in (*routers, records, messages, dead_letters):
        # every route but /healthz and the docs needs a key, whether or not it reads data
        app.include_router(module.router, dependencies=[Depends(get_workspace)])
    return app
