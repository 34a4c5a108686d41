"""Hypothesis strategies for OTLP metrics requests: all five kinds, extreme numbers, long strings, exemplars."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

NOW = 1_800_000_000 * 10**9

u64 = st.one_of(st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
i64 = st.one_of(st.sampled_from([-(2**63), -1, 0, 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
i32 = st.integers(-(2**31), 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]))
times = st.one_of(st.sampled_from([0, NOW, NOW - 1, 2**63 - 1, 2**63, 2**64 - 1]), u64, st.integers(NOW - 10**12, NOW))
text = st.one_of(st.text(max_size=20), st.sampled_from(["", "gpu.util", "x" * 300, "é\u0000\U0001f600"]))
ids = st.one_of(st.sampled_from([b"", b"\x01" * 8, b"\x02" * 16]), st.binary(max_size=20))


def _attrs(target: Any, pairs: list[tuple[str, Any]]) -> None:
    for key, value in pairs:
        kv = target.add(key=key)
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        elif isinstance(value, bytes):
            kv.value.bytes_value = value
        elif isinstance(value, list):
            for item in value:
                kv.value.array_value.values.add(string_value=item)
        else:
            kv.value.string_value = value


attr_values = st.one_of(text, st.booleans(), i64, floats, st.binary(max_size=10), st.lists(text, max_size=3))
# Keys stay short so most sets pass the attribute limits and points reach the store.
attributes = st.lists(st.tuples(st.text(max_size=12), attr_values), max_size=4)
flags = st.one_of(st.just(0), u32)
point_times = st.one_of(st.just(NOW), st.integers(NOW - 10**12, NOW), times)


@st.composite
def exemplars(draw: st.DrawFn, point: Any) -> None:
    for _ in range(draw(st.integers(0, 3))):
        e = point.exemplars.add(time_unix_nano=draw(times), span_id=draw(ids), trace_id=draw(ids))
        if draw(st.booleans()):
            e.as_double = draw(floats)
        else:
            e.as_int = draw(i64)
        _attrs(e.filtered_attributes, draw(attributes))


@st.composite
def metrics(draw: st.DrawFn) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=draw(text), description=draw(text), unit=draw(text))
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary"]))
    data = getattr(m, kind)
    if kind != "gauge" and kind != "summary":
        data.aggregation_temporality = draw(st.integers(0, 2))
    if kind == "sum":
        data.is_monotonic = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        p = data.data_points.add(time_unix_nano=draw(point_times), start_time_unix_nano=draw(times), flags=draw(flags))
        _attrs(p.attributes, draw(attributes))
        if kind in ("gauge", "sum"):
            if draw(st.booleans()):
                p.as_double = draw(floats)
            elif draw(st.booleans()):
                p.as_int = draw(i64)
        elif kind == "histogram":
            bounds = draw(st.lists(floats, max_size=4))
            p.explicit_bounds.extend(bounds)
            buckets = draw(st.lists(u64, min_size=0, max_size=5))
            p.bucket_counts.extend(buckets)
            p.count = sum(buckets) if draw(st.booleans()) and sum(buckets) < 2**64 else draw(u64)
            for name in ("sum", "min", "max"):
                if draw(st.booleans()):
                    setattr(p, name, draw(floats))
        elif kind == "exponential_histogram":
            p.scale, p.zero_count = draw(st.integers(-(2**31), 2**31 - 1)), draw(u64)
            p.positive.offset, p.negative.offset = draw(i32), draw(i32)
            p.positive.bucket_counts.extend(draw(st.lists(u64, max_size=4)))
            p.negative.bucket_counts.extend(draw(st.lists(u64, max_size=4)))
            total = p.zero_count + sum(p.positive.bucket_counts) + sum(p.negative.bucket_counts)
            p.count = total if draw(st.booleans()) and total < 2**64 else draw(u64)
            for name in ("sum", "min", "max"):
                if draw(st.booleans()):
                    setattr(p, name, draw(floats))
        else:
            p.count, p.sum = draw(u64), draw(floats)
            for _ in range(draw(st.integers(0, 3))):
                p.quantile_values.add(quantile=draw(floats), value=draw(floats))
        if kind != "summary":
            draw(exemplars(p))
    return m


@st.composite
def requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rm = req.resource_metrics.add(schema_url=draw(text))
        _attrs(rm.resource.attributes, draw(attributes))
        for _ in range(draw(st.integers(0, 2))):
            sm = rm.scope_metrics.add(schema_url=draw(text))
            sm.scope.name, sm.scope.version = draw(text), draw(text)
            sm.scope.dropped_attributes_count = draw(u32)
            _attrs(sm.scope.attributes, draw(attributes))
            sm.metrics.extend(draw(st.lists(metrics(), max_size=3)))
    return req
