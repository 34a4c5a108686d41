"""Property test of the converter: protobuf and OTLP/JSON bodies, well-formed or not.

From the body to Arrow, only an IngestError may escape; every point is accepted or refused with
a reason; every accepted point fits its Arrow column. (The store round trip is in
tests/integration/test_convert_fuzz.py.)
"""

from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import decode
from collector.arrow import to_arrow
from collector.convert import Converter, Limits
from collector.errors import IngestError
from tests.otlp_strategies import NOW, requests

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ingest_path(body: bytes, media: str) -> None:
    try:
        request = decode.parse(body, media)
    except IngestError:
        return
    out = Converter(Limits()).convert(request, NOW)
    assert out.received == out.accepted + sum(out.rejected.values())
    for cols in out.tables.values():
        assert to_arrow(cols).num_rows == cols.rows


@FUZZ
@given(requests())
def test_any_protobuf_request_converts_or_is_refused_with_a_reason(request) -> None:
    ingest_path(request.SerializeToString(), decode.PROTOBUF)


@FUZZ
@given(requests())
def test_any_json_request_converts_or_is_refused_with_a_reason(request) -> None:
    ingest_path(json_format.MessageToJson(request).encode(), decode.JSON)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([decode.PROTOBUF, decode.JSON]))
def test_raw_bytes_never_raise_anything_but_an_ingest_error(body: bytes, media: str) -> None:
    ingest_path(body, media)
