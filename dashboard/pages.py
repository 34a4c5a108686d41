"""The pages SREs watch: the fleet, a GPU, a node, inference engines; and /docs.

Server-rendered (Jinja2, autoescaped); charts are `.chart` divs that `static/vigil.js` draws with uPlot
from the JSON API (the chart contract), and the fleet table refreshes itself through htmx. Without the
npm-built files in `static/vendor/` every page still shows its text and tables, and the service logs a
warning naming `make assets`.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dashboard.api import FleetReads, fleet_filters, http_errors, now_s, read_fleet
from dashboard.context import service_context
from dashboard.params import FLEET_FILTERS, RANGES, parse_range, parse_step
from dashboard.render import ENV, STATIC, render
from vigil import names as n
from vigil.access import Principal, Role, require
from vigil.kernel import ServiceContext
from vigil.logs import event
from vigil.store.fleet import fleet, nodes
from vigil.store.fleet_cache import FleetCache
from vigil.store.inference import engine_stats
from vigil.store.schema import SchemaContext

log = logging.getLogger("vigil.dashboard")
router = APIRouter(include_in_schema=False)
Viewer = Depends(require(Role.VIEWER, page=True))
ApiViewer = Depends(require(Role.VIEWER))
Context = Depends(service_context)
VENDOR_FILES = ("uPlot.iife.min.js", "uPlot.min.css", "htmx.min.js", "swagger-ui-bundle.js", "swagger-ui.css")
OVERVIEW_STEP_S = 60  # the fleet charts' least step from an hour's range up (longer ones are coarser anyway)
INFERENCE_WINDOW_S = 300  # latency quantiles and rates over the last five minutes, as Grafana's vLLM board
INFERENCE_MIN_STEP_S = 30  # a few of the agent's engine scrapes per point of a rate or quantile chart


def missing_assets() -> list[str]:
    """The npm-built files absent from `static/vendor/` (a checkout where `make assets` has not run)."""
    return [name for name in VENDOR_FILES if not (STATIC / "vendor" / name).is_file()]


def warn_missing_assets() -> None:
    missing = missing_assets()
    if missing:
        event(
            log,
            "dashboard_assets_missing",
            level=logging.WARNING,
            files=",".join(missing),
            fix="run `make assets` (npm ci in web/): pages show text and tables, but no charts or live refresh",
        )


ENV.globals["missing_assets"] = missing_assets


def _chart(
    title: str,
    metric: str,
    unit: str,
    range_: str,
    *,
    kind: str = "line",
    marks: str = "",
    series_kind: str = "",
    **params: Any,
) -> dict[str, str]:
    """A chart of the contract; `kind` is how it is drawn, `series_kind` what the series API reads (gauge if unset)."""
    query: list[tuple[str, str]] = [("metric", metric), ("range", range_)]
    if series_kind:
        query.append(("kind", series_kind))
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            query.append((key, str(item)))
    return {"title": title, "src": f"/api/v1/series?{urlencode(query)}", "kind": kind, "unit": unit, "marks": marks}


def _detail_charts(range_: str, filters: list[str], group_by: str, marks: str) -> list[dict[str, str]]:
    common: dict[str, Any] = {"filter": filters, "marks": marks}
    if group_by:
        common["group_by"] = group_by
    return [
        _chart("Utilization", n.GPU_UTILIZATION.name, "%", range_, **common),
        _chart("Memory used", n.GPU_MEMORY_USED.name, "By", range_, **common),
        _chart("Power draw", n.GPU_POWER_DRAW.name, "W", range_, **common),
        _chart("Temperature", n.GPU_TEMPERATURE.name, "Cel", range_, **common),
        _chart("SM clock", n.GPU_CLOCK_SM.name, "MHz", range_, **common),
        _chart("Memory clock", n.GPU_CLOCK_MEMORY.name, "MHz", range_, **common),
        _chart(
            "Throttle reasons (active)",
            n.GPU_CLOCK_EVENT_REASON_ACTIVE.name,
            "",
            range_,
            kind="stacked",
            filter=filters,
            group_by=[*([group_by] if group_by else []), n.REASON],
            marks=marks,
        ),
    ]


def _range_choice(request: Request) -> str:
    value = request.query_params.get("range") or "1h"
    try:
        parse_range(value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return value


def _fleet_context(request: Request, ctx: ServiceContext, cache: FleetCache) -> dict[str, Any]:
    range_ = _range_choice(request)
    filters = fleet_filters(request)
    with http_errors():
        gpus = read_fleet(ctx, cache, filters, RANGES[range_])
    query = urlencode({**filters, "range": range_})
    chart_filters = [f"{k}={v}" for k, v in filters.items()]
    # Fleet-wide trends by the minute from the 1 m rollup: at 1,000 GPUs an hour of raw rows at 10 s
    # costs the two charts about 4x the CPU, for detail no one reads off a fleet-wide line.
    span = RANGES[range_]
    overview: dict[str, Any] = {"step": OVERVIEW_STEP_S} if span >= 3600 and parse_step(None, span) < 60 else {}
    return {
        "gpus": gpus,
        "nodes": nodes(gpus),
        "filters": {key: request.query_params.get(key, "") for key in FLEET_FILTERS},
        "range": range_,
        "ranges": list(RANGES),
        "query": query,
        "simulated": any(g.simulated for g in gpus),
        "charts": [
            _chart(
                "Fleet utilization",
                n.GPU_UTILIZATION.name,
                "%",
                range_,
                filter=chart_filters,
                group_by="team",
                **overview,
            ),
            _chart(
                "Fleet power draw",
                n.GPU_POWER_DRAW.name,
                "W",
                range_,
                kind="stacked",
                filter=chart_filters,
                group_by="host.name",
                aggregate="avg",
                **overview,
            ),
        ],
    }


@router.get("/", response_class=HTMLResponse)
def fleet_page(
    request: Request, ctx: ServiceContext = Context, cache: FleetCache = FleetReads, who: Principal = Viewer
) -> HTMLResponse:
    return render(request, "fleet.html", **_fleet_context(request, ctx, cache))


@router.get("/fragments/fleet", response_class=HTMLResponse)
def fleet_fragment(
    request: Request, ctx: ServiceContext = Context, cache: FleetCache = FleetReads, who: Principal = Viewer
) -> HTMLResponse:
    """The fleet's tables alone: what htmx swaps in every few seconds."""
    return render(request, "fleet_tables.html", **_fleet_context(request, ctx, cache))


@router.get("/gpus/{uuid}", response_class=HTMLResponse)
def gpu_page(uuid: str, request: Request, ctx: ServiceContext = Context, who: Principal = Viewer) -> HTMLResponse:
    range_ = _range_choice(request)
    with http_errors():
        found = fleet(ctx.store, now_s(ctx), RANGES[range_], {n.GPU_UUID: uuid})
    gpu = found[0] if found else None
    marks = f"/api/v1/marks?{urlencode({'gpu': uuid, 'range': range_})}"
    return render(
        request,
        "gpu.html",
        status=200 if gpu else 404,
        uuid=uuid,
        gpu=gpu,
        range=range_,
        ranges=list(RANGES),
        simulated=bool(gpu and gpu.simulated),
        charts=_detail_charts(range_, [f"{n.GPU_UUID}={uuid}"], "", marks),
    )


@router.get("/nodes/{host:path}", response_class=HTMLResponse)
def node_page(host: str, request: Request, ctx: ServiceContext = Context, who: Principal = Viewer) -> HTMLResponse:
    range_ = _range_choice(request)
    with http_errors():
        gpus = fleet(ctx.store, now_s(ctx), RANGES[range_], {n.HOST_NAME: host})
    marks = f"/api/v1/marks?{urlencode({'host': host, 'range': range_})}"
    return render(
        request,
        "node.html",
        status=200 if gpus else 404,
        host=host,
        gpus=gpus,
        node=nodes(gpus)[0] if gpus else None,
        range=range_,
        ranges=list(RANGES),
        simulated=any(g.simulated for g in gpus),
        charts=_detail_charts(range_, [f"{n.HOST_NAME}={host}"], n.GPU_INDEX, marks),
    )


def _inference_charts(range_: str) -> list[dict[str, str]]:
    """Per engine and endpoint: latency quantiles, throughput, errors and preemptions per step beside the
    queue and KV-cache gauges. Counters and histograms are charted at a step of at least
    `INFERENCE_MIN_STEP_S`, so each point's quantile rests on a few scrapes rather than one."""
    by = [n.LLM_ENGINE, n.LLM_ENDPOINT]
    step = str(max(INFERENCE_MIN_STEP_S, parse_step(None, RANGES[range_])))

    def counter(title: str, metric: str, unit: str, kind: str, **params: Any) -> dict[str, str]:
        return _chart(title, metric, unit, range_, series_kind=kind, group_by=by, step=step, **params)

    return [
        _chart("Running requests", n.LLM_RUNNING.name, "", range_, group_by=by),
        _chart("Waiting requests", n.LLM_WAITING.name, "", range_, group_by=by),
        _chart("KV-cache usage", n.LLM_KV_USAGE.name, "ratio", range_, group_by=by),
        counter("TTFT p50", n.LLM_TTFT.name, "s", "quantile", q="0.5"),
        counter("TTFT p99", n.LLM_TTFT.name, "s", "quantile", q="0.99"),
        counter("ITL p50", n.LLM_ITL.name, "s", "quantile", q="0.5"),
        counter("ITL p99", n.LLM_ITL.name, "s", "quantile", q="0.99"),
        counter("Tokens generated /s", n.LLM_TOKENS_GENERATED.name, "/s", "rate"),
        counter("Requests finished /s", n.LLM_FINISHED.name, "/s", "rate"),
        counter("Error rate", n.LLM_FINISHED.name, "ratio", "ratio", filter=f"{n.OUTCOME}=error"),
        counter("Preemptions /s", n.LLM_PREEMPTIONS.name, "/s", "rate"),
    ]


@router.get("/inference", response_class=HTMLResponse)
def inference_page(request: Request, ctx: ServiceContext = Context, who: Principal = Viewer) -> HTMLResponse:
    range_ = _range_choice(request)
    with http_errors():
        engines = engine_stats(ctx.store, now_s(ctx), INFERENCE_WINDOW_S, SchemaContext.from_settings(ctx.settings))
    charts = _inference_charts(range_)
    return render(
        request,
        "inference.html",
        engines=engines,
        window_s=INFERENCE_WINDOW_S,
        range=range_,
        ranges=list(RANGES),
        charts=charts,
    )


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, who: Principal = ApiViewer) -> JSONResponse:
    """The API's OpenAPI description, for viewers and scripts with a token (it lists every route)."""
    return JSONResponse(request.app.openapi())


@router.get("/docs", response_class=HTMLResponse)
def docs_page(request: Request, who: Principal = Viewer) -> HTMLResponse:
    """Swagger UI from npm's swagger-ui-dist, started by our own static script (no inline script)."""
    return render(request, "docs.html")
