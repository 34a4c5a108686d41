"""Interfaces one service offers another inside `vigil up`, handed in by the composition root.

Feature packages never import one another. A service that offers a view binds it through its
`providers` (`vigil.providers`) for the placeholder below; a service that reads it
declares `Depends(alerts_view)` and gets None when the offering service is not running, which its
pages show as "alerting not configured".

Values are JSON-ready dicts in the shapes of the offering service's own API (`/api/v1/alerts`,
`/api/v1/silences`, `/api/v1/slos`), so a page and a script read the same thing.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import Request

from vigil.providers import fallback, provided


class ViewError(ValueError):
    """A request the offering service refuses (a bad silence, an unknown id); the message says why."""


class AlertsView(Protocol):
    """What alerting offers the dashboard."""

    def alerts(self) -> list[dict[str, Any]]:
        """Held alerts (pending and firing), each as one item of `GET /api/v1/alerts`."""
        ...

    def history(self, limit: int) -> list[dict[str, Any]]:
        """The newest state transitions, newest first, as `GET /api/v1/alerts?history=1`."""
        ...

    def silences(self, include_expired: bool = False) -> list[dict[str, Any]]:
        """Silences in Alertmanager's v2 shape, as `GET /api/v1/silences`."""
        ...

    def create_silence(self, body: dict[str, Any]) -> str:
        """Create a silence from an Alertmanager v2 body (matchers, startsAt, endsAt, createdBy,
        comment); answers its id. Raises ViewError naming the field at fault."""
        ...

    def expire_silence(self, silence_id: str) -> None:
        """Expire a silence now; ViewError when there is no such silence."""
        ...

    def slos(self) -> list[dict[str, Any]]:
        """Each SLO's objective, error budget remaining and burn rate per window, as `GET /api/v1/slos`."""
        ...

    def slo_budget(self, name: str, start: float, end: float, step: int) -> list[tuple[float, float]]:
        """`[(unix_seconds, budget_remaining_fraction), ...]` over the range for one SLO; ViewError if unknown."""
        ...


async def alerts_view(request: Request) -> AlertsView | None:
    """Placeholder: the alerting service binds its view; None means alerting is not running."""
    return await provided(request, alerts_view, fallback(None))
