"""How the dashboard's routes reach the running service without app-wide globals."""

from __future__ import annotations

from vigil.kernel import ServiceContext
from vigil.store.fleet_cache import FleetCache


def service_context() -> ServiceContext:
    """Placeholder: `DashboardService` binds its context through the app's dependency overrides."""
    raise RuntimeError("no dashboard bound: mount these routers through dashboard.service.DashboardService")


def now_s(ctx: ServiceContext) -> float:
    """The service clock (nanoseconds, so tests can move it) in unix seconds, as the pages show time."""
    return ctx.clock() / 1e9


def fleet_cache() -> FleetCache:
    """Placeholder: `DashboardService` binds its one `FleetCache`, shared by the fleet page and the API."""
    raise RuntimeError("no dashboard bound: mount these routers through dashboard.service.DashboardService")
