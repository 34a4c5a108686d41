"""Request bodies to `ExportMetricsServiceRequest`: content encoding, size limits, protobuf and JSON."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
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


# The inflater is fed at most this much input per call. A new member starts with a small
# chunk that doubles while the member goes on: what zlib copies into `unused_data` at a
# member's end is then at most twice what that member consumed, so the work stays linear
# in the body however many members it holds.
FIRST_CHUNK = 64
MAX_CHUNK = 64 * 1024
MAX_MEMBERS = 64


@dataclass
class InflateWork:
    """What one decompression cost: zlib calls, bytes handed to zlib, bytes produced."""

    calls: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    members: int = 0


def decompress(
    body: bytes,
    content_encoding: str | None,
    max_bytes: int,
    max_members: int = MAX_MEMBERS,
    work: InflateWork | None = None,
) -> bytes:
    """Undo `Content-Encoding`, refusing to inflate past `max_bytes` (a zip bomb stops early).

    A gzip body may hold several members one after another (RFC 1952); up to `max_members`
    are inflated. The work is linear in `len(body) + max_bytes`: input is fed from a
    memoryview in bounded chunks, so leftovers are never copied wholesale.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    work = work if work is not None else InflateWork()
    view = memoryview(body)
    out = bytearray()
    pos = 0
    while True:
        work.members += 1
        if work.members > max_members:
            raise PayloadTooLarge(f"gzip body has more than {max_members} members; send one gzip stream")
        pos = _inflate_member(view, pos, wbits, encoding, out, max_bytes, work)
        if pos >= len(view):
            return bytes(out)
        if encoding != "gzip":
            # zlib stops at the end of the first stream: what follows would be dropped unread
            # while the request is answered 200, so a second stream or trailing bytes are refused.
            raise MalformedPayload(f"body has {len(view) - pos} bytes after the end of its deflate stream")


def _inflate_member(
    view: memoryview, pos: int, wbits: int, encoding: str, out: bytearray, max_bytes: int, work: InflateWork
) -> int:
    """Inflate the member starting at `view[pos]` into `out`; return where the next one starts."""
    inflater = zlib.decompressobj(wbits)
    chunk_size = FIRST_CHUNK
    while not inflater.eof:
        if pos >= len(view):
            raise MalformedPayload(f"body is truncated {encoding} data")
        chunk = view[pos : pos + chunk_size]
        room = max_bytes + 1 - len(out)
        try:
            data = inflater.decompress(chunk, room)
        except zlib.error as exc:
            raise MalformedPayload(f"body is not valid {encoding}: {exc}") from None
        work.calls += 1
        work.bytes_in += len(chunk)
        work.bytes_out += len(data)
        out += data
        if len(out) > max_bytes:
            raise PayloadTooLarge(f"decompressed body exceeds the limit of {max_bytes} bytes")
        consumed = len(chunk) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
        if not consumed and not data and not inflater.eof:
            raise MalformedPayload(f"body is not valid {encoding}: the inflater made no progress")
        pos += consumed
        chunk_size = min(chunk_size * 2, MAX_CHUNK)
    return pos


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


def _short(exc: Exception, limit: int = 300) -> str:
    """An error's text, cut: some quote the offending input, which may be megabytes long."""
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


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
    except RecursionError:
        raise MalformedPayload("body is not valid OTLP/JSON: it is nested too deeply") from None
    except ValueError as exc:  # also JSONDecodeError, UnicodeDecodeError and a number past int's digit limit
        raise MalformedPayload(f"body is not valid JSON: {_short(exc)}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload("OTLP/JSON body must be an object with resourceMetrics")
    try:
        _hex_ids_to_base64(doc)
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except RecursionError:
        raise MalformedPayload("body is not valid OTLP/JSON: it is nested too deeply") from None
    except (json_format.ParseError, AttributeError, TypeError, ValueError, binascii.Error) as exc:
        raise MalformedPayload(f"body is not a valid OTLP/JSON ExportMetricsServiceRequest: {_short(exc)}") from None
    return request
