from typing import Any

import pyarrow as pa
from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector.arrow import to_arrow
from collector.convert import Converter, Limits
from collector.pipeline import merge
from tests.otlp import gauge, request_with, set_attrs

NOW = 1_800_000_000 * 10**9


def plain(column: pa.ChunkedArray) -> list[Any]:
    """Arrow values as the converter holds them: maps as dicts, timestamps as integer nanoseconds."""

    def convert(dtype: pa.DataType, value: Any) -> Any:
        if value is None:
            return None
        if pa.types.is_map(dtype):
            return dict(value)
        if pa.types.is_list(dtype):
            return [convert(dtype.value_type, v) for v in value]
        return value

    dtype = column.type
    if pa.types.is_timestamp(dtype):
        return column.cast(pa.int64()).to_pylist()
    if pa.types.is_list(dtype) and pa.types.is_timestamp(dtype.value_type):
        return column.cast(pa.list_(pa.int64())).to_pylist()
    return [convert(dtype, v) for v in column.to_pylist()]


def test_arrow_table_holds_exactly_the_converted_rows() -> None:
    converter = Converter(Limits())
    first = request_with(
        [gauge("a", [(1.0, {"g": "0"}), (2.0, {"g": "1"})], ts=NOW), gauge("b", [(3.0, {"g": "0"})], ts=NOW)],
        resource={"service.name": "one", "host.name": "h1"},
    )
    s = metrics_pb2.Metric(name="c")
    s.sum.is_monotonic = True
    s.sum.aggregation_temporality = 2
    p = s.sum.data_points.add(time_unix_nano=NOW, as_int=4)
    ex = p.exemplars.add(time_unix_nano=NOW, as_double=0.5, trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    set_attrs(ex.filtered_attributes, {"u": "x"})
    s.sum.data_points.add(time_unix_nano=NOW, as_int=5)
    second = request_with([gauge("a", [(9.0, {"g": "0"})], ts=NOW + 1), s], resource={"service.name": "two"})
    tables = merge([converter.convert(first, NOW), converter.convert(second, NOW)])
    assert set(tables) == {"otel_metrics_gauge", "otel_metrics_sum"}
    for cols in tables.values():
        table = to_arrow(cols)
        assert table.num_rows == cols.rows
        assert table.column_names == list(cols.names)
        for name in cols.names:
            assert plain(table.column(name)) == cols.column(name), name
    gauge_rows = tables["otel_metrics_gauge"]
    assert gauge_rows.column("ServiceName") == ["one", "one", "one", "two"]
    assert gauge_rows.column("Value") == [1.0, 2.0, 3.0, 9.0]
    assert gauge_rows.column("Attributes") == [{"g": "0"}, {"g": "1"}, {"g": "0"}, {"g": "0"}]
    sums = tables["otel_metrics_sum"]
    assert sums.column("Exemplars.TraceId") == [["01" * 16], []]
    assert sums.column("Exemplars.FilteredAttributes") == [[{"u": "x"}], []]
    assert sums.column("IsMonotonic") == [True, True]
