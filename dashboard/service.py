"""`DashboardService`: the dashboard inside `vigil up`: pages, the JSON API, and the auth all routes use."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.staticfiles import StaticFiles

from dashboard import alerts, api, history, incidents, pages, query, runbooks
from dashboard.auth import Auth
from dashboard.context import fleet_cache, service_context
from dashboard.render import STATIC
from vigil.access import authenticate, csrf_checker
from vigil.kernel import Health, ServiceContext
from vigil.store.fleet_cache import FleetCache

T = TypeVar("T")


def _static() -> APIRouter:
    """`/static/...` from the package (our CSS and JS, and the chart libraries built in from npm)."""
    files = StaticFiles(directory=STATIC)
    router = APIRouter(include_in_schema=False)

    @router.get("/static/{path:path}")
    async def static_file(path: str, request: Request) -> Response:
        return await files.get_response(path, request.scope)  # refuses paths that leave the folder

    return router


class Given(Generic[T]):
    """A provider that answers `value`, and keeps it readable (a test pins the context's clock through it)."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __call__(self) -> T:
        return self.value


class DashboardService:
    name = "dashboard"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.auth = Auth(ctx)
        self.fleet_cache = FleetCache(ctx.settings.fleet_cache_s)
        self.routers: Sequence[APIRouter] = (
            self.auth.router,
            api.router,
            alerts.router,
            history.router,
            query.router,
            runbooks.router,
            incidents.router,
            pages.router,
            _static(),
        )
        self.providers: Mapping[Callable[..., Any], Callable[..., Any]] = {
            service_context: Given(ctx),
            fleet_cache: Given(self.fleet_cache),
            authenticate: self.auth.authenticate_request,
            csrf_checker: Given(self.auth.check_csrf),
        }

    def start(self) -> None:
        pages.warn_missing_assets()
        self.auth.start()

    def close(self, timeout_s: float) -> None:
        self.auth.close()

    def health(self) -> Health:
        return self.auth.health()
