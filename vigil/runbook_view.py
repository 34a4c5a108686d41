"""What the runbook service offers the dashboard's pages, handed in by the composition root.

Like `vigil.views.AlertsView`: the runbook service binds its view through its `providers` for the
placeholder below; a page declares `Depends(runbooks_view)` and gets None when runbooks are not
running. Values are JSON-ready dicts in the shapes of `/api/v1/runbooks` and `/api/v1/runs`, so a
page and a script read the same thing. Refusals are typed; `REFUSAL_STATUS` gives each its HTTP status
(unknown 404, conflict 409, bad request 400, too many 429) for the API and the pages alike.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import Request

from vigil.providers import fallback, provided


class RunbookRequestError(ValueError):
    """A request the runbook service refuses; the message says why and what would work."""


class UnknownName(RunbookRequestError):
    """No runbook or run by that name or id."""


class RunConflict(RunbookRequestError):
    """The request clashes with a run's state: a run already holds this runbook and target, or the run
    is not waiting for what was asked (approval, retry, cancel)."""


class BadRunRequest(RunbookRequestError):
    """Bad parameters or target."""


class TooManyRuns(RunbookRequestError):
    """As many runs are active as the service allows at once."""


# The status each refusal is answered with, by the API and the pages alike (the first kind that matches).
REFUSAL_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownName, 404),
    (RunConflict, 409),
    (TooManyRuns, 429),
    (BadRunRequest, 400),
    (RunbookRequestError, 400),  # any other refusal
)


class RunbooksView(Protocol):
    def runbooks(self) -> list[dict[str, Any]]:
        """Every loaded runbook, as the items of `GET /api/v1/runbooks`."""
        ...

    def runbook(self, name: str) -> dict[str, Any]:
        """One runbook (`GET /api/v1/runbooks/{name}`); UnknownName if none."""
        ...

    def runs(self, limit: int = 100, runbook: str | None = None) -> list[dict[str, Any]]:
        """The newest runs, newest first, as `GET /api/v1/runs`."""
        ...

    def run(self, run_id: str) -> dict[str, Any]:
        """One run with its steps and log, as `GET /api/v1/runs/{id}`; UnknownName if none."""
        ...

    def start_run(
        self,
        name: str,
        who: str,
        params: dict[str, Any] | None = None,
        target: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Start a run (a dry run answers when done); RunConflict when one holds the runbook and target."""
        ...

    def approve(self, run_id: str, who: str) -> dict[str, Any]: ...

    def retry(self, run_id: str, who: str) -> dict[str, Any]:
        """Run a failed or interrupted run again from the step it stopped at."""
        ...

    def cancel(self, run_id: str, who: str) -> dict[str, Any]: ...


async def runbooks_view(request: Request) -> RunbooksView | None:
    """Placeholder: the runbook service binds its view; None means runbooks are not running."""
    return await provided(request, runbooks_view, fallback(None))
