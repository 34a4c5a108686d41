"""Every value that reaches a typed column is checked, and every string and list is limited."""

import pyarrow as pa
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector import convert as cv
from collector.arrow import to_arrow
from collector.convert import Converter, Limits
from tests.otlp import gauge, request_with, set_attrs

NOW = 1_800_000_000 * 10**9


def convert(req, limits: Limits | None = None) -> cv.Conversion:
    out = Converter(limits or Limits()).convert(req, NOW)
    assert out.received == out.accepted + sum(out.rejected.values())
    for cols in out.tables.values():
        to_arrow(cols)  # whatever was accepted fits its Arrow column
    return out


def one_gauge(**point: object) -> metrics_pb2.Metric:
    m = gauge("g", [(1.0, {})], ts=NOW)
    for name, value in point.items():
        setattr(m.gauge.data_points[0], name, value)
    return m


def test_a_start_time_past_int64_nanoseconds_is_refused_not_sent_to_arrow() -> None:
    out = convert(request_with([one_gauge(start_time_unix_nano=2**64 - 1), gauge("ok", [(2.0, {})], ts=NOW)]))
    assert out.rejected == {cv.TIMESTAMP: 1} and out.accepted == 1


@pytest.mark.parametrize(
    ("exemplar", "reason"),
    [
        ({"time_unix_nano": 2**64 - 1, "as_double": 1.0}, cv.TIMESTAMP),
        ({"time_unix_nano": NOW, "as_double": float("nan")}, cv.NON_FINITE),
        ({"time_unix_nano": NOW, "as_double": float("inf")}, cv.NON_FINITE),
        ({"time_unix_nano": NOW, "as_double": 1.0, "span_id": b"\x01" * 7}, cv.MALFORMED_POINT),
        ({"time_unix_nano": NOW, "as_double": 1.0, "trace_id": b"\x01" * 17}, cv.MALFORMED_POINT),
    ],
)
def test_a_bad_exemplar_refuses_its_point_with_a_reason(exemplar: dict, reason: str) -> None:
    m = gauge("g", [(1.0, {})], ts=NOW)
    m.gauge.data_points[0].exemplars.add(**exemplar)
    assert convert(request_with([m])).rejected == {reason: 1}


def test_exemplars_are_limited_in_number_and_attributes() -> None:
    m = gauge("g", [(1.0, {}), (2.0, {"i": "1"})], ts=NOW)
    for _ in range(3):
        m.gauge.data_points[0].exemplars.add(time_unix_nano=NOW, as_double=1.0)
    ex = m.gauge.data_points[1].exemplars.add(time_unix_nano=NOW, as_double=1.0)
    set_attrs(ex.filtered_attributes, {"user": "x" * 50})
    out = convert(request_with([m]), Limits(max_exemplars=2, max_value_length=10))
    assert out.rejected == {cv.EXEMPLAR_LIMIT: 2}


@pytest.mark.parametrize(
    ("field", "limit"),
    [("name", "max_name_length"), ("description", "max_description_length"), ("unit", "max_unit_length")],
)
def test_metric_strings_past_their_limit_refuse_the_metric(field: str, limit: str) -> None:
    m = gauge("g", [(1.0, {}), (2.0, {"i": "1"})], ts=NOW)
    setattr(m, field, "n" * 11)
    out = convert(request_with([m]), Limits(**{limit: 10}))
    assert out.rejected == {cv.FIELD_LIMIT: 2} and out.accepted == 0


def test_scope_and_schema_strings_are_limited() -> None:
    req = request_with([gauge("g", [(1.0, {})], ts=NOW)], scope="s" * 20)
    assert convert(req, Limits(max_scope_field_length=10)).rejected == {cv.FIELD_LIMIT: 1}
    req = request_with([gauge("g", [(1.0, {})], ts=NOW)])
    req.resource_metrics[0].schema_url = "u" * 20
    assert convert(req, Limits(max_scope_field_length=10)).rejected == {cv.FIELD_LIMIT: 1}


def test_the_default_name_limit_is_opentelemetrys_255() -> None:
    assert convert(request_with([gauge("n" * 256, [(1.0, {})], ts=NOW)])).rejected == {cv.FIELD_LIMIT: 1}
    assert convert(request_with([gauge("n" * 255, [(1.0, {})], ts=NOW)])).accepted == 1


def test_histogram_buckets_exp_buckets_and_quantiles_are_limited() -> None:
    h = metrics_pb2.Metric(name="h")
    h.histogram.data_points.add(
        time_unix_nano=NOW, count=5, bucket_counts=[1] * 5, explicit_bounds=[1.0, 2.0, 3.0, 4.0]
    )
    e = metrics_pb2.Metric(name="e")
    ep = e.exponential_histogram.data_points.add(time_unix_nano=NOW, count=5)
    ep.negative.bucket_counts.extend([1] * 5)
    q = metrics_pb2.Metric(name="q")
    qp = q.summary.data_points.add(time_unix_nano=NOW, count=1, sum=1.0)
    for i in range(5):
        qp.quantile_values.add(quantile=i / 10, value=1.0)
    out = convert(request_with([h, e, q]), Limits(max_buckets=4, max_quantiles=4))
    assert out.rejected == {cv.BUCKET_LIMIT: 3}
    assert convert(request_with([h, e, q]), Limits(max_buckets=5, max_quantiles=5)).accepted == 3


def test_int64_extremes_that_fit_their_columns_are_accepted() -> None:
    s = metrics_pb2.Metric(name="s")
    s.sum.data_points.add(time_unix_nano=NOW, start_time_unix_nano=2**63 - 1, as_int=-(2**63))
    h = metrics_pb2.Metric(name="h")
    h.histogram.data_points.add(time_unix_nano=NOW, count=2**64 - 1, bucket_counts=[2**64 - 1], sum=1e308)
    out = convert(request_with([s, h]))
    assert out.accepted == 2
    table = to_arrow(out.tables[cv.HISTOGRAM])
    assert table.column("Count").type == pa.uint64() and table.column("Count")[0].as_py() == 2**64 - 1


@pytest.mark.parametrize(
    "bounds",
    [[1.0, float("nan")], [float("inf")], [2.0, 1.0], [1.0, 1.0]],
    ids=["nan", "inf", "decreasing", "repeated"],
)
def test_histogram_bounds_must_be_finite_and_strictly_increasing(bounds: list[float]) -> None:
    h = metrics_pb2.Metric(name="h")
    h.histogram.data_points.add(
        time_unix_nano=NOW, count=0, explicit_bounds=bounds, bucket_counts=[0] * (len(bounds) + 1)
    )
    assert convert(request_with([h])).rejected == {cv.MALFORMED_POINT: 1}


def test_bounds_without_buckets_are_limited_too() -> None:
    h = metrics_pb2.Metric(name="h")
    h.histogram.data_points.add(time_unix_nano=NOW, count=0, explicit_bounds=[float(i) for i in range(10)])
    assert convert(request_with([h]), Limits(max_buckets=5)).rejected == {cv.BUCKET_LIMIT: 1}


def test_an_exponential_histograms_zero_threshold_must_be_finite_and_not_negative() -> None:
    for threshold in (float("nan"), -1.0):
        e = metrics_pb2.Metric(name="e")
        e.exponential_histogram.data_points.add(time_unix_nano=NOW, count=0, zero_threshold=threshold)
        assert convert(request_with([e])).rejected == {cv.MALFORMED_POINT: 1}
