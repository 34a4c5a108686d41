"""`POST /v1/metrics`: OTLP/HTTP per the spec, answering only once the rows are durable."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from collector import decode
from collector.convert import Conversion
from collector.errors import (
    IngestError,
    InternalError,
    PayloadTooLarge,
    RequestTimeout,
    StoreUnavailable,
    UnsupportedMediaType,
)
from collector.service import Collector
from vigil import lifecycle
from vigil.providers import provided, unbound

log = logging.getLogger(__name__)

# google.rpc.Code values for the Status body of an error answer.
_RPC_CODE = {400: 3, 401: 16, 408: 4, 413: 8, 415: 3, 422: 3, 429: 8, 500: 13, 503: 14}
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection before the answer"


async def get_collector(request: Request) -> Collector:
    """A placeholder: `CollectorService` binds the real one (`vigil.providers`)."""
    return await provided(
        request,
        get_collector,
        unbound("no Collector bound: mount this router through collector.plugin.CollectorService"),
    )


def _answer_media(content_type: str | None) -> str:
    try:
        return decode.media_type(content_type)
    except UnsupportedMediaType:
        return decode.JSON


def error_response(error: IngestError, content_type: str | None) -> Response:
    """An OTLP error answer: a google.rpc.Status in the request's encoding, plus Retry-After."""
    media = _answer_media(content_type)
    status = status_pb2.Status(code=_RPC_CODE.get(error.status, 2), message=str(error))
    if media == decode.PROTOBUF:
        body = status.SerializeToString()
    else:
        body = json_format.MessageToJson(status, indent=None).encode()
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return Response(body, status_code=error.status, media_type=media, headers=headers)


async def _read_stream(request: Request, limit: int) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body within `timeout_s`, or a typed refusal: 413 past `limit`, 408 when too slow,
    503 when the server starts shutting down first (the client retries elsewhere or later)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    stopping = lifecycle.shutting_down(request.scope)
    reading = asyncio.ensure_future(_read_stream(request, limit))
    waits: set[asyncio.Future[object]] = {reading}
    stop_wait = asyncio.ensure_future(stopping.wait()) if stopping is not None else None
    if stop_wait is not None:
        waits.add(stop_wait)
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    if reading.done() and not reading.cancelled():
        return reading.result()
    await asyncio.gather(reading, return_exceptions=True)  # let the reader finish cancelling
    if stopping is not None and stopping.is_set():
        raise StoreUnavailable("the server is shutting down; retry against another instance or later")
    raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s; send it faster or in smaller requests")


def _count(collector: Collector, code: int | str) -> None:
    collector.metrics.requests.labels(str(code)).inc()


router = APIRouter()


@router.post("/v1/metrics", summary="OTLP/HTTP metrics export (protobuf or JSON, gzip allowed)")
async def export_metrics(request: Request, collector: Collector = Depends(get_collector)) -> Response:  # noqa: B008
    content_type = request.headers.get("content-type")
    try:
        conversion = await _export(request, collector, content_type)
    except IngestError as error:
        _count(collector, error.status)
        return error_response(error, content_type)
    except ClientDisconnect:
        _count(collector, CLIENT_CLOSED)  # nobody is left to answer
        return Response(status_code=CLIENT_CLOSED)
    except asyncio.CancelledError:
        stopping = lifecycle.shutting_down(request.scope)
        if stopping is None or not stopping.is_set():
            raise
        # the drain's deadline passed while this request waited: it was not acknowledged, say so
        error = StoreUnavailable("the server is shutting down; retry against another instance or later")
        _count(collector, error.status)
        return error_response(error, content_type)
    except Exception as exc:  # one request's surprise must still get an answer, and be counted
        log.error("ingest_failed", exc_info=exc, extra={"fields": {"error": type(exc).__name__}})
        error = InternalError(f"internal error while handling the request ({type(exc).__name__}); retry later")
        _count(collector, error.status)
        return error_response(error, content_type)
    answer = ExportMetricsServiceResponse()
    rejected = sum(conversion.rejected.values())
    if rejected:
        answer.partial_success.rejected_data_points = rejected
        answer.partial_success.error_message = conversion.rejection_message()
    _count(collector, 200)
    media = decode.media_type(content_type)
    if media == decode.PROTOBUF:
        return Response(answer.SerializeToString(), media_type=media)
    return Response(json_format.MessageToJson(answer, indent=None), media_type=media)


async def _export(request: Request, collector: Collector, content_type: str | None) -> Conversion:
    token_scope = collector.tokens.check(request.headers.get("authorization"))
    body = await read_body(request, collector.settings.max_body_bytes, collector.settings.body_timeout_s)
    conversion, future = await run_in_threadpool(
        collector.ingest,
        body,
        content_type,
        request.headers.get("content-encoding"),
        request.headers.get("idempotency-key"),
        token_scope,
    )
    if future is not None:
        # shield: a cancelled handler must not cancel the future other retries of this key share
        await asyncio.shield(asyncio.wrap_future(future))
    return conversion
