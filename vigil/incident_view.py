"""What alerting offers the dashboard's incident pages, handed in by the composition root.

Like `vigil.views.AlertsView`: alerting binds its view through its `providers` for the placeholder
below; a page declares `Depends(incidents_view)` and gets None when alerting is not running.
Values are JSON-ready dicts in the shapes of `GET /api/v1/incidents` and `GET /api/v1/incidents/{id}`,
so a page and a script read the same thing. Refusals are typed; `REFUSAL_STATUS` gives each its HTTP status
(unknown 404, already resolved 409, bad request 400, store down 503) for the API and the pages alike.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from fastapi import Request

from vigil.providers import fallback, provided
from vigil.views import ViewError

Status = Literal["open", "resolved", "all"]
MAX_NOTE_CHARS = 4096  # one note; a longer one is refused, not cut


class IncidentRequestError(ViewError):
    """A request about incidents that is refused: bad input (a note too long, an empty one)."""


class UnknownIncident(IncidentRequestError):
    """No incident with that id."""


class IncidentResolved(IncidentRequestError):
    """The incident is resolved already: it cannot be closed again."""


class IncidentsUnavailable(Exception):
    """The store did not answer; nothing was changed. The message says what failed."""


# The status each refusal is answered with, by the API and the pages alike (the first kind that matches).
REFUSAL_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownIncident, 404),
    (IncidentResolved, 409),
    (IncidentRequestError, 400),
    (IncidentsUnavailable, 503),
)


class IncidentsView(Protocol):
    def list(self, status: Status = "open", limit: int = 100) -> list[dict[str, Any]]:
        """Incidents, newest opened first, as the items of `GET /api/v1/incidents?status=...`."""
        ...

    def get(self, incident_id: str) -> dict[str, Any]:
        """One incident with its `timeline` (alert transitions, silences, runbook runs and steps, notes),
        oldest first, as `GET /api/v1/incidents/{id}`; UnknownIncident if none."""
        ...

    def add_note(self, incident_id: str, author: str, text: str) -> dict[str, Any]:
        """Append a note (at most `MAX_NOTE_CHARS` characters); answers the timeline entry it became."""
        ...

    def close(self, incident_id: str, who: str) -> dict[str, Any]:
        """Close an open incident by hand, recording who; answers the incident. IncidentResolved if it is not open."""
        ...


async def incidents_view(request: Request) -> IncidentsView | None:
    """Placeholder: alerting binds its view; None means alerting is not running."""
    return await provided(request, incidents_view, fallback(None))
