"""The alert and SLO pages (`/alerts`, `/slos`), the silence forms, and the budget-burn chart's data.

Alerting is read through `vigil.views.AlertsView`, which the alerting service binds; without it both
pages say so and answer 200. A refused form (a bad duration, a silence alerting will not take)
renders the page again with the reason and a 400; a taken one redirects back with a notice (303),
so a reload never posts twice.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from dashboard.alert_format import (
    DURATIONS,
    RANGES,
    alert_row,
    history_row,
    silence_body,
    silence_row,
    slo_card,
)
from dashboard.context import now_s, service_context
from dashboard.forms import read_page_form, required, taken
from dashboard.render import render
from vigil.access import Principal, Role, require
from vigil.kernel import ServiceContext
from vigil.logs import event
from vigil.store import StoreError
from vigil.store.schema import SchemaContext
from vigil.store.window_sql import plan_window
from vigil.views import AlertsView, ViewError, alerts_view

log = logging.getLogger(__name__)

HISTORY_SHOWN = 50
ALERTS_SHOWN = 500  # an alert storm on a thousand GPUs must not make a page of megabytes; the API lists all
CHART_POINTS = 120  # a budget-burn chart's default resolution; the view refuses past its own bound
MAX_RANGE_S = 400 * 86400
NOT_CONFIGURED = "alerting not configured"
NOTICES = {"silenced": "Silence created.", "expired": "Silence expired."}  # fixed: a link cannot inject text

router = APIRouter()
Viewer = Depends(require(Role.VIEWER, page=True))
Operator = Depends(require(Role.OPERATOR, write=True, page=True))
View = Depends(alerts_view)
Context = Depends(service_context)


def _alerts_page(
    request: Request,
    view: AlertsView | None,
    who: Principal,
    now: float,
    *,
    status: int = 200,
    error: str = "",
    notice: str = "",
) -> HTMLResponse:
    page: dict[str, Any] = {
        "configured": view is not None,
        "can_silence": who.role >= Role.OPERATOR,
        "durations": list(DURATIONS),
        "error": error,
        "notice": notice,
        "alerts": [],
        "alerts_total": 0,
        "silences": [],
        "history": [],
        "unavailable": [],
    }
    if view is not None:
        alerts = [alert_row(a, now) for a in view.alerts()]
        alerts.sort(key=lambda a: a["state"] != "firing")  # firing first; stable, so oldest first within
        page["alerts"], page["alerts_total"] = alerts[:ALERTS_SHOWN], len(alerts)
        try:
            page["silences"] = [silence_row(s) for s in view.silences()]
        except ViewError as exc:
            page["unavailable"].append(str(exc))
        try:
            page["history"] = [history_row(t) for t in view.history(HISTORY_SHOWN)]
        except StoreError as exc:
            page["unavailable"].append(f"history: the store failed ({exc})")
    return render(request, "alerts.html", status=status, **page)


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
def alerts_page(
    request: Request,
    done: str = "",
    who: Principal = Viewer,
    view: AlertsView | None = View,
    ctx: ServiceContext = Context,
) -> HTMLResponse:
    return _alerts_page(request, view, who, now_s(ctx), notice=NOTICES.get(done, ""))


@router.post("/alerts/silence", include_in_schema=False)
async def silence_from_page(
    request: Request,
    who: Principal = Operator,
    view: AlertsView | None = View,
    ctx: ServiceContext = Context,
) -> Response:
    alerting = required(view, NOT_CONFIGURED)
    form = await read_page_form(request)
    try:
        body = silence_body(
            [str(m) for m in form.getlist("matcher")],
            str(form.get("duration", "")),
            str(form.get("custom", "")),
            str(form.get("comment", "")),
            who.name,
        )
        silence_id = await run_in_threadpool(alerting.create_silence, body)
    except ViewError as exc:
        return await run_in_threadpool(_alerts_page, request, alerting, who, now_s(ctx), status=400, error=str(exc))
    event(log, "silence_created", silence=silence_id, by=who.name, via="page", matchers=len(body["matchers"]))
    return taken("/alerts", "silenced")


@router.post("/alerts/silences/{silence_id}/expire", include_in_schema=False)
async def expire_from_page(
    request: Request,
    silence_id: str,
    who: Principal = Operator,
    view: AlertsView | None = View,
    ctx: ServiceContext = Context,
) -> Response:
    alerting = required(view, NOT_CONFIGURED)
    try:
        await run_in_threadpool(alerting.expire_silence, silence_id)
    except ViewError as exc:
        return await run_in_threadpool(_alerts_page, request, alerting, who, now_s(ctx), status=404, error=str(exc))
    event(log, "silence_expired", silence=silence_id, by=who.name, via="page")
    return taken("/alerts", "expired")


@router.get("/slos", response_class=HTMLResponse, include_in_schema=False)
def slos_page(
    request: Request,
    span: str = Query("1d", alias="range"),
    who: Principal = Viewer,
    view: AlertsView | None = View,
) -> HTMLResponse:
    chosen = span if span in RANGES else "1d"
    cards: list[dict[str, Any]] = []
    error = ""
    if view is not None:
        try:
            cards = [slo_card(s, RANGES[chosen]) for s in view.slos()]
        except StoreError as exc:
            error = f"SLO status unavailable: the store failed ({exc})"
    return render(
        request, "slos.html", configured=view is not None, slos=cards, ranges=list(RANGES), chosen=chosen, error=error
    )


def _find_slo(view: AlertsView, name: str) -> dict[str, Any]:
    statuses = view.slos()
    found = [s for s in statuses if name in (f"{s.get('service')}:{s.get('slo')}", s.get("slo"))]
    if not found:
        raise HTTPException(404, f"no SLO {name!r}")
    return found[0]


@router.get(
    "/api/v1/slos/{name:path}/budget",
    tags=["alerting"],
    summary="One SLO's error budget remaining (percent) over time, for the budget-burn chart",
)
def slo_budget(
    name: str,
    start: float | None = Query(None, description="unix seconds; default end - range"),
    end: float | None = Query(None, description="unix seconds; default now"),
    span: int = Query(86400, alias="range", gt=0, le=MAX_RANGE_S, description="seconds before end, without start"),
    step: int | None = Query(None, gt=0, description="seconds between points; default fits about 120"),
    who: Principal = Depends(require(Role.VIEWER)),  # noqa: B008
    view: AlertsView | None = View,
    ctx: ServiceContext = Context,
) -> dict[str, Any]:
    if view is None:
        raise HTTPException(404, NOT_CONFIGURED)
    end = now_s(ctx) if end is None else end
    start = end - span if start is None else start
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise HTTPException(400, "start and end: finite unix seconds, end after start")
    if end - start > MAX_RANGE_S:
        raise HTTPException(400, f"start: the range is at most {MAX_RANGE_S // 86400} days")
    try:
        status = _find_slo(view, name)
        # the source the period's window reads at `end`: its bucket is the finest step worth drawing
        source = plan_window(int(status.get("period_s") or 0), end, SchemaContext.from_settings(ctx.settings)).source
        if step is None:
            bucket = source.bucket_s if source.bucket_s > 1 else 60
            step = max(bucket, math.ceil((end - start) / CHART_POINTS / bucket) * bucket)
        points = view.slo_budget(name, start, end, step)
    except ViewError as exc:
        raise HTTPException(400, str(exc)) from None
    except StoreError as exc:
        raise HTTPException(503, f"SLO budget unavailable: the store failed ({exc})") from None
    return {
        "series": [{"labels": {"slo": name}, "points": [[t, round(v * 100, 6)] for t, v in points]}],
        "step": step,
        "source": source.value,
    }
