"""The runbook HTTP API under `/api/v1`: runbooks, runs, approvals. Refusals are answered with the status
`vigil.runbook_view.REFUSAL_STATUS` gives them, as the pages answer them. Viewers read; operators start,
approve, retry and cancel (with CSRF on a session).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.access import Principal, Role, require
from vigil.http import answer
from vigil.providers import provided, unbound
from vigil.runbook_view import REFUSAL_STATUS, RunbooksView

router = APIRouter(prefix="/api/v1", tags=["runbooks"])


async def get_runbooks(request: Request) -> RunbooksView:
    """Placeholder: `RunbooksService` binds itself (`vigil.providers`)."""
    return await provided(
        request, get_runbooks, unbound("no runbooks bound: mount this router through runbooks.service.RunbooksService")
    )


# Dependencies as module-level values: the same objects on every route, and no call in a default.
VIEW = Depends(get_runbooks)
READER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR, write=True))


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=64)
    target: str | None = Field(None, max_length=512)
    dry_run: bool = False


async def _answer(call: Any, *args: Any) -> Any:
    return await answer(REFUSAL_STATUS, call, *args)


@router.get("/runbooks", summary="Every loaded runbook: parameters, target kind, steps")
async def list_runbooks(view: RunbooksView = VIEW, _: Principal = READER) -> dict[str, Any]:
    return {"runbooks": await _answer(view.runbooks)}


@router.get("/runbooks/{name}", summary="One runbook")
async def get_runbook(name: str, view: RunbooksView = VIEW, _: Principal = READER) -> dict[str, Any]:
    return await _answer(view.runbook, name)


@router.post(
    "/runbooks/{name}/runs",
    status_code=201,
    summary="Start a run (a dry run answers when done); 409 if one holds the target",
)
async def start_run(
    name: str,
    body: StartBody,
    view: RunbooksView = VIEW,
    who: Principal = OPERATOR,
) -> dict[str, Any]:
    return await _answer(lambda: view.start_run(name, who.name, dict(body.params), body.target, body.dry_run))


@router.get("/runs", summary="The newest runs, newest first")
async def list_runs(
    runbook: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    view: RunbooksView = VIEW,
    _: Principal = READER,
) -> dict[str, Any]:
    return {"runs": await _answer(view.runs, limit, runbook)}


@router.get("/runs/{run_id}", summary="One run: its state, steps and step log")
async def get_run(run_id: str, view: RunbooksView = VIEW, _: Principal = READER) -> dict[str, Any]:
    return await _answer(view.run, run_id)


@router.post("/runs/{run_id}/approve", summary="Approve the step the run waits at; the approver is recorded")
async def approve_run(
    run_id: str,
    view: RunbooksView = VIEW,
    who: Principal = OPERATOR,
) -> dict[str, Any]:
    return await _answer(view.approve, run_id, who.name)


@router.post("/runs/{run_id}/retry", summary="Run a failed or interrupted run again from the step it stopped at")
async def retry_run(
    run_id: str,
    view: RunbooksView = VIEW,
    who: Principal = OPERATOR,
) -> dict[str, Any]:
    return await _answer(view.retry, run_id, who.name)


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a running run: its step in progress stops (a wait at once, an action before its next request)",
)
async def cancel_run(
    run_id: str,
    view: RunbooksView = VIEW,
    who: Principal = OPERATOR,
) -> dict[str, Any]:
    return await _answer(view.cancel, run_id, who.name)
