"""`POST /v1/metrics`: OTLP/HTTP per the spec, answering only once the rows are durable."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from starlette.concurrency import run_in_threadpool

from collector import decode
from collector.errors import IngestError, PayloadTooLarge, UnsupportedMediaType
from collector.service import Collector

# google.rpc.Code values for the Status body of an error answer.
_RPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 422: 3, 429: 8, 503: 14}


def get_collector(request: Request) -> Collector:
    return request.app.state.collector


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


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


router = APIRouter()


@router.post("/v1/metrics", summary="OTLP/HTTP metrics export (protobuf or JSON, gzip allowed)")
async def export_metrics(request: Request, collector: Collector = Depends(get_collector)) -> Response:  # noqa: B008
    content_type = request.headers.get("content-type")
    try:
        token_scope = collector.tokens.check(request.headers.get("authorization"))
        body = await read_body(request, collector.settings.max_body_bytes)
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
    except IngestError as error:
        collector.metrics.requests.labels(str(error.status)).inc()
        return error_response(error, content_type)
    answer = ExportMetricsServiceResponse()
    rejected = sum(conversion.rejected.values())
    if rejected:
        answer.partial_success.rejected_data_points = rejected
        answer.partial_success.error_message = conversion.rejection_message()
    collector.metrics.requests.labels("200").inc()
    media = decode.media_type(content_type)
    if media == decode.PROTOBUF:
        return Response(answer.SerializeToString(), media_type=media)
    return Response(json_format.MessageToJson(answer, indent=None), media_type=media)
