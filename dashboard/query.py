"""`POST /api/v1/query` (read-only SQL on the metrics store) and `GET /api/v1/reports/{name}`.

Both answer `{"columns": [...], "rows": [[...], ...]}`, which `vigil query` prints as a table, JSON or
CSV. The store enforces read-only (`readonly=1` on the reader's session) and the limits on rows, bytes
and time (`VIGIL_QUERY_*`); this module bounds the request body, and the answer's encoded size, which
the store checks only between blocks. Errors become HTTP statuses in `_answering` and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dashboard.context import service_context
from vigil.access import Principal, Role, require
from vigil.kernel import ServiceContext
from vigil.reports import REPORTS, ReportAsk, run_report
from vigil.store import QueryRefused, QueryResult, QueryTimedOut, QueryTooLarge, ReadLimits, StoreQueryError
from vigil.store.plan import QueryRejected
from vigil.store.schema import SchemaContext

router = APIRouter()
MAX_BODY_BYTES = 256 * 1024  # SQL and its parameters; an answer has its own limit
MAX_PARAMS = 256
Scalar = str | int | float | bool | None


class BadRequest(Exception):
    """The request itself is malformed; the message names the field."""


class TooLarge(Exception):
    """The request body or the encoded answer passed its limit."""


@contextmanager
def _answering() -> Iterator[None]:
    """The one mapping from this module's errors to HTTP statuses."""
    try:
        yield
    except (BadRequest, QueryRejected) as exc:
        raise HTTPException(400, str(exc)) from None
    except QueryRefused as exc:
        raise HTTPException(403, str(exc)) from None
    except (QueryTooLarge, TooLarge) as exc:
        raise HTTPException(413, str(exc)) from None
    except QueryTimedOut as exc:
        raise HTTPException(400, str(exc)) from None
    except StoreQueryError as exc:  # the engine refused the SQL: the caller's to fix
        raise HTTPException(400, f"the store refused the query: {exc}") from None


def limits(ctx: ServiceContext) -> ReadLimits:
    s = ctx.settings
    return ReadLimits(max_rows=s.query_max_rows, max_bytes=s.query_max_bytes, timeout_s=s.query_timeout_s)


async def _body(request: Request) -> dict[str, Any]:
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY_BYTES:
        raise TooLarge(f"the request body is {size} bytes; at most {MAX_BODY_BYTES}")
    chunks, total = [], 0
    async for chunk in request.stream():  # a chunked body without a length is counted as it comes
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise TooLarge(f"the request body passed {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest('the body is a JSON object: {"sql": "...", "params": {...}}')
    return body


def parse_query(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The SQL and its parameters from a request body; a BadRequest names the field that is wrong."""
    unknown = sorted(set(body) - {"sql", "params", "format"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}: expected sql, params, format")
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise BadRequest("sql: a non-empty string")
    if body.get("format", "json") != "json":
        raise BadRequest(f"format: only json, got {body.get('format')!r}")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest('params: an object of name to value, e.g. {"team": "ml"}, bound as {team:String}')
    if len(params) > MAX_PARAMS:
        raise BadRequest(f"params: at most {MAX_PARAMS}, got {len(params)}")
    for name, value in params.items():
        if not _bindable(value):
            raise BadRequest(f"params.{name}: a string, number, boolean, null or a list of those")
    return sql, params


def _bindable(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, Scalar) for v in value)
    return isinstance(value, Scalar)


def _jsonable(value: Any) -> Any:
    """What the engine answers that JSON has no type for: times as ISO text, decimals and UUIDs as text."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, (decimal.Decimal, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def encode(result: QueryResult, max_bytes: int, **extra: Any) -> Response:
    """The answer as JSON; past `max_bytes` encoded it is refused (413) rather than sent."""
    rows = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in r] for r in result.result_rows]
    body = json.dumps(
        {"columns": list(result.column_names), "rows": rows, **extra}, default=_jsonable, allow_nan=False
    ).encode()
    if len(body) > max_bytes:
        raise TooLarge(
            f"the answer is {len(body)} bytes encoded, past the limit of {max_bytes} (VIGIL_QUERY_MAX_BYTES): "
            "aggregate, select fewer columns or add a LIMIT"
        )
    return Response(body, media_type="application/json")


@router.post("/api/v1/query", summary="Run one read-only SQL statement on the metrics store")
async def query(
    request: Request,
    who: Principal = Depends(require(Role.VIEWER)),  # noqa: B008
    ctx: ServiceContext = Depends(service_context),  # noqa: B008
) -> Response:
    with _answering():
        sql, params = parse_query(await _body(request))
        read = limits(ctx)
        result = await run_in_threadpool(ctx.store.query_readonly, sql, params, read)
        return encode(result, read.max_bytes)


@router.get("/api/v1/reports/{name}", summary="A named report: gpu-hours, idle or top-idle, as columns and rows")
async def report(
    name: str,
    request: Request,
    who: Principal = Depends(require(Role.VIEWER)),  # noqa: B008
    ctx: ServiceContext = Depends(service_context),  # noqa: B008
) -> Response:
    with _answering():
        if name not in REPORTS:
            raise HTTPException(404, f"no report {name!r}; reports: {', '.join(REPORTS)}")
        now = ctx.clock() / 1e9
        ask = report_ask(name, request.query_params, now)
        schema = SchemaContext.from_settings(ctx.settings)
        result = await run_in_threadpool(run_report, ctx.store, ask, schema, now)
        return encode(result, limits(ctx).max_bytes, report=name, start=ask.start, end=ask.end, group_by=ask.group_by)


def report_ask(name: str, params: Any, now: float) -> ReportAsk:
    """A report's question from its query string: `start`/`end` (unix seconds) or `days`, `group_by`,
    `step`, `idle_threshold`, `n`, and `filter=k=v` (repeatable)."""
    known = {"start", "end", "days", "group_by", "step", "idle_threshold", "n", "filter"}
    unknown = sorted(set(params.keys()) - known)
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}: expected {', '.join(sorted(known))}")
    filters: dict[str, str] = {}
    for item in params.getlist("filter"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"filter {item!r}: expected KEY=VALUE")
        filters[key] = value
    kw: dict[str, Any] = {
        "group_by": params.get("group_by", "team"),
        "step": _number(params, "step", int, 3600),
        "idle_threshold": _number(params, "idle_threshold", float, 5.0),
        "top": _number(params, "n", int, 10),
        "filters": filters,
    }
    if "start" in params or "end" in params:
        end = _number(params, "end", int, int(now))
        start = _number(params, "start", int, end - 30 * 86_400)
        return ReportAsk(name, start, end, **kw)
    return ReportAsk.last_days(name, _number(params, "days", float, 30.0), now, **kw)


def _number(params: Any, name: str, kind: type, default: Any) -> Any:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected a {'whole ' if kind is int else ''}number, got {raw!r}") from None
