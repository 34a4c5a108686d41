"""The dashboard's JSON API under `/api/v1/`: GPUs, nodes, series (the chart contract) and marks.

Every route needs the viewer role. The pages read through the same functions, so a page and a script
see the same thing. Errors become statuses here and only here: a bad parameter 400 naming it, a read
the store refuses 400, a store that fails 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from dashboard.context import fleet_cache, service_context
from dashboard.params import (
    FLEET_FILTERS,
    ParamError,
    Window,
    parse_filters,
    parse_group_by,
    parse_range,
    parse_step,
    parse_window,
)
from dashboard.series_read import KINDS, SeriesAsk, read_asked
from vigil import names as n
from vigil.access import Principal, Role, require
from vigil.kernel import ServiceContext
from vigil.store import StoreQueryError
from vigil.store.fleet import FleetGpu, Mark, nodes, xid_events
from vigil.store.fleet_cache import FleetCache
from vigil.store.plan import QueryRejected
from vigil.store.read import AGGREGATES
from vigil.store.schema import SchemaContext
from vigil.views import AlertsView, alerts_view

router = APIRouter(prefix="/api/v1", tags=["dashboard"])
Viewer = Depends(require(Role.VIEWER))
Context = Depends(service_context)
FleetReads = Depends(fleet_cache)
MAX_ALERT_TRANSITIONS = 1000  # read for marks; older ones fall off the chart's range anyway


@contextmanager
def http_errors() -> Iterator[None]:
    """The one place the dashboard's reads become HTTP statuses."""
    try:
        yield
    except (ParamError, QueryRejected) as exc:
        raise HTTPException(400, str(exc)) from None
    except StoreQueryError as exc:
        raise HTTPException(503, f"the store could not answer: {exc}") from None


def now_s(ctx: ServiceContext) -> float:
    return ctx.clock() / 1e9


def fleet_filters(request: Request) -> dict[str, str]:
    """The fleet's filters from the query string (`team=...`, `gpu.model=...`); empty values mean all."""
    return {key: request.query_params[key] for key in FLEET_FILTERS if request.query_params.get(key)}


def read_fleet(ctx: ServiceContext, cache: FleetCache, filters: dict[str, str], window_s: float) -> list[FleetGpu]:
    """The fleet the page and `/api/v1/gpus` show, read at most once per `VIGIL_FLEET_CACHE_S` per question."""
    return cache.fleet(ctx.store, now_s(ctx), window_s, filters)


def alert_marks(view: AlertsView | None, labels: dict[str, str], window: Window) -> list[Mark]:
    """Alert transitions (to firing, and resolved) whose labels carry every one of `labels`."""
    if view is None:
        return []
    marks = []
    for t in view.history(MAX_ALERT_TRANSITIONS):
        if any(t["labels"].get(k) != v for k, v in labels.items()) or t["to"] not in ("firing", "inactive"):
            continue
        at = datetime.fromisoformat(str(t["at"]).replace("Z", "+00:00")).timestamp()
        if window.start <= at < window.end:
            verb = "firing" if t["to"] == "firing" else "resolved"
            marks.append(Mark(at, f"{t['rule']} {verb}", "alert"))
    return marks


def read_marks(
    ctx: ServiceContext, view: AlertsView | None, window: Window, gpu: str | None, host: str | None
) -> list[Mark]:
    """XID events (and alerts, where alerting runs) of one GPU or one node over the window."""
    if not gpu and not host:
        raise ParamError("gpu", "name a GPU (gpu=UUID) or a node (host=NAME)")
    scope = {n.GPU_UUID: gpu} if gpu else {n.HOST_NAME: host or ""}
    marks = xid_events(ctx.store, window.start, window.end, scope) + alert_marks(view, scope, window)
    return sorted(marks, key=lambda m: m.t)


@router.get(
    "/gpus", summary="The current GPUs with their latest values, identity, XIDs over the range and MIG instances"
)
def gpus(
    request: Request,
    range: str | None = Query(None, description="XID window: 15m, 1h, 6h, 24h, 7d or 30d"),
    ctx: ServiceContext = Context,
    cache: FleetCache = FleetReads,
    who: Principal = Viewer,
) -> dict[str, Any]:
    with http_errors():
        found = read_fleet(ctx, cache, fleet_filters(request), parse_range(range))
    return {"gpus": [g.to_json() for g in found], "simulated": any(g.simulated for g in found)}


@router.get("/nodes", summary="One row per node, folded from its current GPUs")
def nodes_route(
    request: Request,
    range: str | None = Query(None, description="XID window: 15m, 1h, 6h, 24h, 7d or 30d"),
    ctx: ServiceContext = Context,
    cache: FleetCache = FleetReads,
    who: Principal = Viewer,
) -> dict[str, Any]:
    with http_errors():
        found = nodes(read_fleet(ctx, cache, fleet_filters(request), parse_range(range)))
    return {"nodes": [node.to_json() for node in found], "simulated": any(node.simulated for node in found)}


@router.get(
    "/series",
    summary="A metric over a range per step: a gauge's aggregate, a counter's rate, a histogram's quantile or the"
    " ratio of two counters' rates; from raw rows or a rollup chosen by the range",
)
def series(
    metric: str = Query(..., description="a catalogue name, e.g. gpu.utilization"),
    start: str | None = Query(None, description="unix seconds; default end - range"),
    end: str | None = Query(None, description="unix seconds; default now"),
    range: str | None = Query(None, description="15m, 1h, 6h, 24h, 7d or 30d (default 1h)"),
    step: str | None = Query(None, description="seconds; default about 360 points over the range"),
    filter: list[str] = Query([], description="KEY=VALUE, repeatable"),  # noqa: B008
    group_by: list[str] = Query([], description="attribute keys, repeatable or comma-separated"),  # noqa: B008
    kind: str = Query("gauge", description=f"one of {', '.join(KINDS)}"),
    aggregate: str | None = Query(None, description=f"kind=gauge: one of {', '.join(AGGREGATES)} (default avg)"),
    q: str | None = Query(None, description="kind=quantile: the quantile, in [0, 1]"),
    ratio_to: str | None = Query(None, description="kind=ratio: the denominator's counter (default: metric)"),
    ratio_filter: list[str] = Query(  # noqa: B008
        [], description="kind=ratio: KEY=VALUE on the denominator, repeatable (filter applies to the numerator)"
    ),
    ctx: ServiceContext = Context,
    who: Principal = Viewer,
) -> dict[str, Any]:
    with http_errors():
        now = now_s(ctx)
        window = parse_window(range, start, end, now)
        ask = SeriesAsk(
            metric,
            kind,
            window,
            parse_step(step, window.seconds),
            parse_filters(filter),
            parse_group_by(group_by),
            aggregate,
            q,
            ratio_to,
            tuple(ratio_filter),
        )
        result = read_asked(ctx.store, ask, SchemaContext.from_settings(ctx.settings), now)
    return {
        "series": [{"labels": s.labels, "points": s.points} for s in result.series],
        "step": result.step,
        "source": result.source.value,
    }


@router.get("/marks", summary="Events to mark on a GPU's or a node's charts: XIDs, and alerts where alerting runs")
def marks(
    gpu: str | None = Query(None, description="a gpu.uuid"),
    host: str | None = Query(None, description="a host.name"),
    start: str | None = Query(None, description="unix seconds; default end - range"),
    end: str | None = Query(None, description="unix seconds; default now"),
    range: str | None = Query(None, description="15m, 1h, 6h, 24h, 7d or 30d (default 1h)"),
    ctx: ServiceContext = Context,
    view: AlertsView | None = Depends(alerts_view),  # noqa: B008
    who: Principal = Viewer,
) -> dict[str, Any]:
    with http_errors():
        window = parse_window(range, start, end, now_s(ctx))
        found = read_marks(ctx, view, window, gpu, host)
    return {"marks": [m.to_json() for m in found]}
