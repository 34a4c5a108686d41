"""The composition root of `vigil up`: one FastAPI app, one port, every service's router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

import vigil
from collector.router import router as collector_router
from collector.service import Collector
from vigil.settings import Settings
from vigil.store import Store


def create_app(settings: Settings, store: Store) -> FastAPI:
    """Build the app around an open, migrated store. The lifespan starts and drains the collector."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    collector = Collector(settings, store, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(collector.start)
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await run_in_threadpool(collector.close)

    app = FastAPI(title="Vigil", version=vigil.__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.registry = registry
    app.state.collector = collector
    app.state.ready = False
    app.include_router(collector_router)

    @app.get("/healthz", summary="200 once the store is open and migrated and the collector runs")
    async def healthz(request: Request) -> JSONResponse:
        store_ok = await run_in_threadpool(store.ping)
        ready = bool(request.app.state.ready) and store_ok
        body = {
            "status": "ok" if ready else "unavailable",
            "store": "embedded" if store.embedded else "server",
            "store_reachable": store_ok,
            "collector_running": bool(request.app.state.ready),
            "queue_rows": collector.pipeline.queued_rows,
            "version": vigil.__version__,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Vigil's own metrics in Prometheus text format")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
