import math
import time

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector import convert as cv
from collector.convert import Converter, Limits, SeriesLimiter, column_names
from tests.otlp import gauge, request_with, set_attrs

NOW = 1_800_000_000 * 10**9


def convert(req, limits: Limits | None = None) -> cv.Conversion:
    return Converter(limits or Limits()).convert(req, NOW)


def test_gauge_columns_keep_resource_scope_and_point_attributes_with_sorted_keys() -> None:
    req = request_with(
        [gauge("gpu.temperature", [(61.0, {"gpu.uuid": "GPU-1", "gpu.index": 0})], ts=NOW)],
        resource={"service.name": "agent", "host.name": "n1", "k8s.cluster.name": "a"},
    )
    req.resource_metrics[0].schema_url = "https://schema/1"
    set_attrs(req.resource_metrics[0].scope_metrics[0].scope.attributes, {"z": 1, "a": True})
    out = convert(req)
    cols = out.tables[cv.GAUGE]
    assert out.received == out.accepted == 1
    assert cols.column("Value") == [61.0]
    assert cols.column("TimeUnix") == [NOW]
    assert cols.column("MetricName") == ["gpu.temperature"]
    assert cols.column("MetricUnit") == ["1"]
    assert cols.column("ServiceName") == ["agent"]
    assert cols.column("ResourceSchemaUrl") == ["https://schema/1"]
    assert cols.column("ScopeName") == ["tests"] and cols.column("ScopeVersion") == ["1.0"]
    assert list(cols.column("Attributes")[0].items()) == [("gpu.index", "0"), ("gpu.uuid", "GPU-1")]
    assert list(cols.column("ResourceAttributes")[0]) == ["host.name", "k8s.cluster.name", "service.name"]
    assert list(cols.column("ScopeAttributes")[0].items()) == [("a", "true"), ("z", "1")]
    assert all(len(cols.column(name)) == 1 for name in cols.names)


def test_every_kind_lands_in_its_table_with_its_columns() -> None:
    s = metrics_pb2.Metric(name="reqs")
    s.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    s.sum.is_monotonic = True
    p = s.sum.data_points.add(time_unix_nano=NOW, start_time_unix_nano=NOW - 10**9, as_int=12)
    ex = p.exemplars.add(time_unix_nano=NOW, as_double=0.5, trace_id=bytes(range(16)), span_id=bytes(range(8)))
    set_attrs(ex.filtered_attributes, {"user": "u1"})

    h = metrics_pb2.Metric(name="lat")
    h.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    h.histogram.data_points.add(
        time_unix_nano=NOW, count=3, sum=3.3, bucket_counts=[1, 2, 0], explicit_bounds=[1.0, 2.0], min=0.1, max=2.0
    )
    e = metrics_pb2.Metric(name="elat")
    ep = e.exponential_histogram.data_points.add(time_unix_nano=NOW, count=5, sum=9.0, scale=2, zero_count=1)
    ep.positive.offset = 3
    ep.positive.bucket_counts.extend([1, 2])
    ep.negative.bucket_counts.extend([1])
    q = metrics_pb2.Metric(name="sq")
    qp = q.summary.data_points.add(time_unix_nano=NOW, count=10, sum=5.0)
    qp.quantile_values.add(quantile=0.5, value=0.4)
    qp.quantile_values.add(quantile=0.99, value=0.9)

    out = convert(request_with([s, h, e, q]))
    assert out.received == out.accepted == 4
    assert set(out.tables) == {cv.SUM, cv.HISTOGRAM, cv.EXP_HISTOGRAM, cv.SUMMARY}
    for table, cols in out.tables.items():
        assert cols.names == column_names(table)
        assert {len(cols.column(name)) for name in cols.names} == {1}, table
    sc = out.tables[cv.SUM]
    assert sc.column("Value") == [12.0] and sc.column("IsMonotonic") == [True]
    assert sc.column("AggregationTemporality") == [2]
    assert sc.column("StartTimeUnix") == [NOW - 10**9]
    assert sc.column("Exemplars.TraceId") == [[bytes(range(16)).hex()]]
    assert sc.column("Exemplars.SpanId") == [[bytes(range(8)).hex()]]
    assert sc.column("Exemplars.Value") == [[0.5]] and sc.column("Exemplars.FilteredAttributes") == [[{"user": "u1"}]]
    hc = out.tables[cv.HISTOGRAM]
    assert hc.column("BucketCounts") == [[1, 2, 0]] and hc.column("ExplicitBounds") == [[1.0, 2.0]]
    assert (hc.column("Count"), hc.column("Sum"), hc.column("Min"), hc.column("Max")) == ([3], [3.3], [0.1], [2.0])
    assert hc.column("AggregationTemporality") == [1]
    xc = out.tables[cv.EXP_HISTOGRAM]
    assert xc.column("Scale") == [2] and xc.column("ZeroCount") == [1] and xc.column("PositiveOffset") == [3]
    assert xc.column("PositiveBucketCounts") == [[1, 2]] and xc.column("NegativeBucketCounts") == [[1]]
    qc = out.tables[cv.SUMMARY]
    assert qc.column("ValueAtQuantiles.Quantile") == [[0.5, 0.99]]
    assert qc.column("ValueAtQuantiles.Value") == [[0.4, 0.9]]


def test_rejections_are_counted_by_reason_and_the_rest_kept() -> None:
    hour = 3600 * 10**9
    m = gauge("g", [(1.0, {"i": "ok"})], ts=NOW)
    m.gauge.data_points.add(time_unix_nano=NOW - 400 * hour, as_double=1.0)  # too old
    m.gauge.data_points.add(time_unix_nano=NOW + hour, as_double=1.0)  # too far ahead
    m.gauge.data_points.add(time_unix_nano=0, as_double=1.0)  # no timestamp
    m.gauge.data_points.add(time_unix_nano=NOW, as_double=math.nan)
    m.gauge.data_points.add(time_unix_nano=NOW, as_double=math.inf)
    m.gauge.data_points.add(time_unix_nano=NOW, as_double=2.0, flags=1)  # no recorded value
    m.gauge.data_points.add(time_unix_nano=NOW)  # neither as_int nor as_double
    long_value = m.gauge.data_points.add(time_unix_nano=NOW, as_double=1.0)
    set_attrs(long_value.attributes, {"k": "x" * 5000})
    many = m.gauge.data_points.add(time_unix_nano=NOW, as_double=1.0)
    set_attrs(many.attributes, {f"k{i}": "v" for i in range(200)})
    h = metrics_pb2.Metric(name="h")
    h.histogram.data_points.add(time_unix_nano=NOW, count=5, bucket_counts=[1, 1], explicit_bounds=[1.0, 2.0])
    nameless = gauge("", [(1.0, {})], ts=NOW)

    out = convert(request_with([m, h, nameless]))
    assert out.received == 12
    assert out.accepted == 1
    assert dict(out.rejected) == {
        cv.TIMESTAMP: 3,
        cv.NON_FINITE: 2,
        cv.NO_VALUE: 1,
        cv.MALFORMED_POINT: 2,
        cv.ATTRIBUTE_LIMIT: 2,
        cv.NO_NAME: 1,
    }
    assert out.received == out.accepted + sum(out.rejected.values())
    assert "11 data points rejected" in out.rejection_message()


def test_resource_over_the_attribute_limit_rejects_its_points() -> None:
    req = request_with([gauge("g", [(1.0, {}), (2.0, {"a": "b"})], ts=NOW)], resource={"k": "v" * 300})
    out = convert(req, Limits(max_value_length=256))
    assert out.accepted == 0 and out.rejected == {cv.ATTRIBUTE_LIMIT: 2}


def test_series_limit_per_metric_refuses_new_series_but_keeps_known_ones() -> None:
    converter = Converter(Limits(max_series_per_metric=3))
    first = converter.convert(request_with([gauge("g", [(1.0, {"i": str(i)}) for i in range(5)], ts=NOW)]), NOW)
    assert first.accepted == 3 and first.rejected == {cv.SERIES_LIMIT: 2} and first.series_refused == {"g": 2}
    again = converter.convert(request_with([gauge("g", [(1.0, {"i": str(i)}) for i in range(3)], ts=NOW)]), NOW)
    assert again.accepted == 3 and not again.rejected
    other = converter.convert(request_with([gauge("h", [(1.0, {"i": "9"})], ts=NOW)]), NOW)
    assert other.accepted == 1, "the limit is per metric"


def test_series_limiter_forgets_series_after_two_rolls() -> None:
    limiter = SeriesLimiter(1)
    assert limiter.admit("m", 1)
    assert not limiter.admit("m", 2)
    limiter.roll()
    assert limiter.admit("m", 1), "seen in the previous generation: still live"
    limiter.roll()
    limiter.roll()
    assert limiter.admit("m", 2), "series 1 aged out"


def test_attribute_values_of_every_type_become_strings() -> None:
    m = gauge("g", [(1.0, {})], ts=NOW)
    dp = m.gauge.data_points[0]
    set_attrs(dp.attributes, {"b": False, "i": -3, "d": 0.25})
    arr = dp.attributes.add(key="arr")
    arr.value.array_value.values.add(string_value="x")
    arr.value.array_value.values.add(int_value=2)
    kvl = dp.attributes.add(key="kv")
    kvl.value.kvlist_value.values.add(key="n", value={"bool_value": True})
    dp.attributes.add(key="raw").value.bytes_value = b"\x01\x02"
    out = convert(request_with([m]))
    assert out.tables[cv.GAUGE].column("Attributes")[0] == {
        "arr": '["x",2]',
        "b": "false",
        "d": "0.25",
        "i": "-3",
        "kv": '{"n":true}',
        "raw": "AQI=",
    }


@pytest.mark.parametrize("n", [1, 250])
def test_received_equals_accepted_plus_rejected(n: int) -> None:
    ts = time.time_ns()
    out = Converter(Limits()).convert(request_with([gauge("g", [(float(i), {"i": i}) for i in range(n)], ts)]), ts)
    assert out.received == out.accepted == n
