"""The composition root of `vigil up`: one FastAPI app, one port, every registered service's routers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import vigil
from alerting.service import AlertingService
from collector.plugin import CollectorService
from dashboard.service import DashboardService
from runbooks.service import RunbooksService
from vigil import lifecycle
from vigil.health import ChildState, HealthMonitor
from vigil.kernel import RunPlan, Service, ServiceContext, ServiceFactory
from vigil.providers import bind
from vigil.settings import Settings
from vigil.store import Store

# Sent with every answer. No inline script or style anywhere: pages load /static files only.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP answer, unless a route set its own.

    Plain ASGI rather than BaseHTTPMiddleware: that one runs each request in a task of its own,
    which breaks the collector's streamed body reads and their cancellation at shutdown.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in SECURITY_HEADERS if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# The in-process services of `vigil up`, in start order (closed in reverse), as FEATURES lists children.
SERVICES: tuple[ServiceFactory, ...] = (CollectorService, AlertingService, DashboardService, RunbooksService)


def _connect(built: list[Service]) -> None:
    """Hand services what they offer one another, as features never import each other: a firing
    alert may start its runbook, and the runbooks' circuit breaker opening pages on-call."""
    alerting = next((s for s in built if isinstance(s, AlertingService)), None)
    runbooks = next((s for s in built if isinstance(s, RunbooksService)), None)
    if alerting is None or runbooks is None:
        return
    alerting.on_firing(runbooks.on_alert)

    def breaker_open(max_per_hour: int, at: float) -> None:
        summary = (
            f"Automatic runbook starts paused: more than {max_per_hour} in the last hour. "
            "Runbooks still start by hand; look at what keeps firing."
        )
        alerting.page("RunbookAutoBreakerOpen", summary)

    runbooks.on_breaker_open(breaker_open)


def create_app(
    settings: Settings,
    store: Store,
    plan: RunPlan,
    children: Callable[[], Mapping[str, ChildState]] | None = None,
    services: tuple[ServiceFactory, ...] = SERVICES,
) -> FastAPI:
    """Build the app around an open, migrated store. The lifespan starts the services and closes them.

    `children`: the supervisor's `health()`, reported by `/healthz` beside the services.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    ctx = ServiceContext(settings=settings, store=store, registry=registry, plan=plan)
    built: list[Service] = [factory(ctx) for factory in services]
    _connect(built)
    monitor = HealthMonitor(store.ping, built, children)
    ready = False

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal ready
        started: list[Service] = []
        try:
            for service in built:
                await run_in_threadpool(service.start)
                started.append(service)
            await run_in_threadpool(monitor.start)
            ready = True
            yield
        finally:
            ready = False
            await run_in_threadpool(monitor.close)
            # the server set how long the whole shutdown may still take; services share what is left
            deadline = time.monotonic() + lifecycle.time_left(app.state, settings.shutdown_timeout_s)
            for service in reversed(started):
                await run_in_threadpool(service.close, max(0.0, deadline - time.monotonic()))

    # no /docs or /redoc of FastAPI's: they load Swagger from a CDN with an inline script (the dashboard serves /docs)
    # /openapi.json is the dashboard's, behind the login like the API it describes
    app = FastAPI(
        title="Vigil", version=vigil.__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(SecurityHeaders)
    app.state.registry = registry  # the HTTP server adds its connection metrics here
    for service in built:
        for router in service.routers:
            app.include_router(router)
        bind(app.state, service.providers)

    @app.get("/healthz", summary="200 when the store, every service and every child is healthy; 503 names which not")
    async def healthz() -> JSONResponse:
        ok, body = monitor.snapshot(ready)  # cached: never waits behind ingest work or a slow child
        body = {**body, "store_kind": "embedded" if store.embedded else "server", "version": vigil.__version__}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Vigil's own metrics in Prometheus text format")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
