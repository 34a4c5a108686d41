"""The runbook pages: `/runbooks` (the runbooks and the run history), `/runbooks/{name}` (its steps and
the run form), `/runs/{id}` (a run's steps, approvals and live step log) and their forms.

Runbooks are read and driven through `vigil.runbook_view.RunbooksView`, which the runbook service binds;
without it the pages say "runbooks not configured". Forms post with the session's CSRF token and need
the operator role; a taken request redirects (303) to the run's page with a fixed notice, so a reload
never posts twice; a refused one renders the page again with the reason and the status the runbook
API would answer. The run's live part is a fragment htmx polls every 2 s until the run is finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from dashboard import run_format as f
from dashboard.context import now_s, service_context
from dashboard.forms import Refused, read_page_form, refusals, required, taken
from dashboard.render import render
from vigil.access import Principal, Role, require
from vigil.kernel import ServiceContext
from vigil.logs import event
from vigil.runbook_view import REFUSAL_STATUS, RunbooksView, runbooks_view
from vigil.store import StoreError

log = logging.getLogger(__name__)

RUNS_SHOWN = 50
NOT_CONFIGURED = "runbooks not configured"
# Fixed texts: a link cannot inject a notice.
NOTICES = {
    "started": "Run started.",
    "dry-run": "Dry run: each step shows what it would do; nothing was changed.",
    "approved": "Approved: the run goes on.",
    "retried": "Retried from the step it stopped at.",
    "cancelled": "Cancel asked: the run stops after its current step.",
}

router = APIRouter(include_in_schema=False)
Viewer = Depends(require(Role.VIEWER, page=True))
Poller = Depends(require(Role.VIEWER))  # htmx: an expired session answers 401, and the page keeps what it shows
Operator = Depends(require(Role.OPERATOR, write=True, page=True))
View = Depends(runbooks_view)
Context = Depends(service_context)


@contextmanager
def _refusals() -> Iterator[None]:
    """The one mapping of this module: a runbook refusal to its status, a failed store to 503."""
    try:
        with refusals(REFUSAL_STATUS):
            yield
    except StoreError as exc:
        raise Refused(503, f"the store failed: {exc}") from None


def _can_run(who: Principal) -> bool:
    return who.role >= Role.OPERATOR


@router.get("/runbooks", response_class=HTMLResponse)
def runbooks_page(request: Request, who: Principal = Viewer, view: RunbooksView | None = View) -> HTMLResponse:
    page: dict[str, Any] = {"configured": view is not None, "runbooks": [], "runs": [], "error": ""}
    if view is not None:
        page["runbooks"] = [{**b, "link": f.runbook_link(b["name"])} for b in view.runbooks()]
        try:
            page["runs"] = [f.run_row(r) for r in view.runs(RUNS_SHOWN)]
        except StoreError as exc:
            page["error"] = f"run history unavailable: the store failed ({exc})"
    return render(request, "runbooks.html", runs_shown=RUNS_SHOWN, **page)


def _runbook_page(
    request: Request,
    view: RunbooksView | None,
    who: Principal,
    name: str,
    *,
    status: int = 200,
    error: str = "",
    given: dict[str, str] | None = None,
) -> HTMLResponse:
    if view is None:
        return render(request, "runbook.html", status=404, configured=False, book=None, name=name, error="")
    try:
        with _refusals():
            book = view.runbook(name)
    except Refused as exc:
        return render(request, "runbook.html", status=exc.status, configured=True, book=None, name=name, error=str(exc))
    runs: list[dict[str, Any]] = []
    try:
        runs = [f.run_row(r) for r in view.runs(RUNS_SHOWN, name)]
    except StoreError as exc:
        error = error or f"run history unavailable: the store failed ({exc})"
    values = given or {}
    return render(
        request,
        "runbook.html",
        status=status,
        configured=True,
        name=name,
        book=book,
        fields=f.param_fields(book, values),
        target=values.get("target", request.query_params.get("target", "")),
        can_run=_can_run(who),
        runs=runs,
        error=error,
        action=f.runbook_link(name),
    )


@router.get("/runbooks/{name}", response_class=HTMLResponse)
def runbook_page(
    name: str, request: Request, who: Principal = Viewer, view: RunbooksView | None = View
) -> HTMLResponse:
    return _runbook_page(request, view, who, name)


async def _start(request: Request, name: str, who: Principal, view: RunbooksView | None, dry_run: bool) -> Response:
    runner = required(view, NOT_CONFIGURED)
    form = await read_page_form(request)
    target = str(form.get("target") or "").strip()
    try:
        with _refusals():
            book = await run_in_threadpool(runner.runbook, name)
            params = f.form_params(book, form)
            run = await run_in_threadpool(runner.start_run, name, who.name, params, target or None, dry_run)
    except Refused as exc:
        given = {k: str(v) for k, v in form.items() if k != "csrf_token"}
        return await run_in_threadpool(
            _runbook_page, request, runner, who, name, status=exc.status, error=str(exc), given=given
        )
    event(log, "runbook_run_requested", run=run["id"], runbook=name, by=who.name, via="page", dry_run=dry_run)
    return taken(f.run_link(run["id"]), "dry-run" if dry_run else "started")


@router.post("/runbooks/{name}/run")
async def run_from_page(
    name: str, request: Request, who: Principal = Operator, view: RunbooksView | None = View
) -> Response:
    return await _start(request, name, who, view, dry_run=False)


@router.post("/runbooks/{name}/dry-run")
async def dry_run_from_page(
    name: str, request: Request, who: Principal = Operator, view: RunbooksView | None = View
) -> Response:
    return await _start(request, name, who, view, dry_run=True)


def _run_context(view: RunbooksView | None, run_id: str, now: float) -> tuple[int, dict[str, Any]]:
    if view is None:
        return 404, {"configured": False, "run": None, "error": ""}
    try:
        with _refusals():
            return 200, {"configured": True, "run": f.run_page(view.run(run_id), now), "error": ""}
    except Refused as exc:
        return exc.status, {"configured": True, "run": None, "error": str(exc)}


def _run_page(
    request: Request,
    view: RunbooksView | None,
    who: Principal,
    run_id: str,
    now: float,
    *,
    status: int = 200,
    error: str = "",
    notice: str = "",
) -> HTMLResponse:
    found, page = _run_context(view, run_id, now)
    page["error"] = error or page["error"]
    return render(
        request,
        "run.html",
        status=status if found == 200 else found,
        run_id=run_id,
        can_run=_can_run(who),
        notice=notice,
        **page,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    run_id: str,
    request: Request,
    done: str = "",
    who: Principal = Viewer,
    view: RunbooksView | None = View,
    ctx: ServiceContext = Context,
) -> HTMLResponse:
    return _run_page(request, view, who, run_id, now_s(ctx), notice=NOTICES.get(done, ""))


@router.get("/fragments/runs/{run_id}", response_class=HTMLResponse)
def run_fragment(
    run_id: str,
    request: Request,
    who: Principal = Poller,
    view: RunbooksView | None = View,
    ctx: ServiceContext = Context,
) -> HTMLResponse:
    """The run's live part alone: what htmx swaps in every 2 s while the run is not finished."""
    status, page = _run_context(view, run_id, now_s(ctx))
    if page["run"] is None:
        raise HTTPException(status, page["error"] or NOT_CONFIGURED)
    return render(request, "run_live.html", run=page["run"], can_run=_can_run(who))


def _run_action(name: str, done: str) -> Callable[..., Any]:
    async def act(
        run_id: str,
        request: Request,
        who: Principal = Operator,
        view: RunbooksView | None = View,
        ctx: ServiceContext = Context,
    ) -> Response:
        runner = required(view, NOT_CONFIGURED)
        try:
            with _refusals():
                await run_in_threadpool(getattr(runner, name), run_id, who.name)
        except Refused as exc:
            return await run_in_threadpool(
                _run_page, request, runner, who, run_id, now_s(ctx), status=exc.status, error=str(exc)
            )
        event(log, f"runbook_run_{done}", run=run_id, by=who.name, via="page")
        return taken(f.run_link(run_id), done)

    act.__name__ = f"{name}_from_page"
    return act


router.add_api_route("/runs/{run_id}/approve", _run_action("approve", "approved"), methods=["POST"])
router.add_api_route("/runs/{run_id}/retry", _run_action("retry", "retried"), methods=["POST"])
router.add_api_route("/runs/{run_id}/cancel", _run_action("cancel", "cancelled"), methods=["POST"])
