"""Historical utilization: `GET /api/v1/utilization[...]`, its CSV and Parquet downloads, and `/history`.

Every route reads the same parameters (`params.usage_query`) and plans once, so the page's chart,
its tables and its downloads answer from one source at one step. The numbers' rules are in
`vigil.store.usage`. Errors become HTTP statuses here and nowhere else in this module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dashboard.context import service_context
from dashboard.history_params import GROUPINGS, PRESETS, ParamError, query_string, usage_query
from dashboard.render import render
from vigil import csvcell
from vigil.access import Principal, Role, require
from vigil.kernel import ServiceContext
from vigil.store import StoreQueryError
from vigil.store import usage as u
from vigil.store.plan import QueryRejected
from vigil.store.schema import SchemaContext

router = APIRouter()
viewer = require(Role.VIEWER)
TOO_MANY_ROWS = "the answer has more than"  # how run_limited words a read the store cut


@contextmanager
def _answering() -> Iterator[None]:
    """The one mapping of this module's errors: bad parameters 400, a store that failed 503."""
    try:
        yield
    except ParamError as exc:
        raise HTTPException(400, str(exc)) from None
    except QueryRejected as exc:
        raise HTTPException(400, str(exc)) from None
    except StoreQueryError as exc:
        raise HTTPException(400 if str(exc).startswith(TOO_MANY_ROWS) else 503, str(exc)) from None


class Asked:
    """One request's question, planned once: every answer below uses its source and step."""

    def __init__(self, request: Request, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.now = ctx.clock() / 1e9
        self.schema = SchemaContext.from_settings(ctx.settings)
        query = usage_query(request.query_params, int(self.now))
        plan = u.plan(query, ctx=self.schema, now=self.now)
        self.query = replace(query, step=plan.step, source=plan.source)
        self.order = request.query_params.get("order", "idle")
        self.measure = request.query_params.get("measure", "avg")

    def kw(self) -> dict[str, Any]:
        return {"ctx": self.schema, "now": self.now}

    def series(self) -> u.UsageResult:
        if self.measure not in ("avg", *u.MEASURES):
            raise ParamError(f"measure: one of avg, {', '.join(u.MEASURES)}; got {self.measure!r}")
        return u.series(self.ctx.store, self.query, cast(u.Measure, self.measure), **self.kw())

    def hours(self) -> list[u.GroupHours]:
        return u.gpu_hours(self.ctx.store, self.query, **self.kw())

    def simulated(self) -> bool:
        return u.simulated(self.ctx.store, self.query, **self.kw())

    def top(self, order: str | None = None) -> list[u.GpuUsage]:
        order = order or self.order
        if order not in ("idle", "hot"):
            raise ParamError(f"order: idle or hot, got {order!r}")
        return u.top_gpus(self.ctx.store, self.query, cast(u.Order, order), **self.kw())

    @property
    def meta(self) -> dict[str, Any]:
        assert self.query.source is not None
        return {"step": self.query.step, "source": self.query.source.value}


async def asked(request: Request, ctx: ServiceContext = Depends(service_context)) -> Asked:  # noqa: B008
    # on the event loop: parsing and planning read nothing, and a plain function would cost a threadpool hop
    with _answering():
        return Asked(request, ctx)


def _series_json(result: u.UsageResult) -> dict[str, Any]:
    # the (time, value) tuples as they are: JSON writes a tuple as an array, and copying them into lists
    # cost a 720-point, 4-group answer a fifth of a millisecond
    return {
        "series": [{"labels": s.labels, "points": s.points} for s in result.series],
        "step": result.step,
        "source": result.source.value,
    }


def _hours_row(h: u.GroupHours) -> dict[str, Any]:
    return {**asdict(h), "utilization": h.utilization}


@router.get("/api/v1/utilization", summary="Average GPU utilization (%) per group per bucket")
def utilization(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> JSONResponse:  # noqa: B008
    with _answering():
        return JSONResponse(_series_json(a.series()))


@router.get("/api/v1/utilization/gpu-hours", summary="Allocated, busy and idle GPU-hours per group")
def gpu_hours(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> JSONResponse:  # noqa: B008
    with _answering():
        groups = [_hours_row(h) for h in a.hours()]
    return JSONResponse({"groups": groups, "idle_threshold": a.query.idle_threshold, **a.meta})


@router.get("/api/v1/utilization/top", summary="The N idlest (order=idle) or hottest (order=hot) GPUs")
def top(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> JSONResponse:  # noqa: B008
    with _answering():
        gpus = [asdict(g) for g in a.top()]
    return JSONResponse({"gpus": gpus, "order": a.order, **a.meta})


# Downloads: one table each, with the columns the page shows. A label is one column named after the
# grouping attribute, so a grouping called like a fixed column would clash: those get a `group_` prefix.
HOURS_COLUMNS = ("allocated_h", "busy_h", "idle_h", "gpus", "utilization")
SERIES_COLUMNS = ("time", "value")


def _group_column(group_by: str, fixed: Sequence[str]) -> str:
    return f"group_{group_by}" if group_by in fixed else group_by


def _hours_table(a: Asked) -> tuple[list[str], list[list[Any]]]:
    names = [_group_column(a.query.group_by, HOURS_COLUMNS), *HOURS_COLUMNS]
    rows = [[h.labels[a.query.group_by], *(_hours_row(h)[c] for c in HOURS_COLUMNS)] for h in a.hours()]
    return names, rows


def _series_table(a: Asked) -> tuple[list[str], list[list[Any]]]:
    names = [_group_column(a.query.group_by, SERIES_COLUMNS), *SERIES_COLUMNS]
    rows = [[s.labels[a.query.group_by], t, v] for s in a.series().series for t, v in s.points]
    return names, rows


def _download(kind: str, fmt: str, table: Callable[[Asked], tuple[list[str], list[list[Any]]]], a: Asked) -> Response:
    with _answering():
        names, rows = table(a)
    filename = f"vigil-{kind}-{a.query.group_by}-{a.query.start}-{a.query.end}.{fmt}"
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in filename)
    headers = {"Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store"}
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(csvcell.row(names))
        writer.writerows(csvcell.row(r) for r in rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrow = pa.table({name: list(col) for name, col in zip(names, columns, strict=True)})
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return Response(buf.getvalue(), media_type="application/vnd.apache.parquet", headers=headers)


@router.get("/api/v1/utilization/gpu-hours.csv", summary="GPU-hours per group as CSV")
def gpu_hours_csv(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> Response:  # noqa: B008
    return _download("gpu-hours", "csv", _hours_table, a)


@router.get("/api/v1/utilization/gpu-hours.parquet", summary="GPU-hours per group as Parquet")
def gpu_hours_parquet(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> Response:  # noqa: B008
    return _download("gpu-hours", "parquet", _hours_table, a)


@router.get("/api/v1/utilization.csv", summary="The utilization series as CSV (one row per group and bucket)")
def utilization_csv(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> Response:  # noqa: B008
    return _download("utilization", "csv", _series_table, a)


@router.get("/api/v1/utilization.parquet", summary="The utilization series as Parquet")
def utilization_parquet(who: Principal = Depends(viewer), a: Asked = Depends(asked)) -> Response:  # noqa: B008
    return _download("utilization", "parquet", _series_table, a)


@router.get("/history", response_class=HTMLResponse, include_in_schema=False)
def history_page(
    request: Request,
    who: Principal = Depends(require(Role.VIEWER, page=True)),  # noqa: B008
    ctx: ServiceContext = Depends(service_context),  # noqa: B008
) -> HTMLResponse:
    try:
        a = Asked(request, ctx)
        qs = query_string(a.query)
        hours, idle, hot, simulated = a.hours(), a.top("idle"), a.top("hot"), a.simulated()
    except (ParamError, QueryRejected, StoreQueryError) as exc:
        return render(request, "history.html", status=400, error=str(exc), **_form(request))
    return render(
        request,
        "history.html",
        error="",
        qs=qs,
        query=a.query,
        hours=hours,
        idle=idle,
        hot=hot,
        simulated=simulated,  # the banner: some of these GPUs are Vigil's simulation, not hardware
        **a.meta,
        **_form(request),
    )


def _form(request: Request) -> dict[str, Any]:
    """What the form shows: the visitor's own choices, echoed (escaped by the template)."""
    params = request.query_params
    return {
        "presets": PRESETS,
        "groupings": GROUPINGS,
        "chosen": {k: params.get(k, "") for k in ("range", "start", "end", "group_by", "idle_threshold", "n")},
        "filters": [f for f in params.getlist("filter") if f.strip()],
    }
