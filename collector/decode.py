"""Request bodies to `ExportMetricsServiceRequest`: content encoding, size limits, protobuf and JSON."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def media_type(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    raise UnsupportedMediaType(f"Content-Type {content_type or '(none)'!r} is not supported; send {PROTOBUF} or {JSON}")


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo `Content-Encoding`, refusing to inflate past `max_bytes` (a zip bomb stops early).

    A gzip body may hold several members one after another (RFC 1952); all are inflated.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    out = bytearray()
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise MalformedPayload(f"body is not valid {encoding}: {exc}") from None
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body exceeds the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise MalformedPayload(f"body is truncated {encoding} data")
        rest = inflater.unused_data
        if encoding != "gzip" or not rest:
            return bytes(out)


def _hex_ids_to_base64(doc: Any) -> None:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64."""
    for rm in doc.get("resourceMetrics") or doc.get("resource_metrics") or ():
        for sm in rm.get("scopeMetrics") or rm.get("scope_metrics") or ():
            for metric in sm.get("metrics") or ():
                for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram"):
                    data = metric.get(kind)
                    if not isinstance(data, dict):
                        continue
                    for point in data.get("dataPoints") or data.get("data_points") or ():
                        for exemplar in point.get("exemplars") or ():
                            for key in ("traceId", "spanId", "trace_id", "span_id"):
                                value = exemplar.get(key)
                                if isinstance(value, str) and value:
                                    try:
                                        exemplar[key] = base64.b64encode(bytes.fromhex(value)).decode()
                                    except ValueError:
                                        raise MalformedPayload(f"exemplar {key} {value!r} is not hex") from None


def parse(body: bytes, media: str) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise MalformedPayload(f"body is not a valid OTLP ExportMetricsServiceRequest: {exc}") from None
        return request
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload("OTLP/JSON body must be an object with resourceMetrics")
    try:
        _hex_ids_to_base64(doc)
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, AttributeError, TypeError, binascii.Error) as exc:
        raise MalformedPayload(f"body is not a valid OTLP/JSON ExportMetricsServiceRequest: {exc}") from None
    return request
