"""The incident pages: `/incidents` (open and resolved, newest first) and `/incidents/{id}` (its alerts,
the charts of what they name with the alert and action times marked, the timeline, a note form and a
Close button), and `GET /api/v1/incidents/{id}/marks`, the marks those charts draw.

Incidents are read and changed through `vigil.incident_view.IncidentsView`, which alerting binds;
without it the pages say "incidents not configured". Forms post with the session's CSRF token and need
the operator role; a taken one redirects (303) back to the incident with a fixed notice, so a reload
never posts twice; a refused one renders the page again with the reason and the status the incidents
API would answer (a bad field 400, unknown 404, already resolved 409, store down 503).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from dashboard import incident_format as f
from dashboard.alert_format import unix
from dashboard.context import now_s, service_context
from dashboard.forms import Refused, read_page_form, refusals, required, taken
from dashboard.incident_marks import Coalesced, marks_json
from dashboard.render import render
from vigil.access import Principal, Role, require
from vigil.incident_view import MAX_NOTE_CHARS, REFUSAL_STATUS, IncidentsView, incidents_view
from vigil.kernel import ServiceContext
from vigil.logs import event

log = logging.getLogger(__name__)

STATUSES = ("all", "open", "resolved")
LIST_SHOWN = 200  # the API lists up to 1000
NOT_CONFIGURED = "incidents not configured"
NOTICES = {"noted": "Note added.", "closed": "Incident closed."}  # fixed: a link cannot inject text

router = APIRouter()
Viewer = Depends(require(Role.VIEWER, page=True))
Reader = Depends(require(Role.VIEWER))  # the charts' script: an expired session answers 401, not a login page
Operator = Depends(require(Role.OPERATOR, write=True, page=True))
View = Depends(incidents_view)
Context = Depends(service_context)
MARKS = Coalesced()


@router.get("/incidents", response_class=HTMLResponse, include_in_schema=False)
def incidents_page(
    request: Request,
    status: str = "all",
    who: Principal = Viewer,
    view: IncidentsView | None = View,
    ctx: ServiceContext = Context,
) -> HTMLResponse:
    page: dict[str, Any] = {"configured": view is not None, "incidents": [], "error": ""}
    code = 200
    if status not in STATUSES:
        code, page["error"], status = 400, f"status: {status!r}; use all, open or resolved", "all"
    elif view is not None:
        try:
            with refusals(REFUSAL_STATUS):
                found = view.list(status, LIST_SHOWN)  # type: ignore[arg-type]  # checked above
            page["incidents"] = [f.incident_row(i, now_s(ctx)) for i in found]
        except Refused as exc:
            code, page["error"] = exc.status, str(exc)
    return render(request, "incidents.html", status=code, statuses=STATUSES, chosen=status, shown=LIST_SHOWN, **page)


def _incident_page(
    request: Request,
    view: IncidentsView | None,
    who: Principal,
    incident_id: str,
    now: float,
    *,
    status: int = 200,
    error: str = "",
    notice: str = "",
    note: str = "",
) -> HTMLResponse:
    page: dict[str, Any] = {"incident_id": incident_id, "incident": None, "notice": notice, "error": error}
    if view is None:
        return render(request, "incident.html", status=404, configured=False, **page)
    try:
        with refusals(REFUSAL_STATUS):
            found = view.get(incident_id)
    except Refused as exc:
        page["error"] = error or str(exc)
        return render(request, "incident.html", status=exc.status, configured=True, **page)
    opened = unix(found.get("openedAt"))
    return render(
        request,
        "incident.html",
        status=status,
        configured=True,
        can_act=who.role >= Role.OPERATOR,
        row=f.incident_row(found, now),
        alerts=[f.alert_row(a) for a in found.get("alerts", [])],
        timeline=[f.entry_row(e, opened) for e in found.get("timeline", [])],
        groups=f.chart_groups(found, now),
        more=f.more_subjects(found),
        group_labels=sorted((found.get("groupLabels") or {}).items()),
        truncated=bool(found.get("truncated")),
        note=note,
        max_note=MAX_NOTE_CHARS,
        link=f.incident_link(incident_id),
        **{**page, "incident": found},
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
def incident_page(
    incident_id: str,
    request: Request,
    done: str = "",
    who: Principal = Viewer,
    view: IncidentsView | None = View,
    ctx: ServiceContext = Context,
) -> HTMLResponse:
    return _incident_page(request, view, who, incident_id, now_s(ctx), notice=NOTICES.get(done, ""))


async def _act(
    request: Request,
    keeper: IncidentsView,
    who: Principal,
    incident_id: str,
    ctx: ServiceContext,
    change: Callable[[], object],
    done: str,
    note: str = "",
) -> Response:
    """A page form's change, then back to the incident; refused, the page again with the reason and the note."""
    try:
        with refusals(REFUSAL_STATUS):
            await run_in_threadpool(change)
    except Refused as exc:
        return await run_in_threadpool(
            _incident_page, request, keeper, who, incident_id, now_s(ctx), status=exc.status, error=str(exc), note=note
        )
    MARKS.drop((id(keeper), incident_id))
    return taken(f.incident_link(incident_id), done)


@router.post("/incidents/{incident_id}/notes", include_in_schema=False)
async def note_from_page(
    incident_id: str,
    request: Request,
    who: Principal = Operator,
    view: IncidentsView | None = View,
    ctx: ServiceContext = Context,
) -> Response:
    keeper = required(view, NOT_CONFIGURED)
    text = str((await read_page_form(request)).get("text", "")).replace("\r\n", "\n")  # a textarea sends CRLF

    def add() -> None:
        keeper.add_note(incident_id, who.name, text)
        event(log, "incident_note_added", incident=incident_id, by=who.name, via="page", chars=len(text))

    return await _act(request, keeper, who, incident_id, ctx, add, "noted", note=text)


@router.post("/incidents/{incident_id}/close", include_in_schema=False)
async def close_from_page(
    incident_id: str,
    request: Request,
    who: Principal = Operator,
    view: IncidentsView | None = View,
    ctx: ServiceContext = Context,
) -> Response:
    keeper = required(view, NOT_CONFIGURED)
    return await _act(request, keeper, who, incident_id, ctx, lambda: keeper.close(incident_id, who.name), "closed")


@router.get(
    "/api/v1/incidents/{incident_id}/marks",
    tags=["incidents"],
    summary="Marks for the incident's charts: its alerts firing and resolving, runbook runs and step outcomes, "
    "silences, notes, its opening and end, and the XIDs of the GPUs its alerts name",
)
def incident_marks(
    incident_id: str,
    who: Principal = Reader,
    view: IncidentsView | None = View,
    ctx: ServiceContext = Context,
) -> Response:
    if view is None:
        raise HTTPException(503, "incidents are unavailable: alerting is not running")
    try:
        with refusals(REFUSAL_STATUS):
            body = MARKS.get((id(view), incident_id), lambda: marks_json(view, ctx.store, incident_id, now_s(ctx)))
    except Refused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})
