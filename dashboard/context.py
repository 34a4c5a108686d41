"""How the dashboard's routes reach the running service without app-wide globals."""

from __future__ import annotations

from fastapi import Request

from vigil.kernel import ServiceContext
from vigil.providers import provided, unbound
from vigil.store.fleet_cache import FleetCache

_NO_DASHBOARD = "no dashboard bound: mount these routers through dashboard.service.DashboardService"


async def service_context(request: Request) -> ServiceContext:
    """Placeholder: `DashboardService` binds its context (`vigil.providers`)."""
    return await provided(request, service_context, unbound(_NO_DASHBOARD))


def now_s(ctx: ServiceContext) -> float:
    """The service clock (nanoseconds, so tests can move it) in unix seconds, as the pages show time."""
    return ctx.clock() / 1e9


async def fleet_cache(request: Request) -> FleetCache:
    """Placeholder: `DashboardService` binds its one `FleetCache`, shared by the fleet page and the API."""
    return await provided(request, fleet_cache, unbound(_NO_DASHBOARD))
