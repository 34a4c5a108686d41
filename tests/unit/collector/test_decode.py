import gzip
import json
import zlib

import pytest

from collector import decode
from collector.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType
from tests.otlp import gauge_request


def test_media_types() -> None:
    assert decode.media_type("application/x-protobuf") == decode.PROTOBUF
    assert decode.media_type("application/json; charset=utf-8") == decode.JSON
    with pytest.raises(UnsupportedMediaType, match="text/plain"):
        decode.media_type("text/plain")
    with pytest.raises(UnsupportedMediaType):
        decode.media_type(None)


def test_gzip_and_deflate_round_trip() -> None:
    body = gauge_request(3)
    assert decode.decompress(gzip.compress(body), "gzip", 1 << 20) == body
    assert decode.decompress(zlib.compress(body), "deflate", 1 << 20) == body
    assert decode.decompress(body, None, 1 << 20) == body


def test_every_member_of_a_multi_member_gzip_body_is_inflated() -> None:
    assert decode.decompress(gzip.compress(b"first ") + gzip.compress(b"second"), "gzip", 1 << 20) == b"first second"
    with pytest.raises(PayloadTooLarge):
        decode.decompress(gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600), "gzip", 1000)


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (50 << 20))
    with pytest.raises(PayloadTooLarge, match="decompressed"):
        decode.decompress(bomb, "gzip", 1 << 20)


def test_bad_or_truncated_gzip_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="gzip"):
        decode.decompress(b"not gzip", "gzip", 1 << 20)
    with pytest.raises(MalformedPayload, match="truncated"):
        decode.decompress(gzip.compress(b"x" * 1000)[:-12], "gzip", 1 << 20)
    with pytest.raises(UnsupportedMediaType, match="br"):
        decode.decompress(b"", "br", 1 << 20)


def test_protobuf_garbage_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="ExportMetricsServiceRequest"):
        decode.parse(b"\xff\xff\xff\xff", decode.PROTOBUF)


def test_json_with_hex_exemplar_ids_and_unknown_fields() -> None:
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "futureField": 1,
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "m",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": "1700000000000000000",
                                            "asInt": "7",
                                            "exemplars": [
                                                {
                                                    "asDouble": 1.5,
                                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                                    "spanId": "eee19b7ec3c1b174",
                                                }
                                            ],
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    req = decode.parse(json.dumps(doc).encode(), decode.JSON)
    dp = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert dp.as_int == 7
    assert dp.exemplars[0].trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert dp.exemplars[0].span_id.hex() == "eee19b7ec3c1b174"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1,2]",
        b'{"resourceMetrics": "nope"}',
        b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"exemplars":[{"traceId":"zz"}]}]}}]}]}]}',
    ],
)
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        decode.parse(body, decode.JSON)


def test_many_gzip_members_cost_linear_work() -> None:
    """The landed decoder copied the rest of the body at every member: O(members x body)."""
    costs = []
    for members in (1_000, 8_000):
        body = gzip.compress(b"") * members
        work = decode.InflateWork()
        assert decode.decompress(body, "gzip", 1 << 20, max_members=members, work=work) == b""
        assert work.members == members
        assert work.calls <= 2 * members
        assert work.bytes_in <= 3 * len(body) + decode.FIRST_CHUNK * members
        costs.append(work.bytes_in / len(body))
    assert costs[1] <= costs[0] * 1.1  # bytes handed to zlib per body byte do not grow with the body


def test_one_large_member_is_fed_in_bounded_chunks() -> None:
    raw = bytes(range(256)) * 40_000  # 10 MB that compresses poorly enough to need many chunks
    body = gzip.compress(raw, compresslevel=1)
    work = decode.InflateWork()
    assert decode.decompress(body, "gzip", 16 << 20, work=work) == raw
    assert work.bytes_in <= 2 * len(body) + decode.MAX_CHUNK
    assert work.calls <= len(body) // decode.MAX_CHUNK + 16


def test_gzip_members_past_the_cap_are_refused() -> None:
    body = gzip.compress(b"") * 100_000
    work = decode.InflateWork()
    with pytest.raises(PayloadTooLarge, match="more than 64 members"):
        decode.decompress(body, "gzip", 16 << 20, work=work)
    assert work.members == 65 and work.calls <= 65
    assert decode.decompress(gzip.compress(b"a") * 3, "gzip", 1 << 20, max_members=3) == b"aaa"


def test_garbage_after_a_gzip_member_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="gzip"):
        decode.decompress(gzip.compress(b"ok") + b"\x00junk", "gzip", 1 << 20)


@pytest.mark.parametrize("tail", [b"junk", zlib.compress(b"second stream")])
def test_bytes_after_a_deflate_stream_are_malformed_not_dropped(tail: bytes) -> None:
    # zlib ends at the first stream; accepting the rest would answer 200 for data never read
    with pytest.raises(MalformedPayload, match="after the end of its deflate stream"):
        decode.decompress(zlib.compress(b"first stream") + tail, "deflate", 1 << 20)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"resourceMetrics": [' * 50_000 + b"]}" * 50_000, "nested too deeply"),
        (b'{"resourceMetrics": ' + b"1" * 100_001 + b"}", "digits"),
        (
            b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":'
            b'[{"asInt":"' + b"9" * 100_001 + b'"}]}}]}]}]}',
            "ExportMetricsServiceRequest",
        ),
    ],
)
def test_json_too_deep_or_too_long_a_number_is_malformed(body: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        decode.parse(body, decode.JSON)
