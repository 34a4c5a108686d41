"""OTLP metrics to the exporter tables' columns: validation and conversion in one pass.

Pure: no I/O and no clock (the caller passes `now_ns`). Every point either lands in exactly one
table's columns or is counted under one rejection reason, so
`received == accepted + sum(rejected.values())` always holds.

Columns that are constant for a metric (resource, scope, name, unit, temporality) are appended
once per metric with `extend(repeat(...))`; only per-point columns are touched per point.
"""

from __future__ import annotations

import json
from base64 import b64encode
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from math import isfinite
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from vigil.store.columns import METRIC_TABLES, Role, flat_names
from vigil.store.schema import EXP_HISTOGRAM, GAUGE, HISTOGRAM, SUM, SUMMARY

# Rejection reasons: labels of vigil_collector_points_rejected_total and words in partial-success messages.
TIMESTAMP = "timestamp_out_of_range"
NON_FINITE = "non_finite_value"
NO_VALUE = "no_recorded_value"
ATTRIBUTE_LIMIT = "attribute_limit"
SERIES_LIMIT = "series_limit"
MALFORMED_POINT = "malformed_point"
NO_NAME = "missing_metric_name"

FLAG_NO_RECORDED_VALUE = 1
_serialize_kv = KeyValue.SerializeToString

# The column tuples derive from the one declaration in vigil.store.columns (in DDL order), split by
# how this module fills them: per metric (shared by every table, or by this kind) or per point.
SHARED_COLUMNS = flat_names(GAUGE, Role.METRIC, every_table=True)
POINT_COLUMNS = flat_names(GAUGE, Role.POINT, every_table=True)
EXEMPLAR_COLUMNS = flat_names(GAUGE, Role.EXEMPLAR)
KIND_POINT_COLUMNS = {table: flat_names(table, Role.POINT, every_table=False) for table in METRIC_TABLES}
KIND_METRIC_COLUMNS = {table: flat_names(table, Role.METRIC, every_table=False) for table in METRIC_TABLES}


def column_names(table: str) -> tuple[str, ...]:
    exemplars = flat_names(table, Role.EXEMPLAR)
    return SHARED_COLUMNS + POINT_COLUMNS + KIND_POINT_COLUMNS[table] + exemplars + KIND_METRIC_COLUMNS[table]


class TableColumns:
    """One table's rows, held the cheap way round.

    - `point`: a list per column that changes from point to point (attributes, times, values);
    - `runs`: one `(values, count)` per metric for the columns that are constant across a metric's
      points (resource, scope, name, unit, temporality), in `metric_columns` order;
    - `exemplars`: `(row, columns)` only for the rows that carry exemplars (few do).

    `collector.arrow.to_arrow` expands runs and exemplars in C (numpy repeat / Arrow take), so no
    Python work is spent per row on them. `column(name)` materializes one column as a list.
    """

    __slots__ = ("exemplars", "metric_columns", "names", "point", "point_columns", "rows", "runs", "table")

    def __init__(self, table: str) -> None:
        self.table = table
        self.names = column_names(table)
        self.point_columns = POINT_COLUMNS + KIND_POINT_COLUMNS[table]
        self.metric_columns = SHARED_COLUMNS + KIND_METRIC_COLUMNS[table]
        self.point: dict[str, list[Any]] = {name: [] for name in self.point_columns}
        self.runs: list[tuple[tuple[Any, ...], int]] = []
        self.exemplars: list[tuple[int, tuple[list[Any], ...]]] = []
        self.rows = 0

    def extend(self, other: TableColumns) -> None:
        for name, values in other.point.items():
            self.point[name].extend(values)
        self.runs.extend(other.runs)
        offset = self.rows
        self.exemplars.extend((offset + row, ex) for row, ex in other.exemplars)
        self.rows += other.rows

    def column(self, name: str) -> list[Any]:
        if name in self.point:
            return list(self.point[name])
        if name in EXEMPLAR_COLUMNS:
            values: list[Any] = [[] for _ in range(self.rows)]
            position = EXEMPLAR_COLUMNS.index(name)
            for row, ex in self.exemplars:
                values[row] = ex[position]
            return values
        position = self.metric_columns.index(name)
        return [value for run, count in self.runs for value in repeat(run[position], count)]


@dataclass
class Limits:
    max_attributes: int = 128
    max_key_length: int = 256
    max_value_length: int = 4096
    max_series_per_metric: int = 100_000
    max_age_ns: int = 14 * 86_400 * 10**9
    max_future_ns: int = 10 * 60 * 10**9


class SeriesLimiter:
    """Caps distinct series per metric over a sliding window of two generations.

    A series counts as live if seen in this generation or the previous one; `roll()` (called
    by the owner on a timer) retires the older generation, so churning series (restarted pods)
    do not exhaust the limit forever.
    """

    def __init__(self, max_series_per_metric: int) -> None:
        self.limit = max_series_per_metric
        self.current: dict[str, set[int]] = {}
        self.previous: dict[str, set[int]] = {}

    def admit(self, metric: str, series: int) -> bool:
        current = self.current.get(metric)
        if current is None:
            current = self.current[metric] = set()
        if series in current:
            return True
        previous = self.previous.get(metric)
        if previous is not None and series in previous:
            current.add(series)
            return True
        live = len(current) + (len(previous - current) if previous else 0)
        if live >= self.limit:
            return False
        current.add(series)
        return True

    def roll(self) -> None:
        self.previous, self.current = self.current, {}


def any_value(value: Any) -> str:
    """AnyValue as the exporter stores it: strings as-is, scalars as text, lists and maps as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    return (
        json.dumps(_plain(value), separators=(",", ":"))
        if kind in ("array_value", "kvlist_value")
        else (_scalar_text(value, kind))
    )


def _scalar_text(value: Any, kind: str) -> str:
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return b64encode(value.bytes_value).decode()
    return ""


def _plain(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return b64encode(value.bytes_value).decode()
    return None


class AttributeCache:
    """Sorted attribute maps, built once per distinct attribute set and shared between rows.

    The key is each KeyValue's wire encoding as sent (one C call per attribute, no Python per
    value); the value is the sorted dict with a hash of its content (the series identity), or
    None when the set breaks a limit. Bounded: cleared when it grows past `capacity`.
    """

    def __init__(self, limits: Limits, capacity: int = 500_000) -> None:
        self.limits = limits
        self.capacity = capacity
        self._maps: dict[tuple[bytes, ...], tuple[dict[str, str], int] | None] = {}

    def get(self, kvs: Any) -> tuple[dict[str, str], int] | None:
        key = tuple(map(_serialize_kv, kvs))
        cached = self._maps.get(key, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        if len(self._maps) >= self.capacity:
            self._maps.clear()
        pairs = [(kv.key, any_value(kv.value)) for kv in kvs]
        limits = self.limits
        ok = len(pairs) <= limits.max_attributes and all(
            len(k) <= limits.max_key_length and len(v) <= limits.max_value_length for k, v in pairs
        )
        ordered = tuple(sorted(pairs))
        built = (dict(ordered), hash(ordered)) if ok else None
        self._maps[key] = built
        return built


@dataclass
class Conversion:
    tables: dict[str, TableColumns] = field(default_factory=dict)
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    series_refused: Counter[str] = field(default_factory=Counter)  # by metric name

    @property
    def accepted(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def columns_for(self, table: str) -> TableColumns:
        cols = self.tables.get(table)
        if cols is None:
            cols = self.tables[table] = TableColumns(table)
        return cols

    def rejection_message(self) -> str:
        if not self.rejected:
            return ""
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(self.rejected.items()))
        return f"{sum(self.rejected.values())} data points rejected: {reasons}"


class Converter:
    """Holds the limits and the per-process state (attribute cache, series limiter)."""

    def __init__(self, limits: Limits, limiter: SeriesLimiter | None = None) -> None:
        self.limits = limits
        self.attributes = AttributeCache(limits)
        self.limiter = limiter or SeriesLimiter(limits.max_series_per_metric)

    def convert(self, request: ExportMetricsServiceRequest, now_ns: int) -> Conversion:
        out = Conversion()
        lo, hi = now_ns - self.limits.max_age_ns, now_ns + self.limits.max_future_ns
        for rm in request.resource_metrics:
            resource = self.attributes.get(rm.resource.attributes)
            for sm in rm.scope_metrics:
                scope = self.attributes.get(sm.scope.attributes)
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    data = getattr(metric, kind)
                    points = data.data_points
                    n_points = len(points)
                    out.received += n_points
                    if resource is None or scope is None:
                        out.rejected[ATTRIBUTE_LIMIT] += n_points
                        continue
                    if not metric.name:
                        out.rejected[NO_NAME] += n_points
                        continue
                    table = _TABLE_OF[kind]
                    cols = out.columns_for(table)
                    resource_attrs, resource_hash = resource
                    series_prefix = hash((metric.name, resource_hash))
                    accepted = self._points(kind, points, cols, out, lo, hi, metric.name, series_prefix)
                    if not accepted:
                        continue
                    shared: tuple[Any, ...] = (
                        resource_attrs,
                        rm.schema_url,
                        sm.scope.name,
                        sm.scope.version,
                        scope[0],
                        sm.scope.dropped_attributes_count,
                        sm.schema_url,
                        resource_attrs.get("service.name", ""),
                        metric.name,
                        metric.description,
                        metric.unit,
                    )
                    if kind == "sum":
                        shared += (data.aggregation_temporality, data.is_monotonic)
                    elif kind in ("histogram", "exponential_histogram"):
                        shared += (data.aggregation_temporality,)
                    cols.runs.append((shared, accepted))
                    cols.rows += accepted
        return out

    def _points(
        self,
        kind: str,
        points: Any,
        cols: TableColumns,
        out: Conversion,
        lo: int,
        hi: int,
        metric: str,
        series_prefix: int,
    ) -> int:
        """Validate and append one metric's points; return how many were accepted."""
        p = cols.point
        attrs_col, start_col, time_col, flags_col = (p[n] for n in POINT_COLUMNS)
        rejected = out.rejected
        attributes = self.attributes.get
        admit = self.limiter.admit
        numeric = kind in ("gauge", "sum")
        value_col = p["Value"] if numeric else None
        validate, append = _VALIDATE[kind], _APPEND[kind]
        with_exemplars = kind != "summary"
        row = cols.rows
        accepted = 0
        for dp in points:
            t = dp.time_unix_nano
            if t < lo or t > hi:
                rejected[TIMESTAMP] += 1
                continue
            flags = dp.flags
            if flags & FLAG_NO_RECORDED_VALUE:
                rejected[NO_VALUE] += 1
                continue
            if numeric:
                which = dp.WhichOneof("value")
                if which == "as_double":
                    value = dp.as_double
                    if value - value != 0.0:  # NaN or ±Inf
                        rejected[NON_FINITE] += 1
                        continue
                elif which == "as_int":
                    value = float(dp.as_int)
                else:
                    rejected[MALFORMED_POINT] += 1
                    continue
            else:
                reason = validate(dp)
                if reason:
                    rejected[reason] += 1
                    continue
            attrs = attributes(dp.attributes)
            if attrs is None:
                rejected[ATTRIBUTE_LIMIT] += 1
                continue
            if not admit(metric, series_prefix ^ attrs[1]):
                rejected[SERIES_LIMIT] += 1
                out.series_refused[metric] += 1
                continue
            attrs_col.append(attrs[0])
            start_col.append(dp.start_time_unix_nano)
            time_col.append(t)
            flags_col.append(flags)
            if numeric:
                value_col.append(value)  # type: ignore[union-attr]
            else:
                append(dp, p)
            if with_exemplars and dp.exemplars:
                cols.exemplars.append((row + accepted, _exemplar_columns(dp.exemplars)))
            accepted += 1
        return accepted


def _exemplar_columns(exemplars: Any) -> tuple[list[Any], ...]:
    return (
        [dict(sorted((kv.key, any_value(kv.value)) for kv in e.filtered_attributes)) for e in exemplars],
        [e.time_unix_nano for e in exemplars],
        [e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int) for e in exemplars],
        [e.span_id.hex() for e in exemplars],
        [e.trace_id.hex() for e in exemplars],
    )


def _validate_histogram(dp: Any) -> str | None:
    bounds = len(dp.explicit_bounds)
    buckets = dp.bucket_counts
    if buckets and len(buckets) != bounds + 1:
        return MALFORMED_POINT
    if buckets and sum(buckets) != dp.count:
        return MALFORMED_POINT
    for name in ("sum", "min", "max"):
        if dp.HasField(name) and not isfinite(getattr(dp, name)):
            return NON_FINITE
    return None


def _validate_exp_histogram(dp: Any) -> str | None:
    total = dp.zero_count + sum(dp.positive.bucket_counts) + sum(dp.negative.bucket_counts)
    if total != dp.count:
        return MALFORMED_POINT
    for name in ("sum", "min", "max"):
        if dp.HasField(name) and not isfinite(getattr(dp, name)):
            return NON_FINITE
    return None


def _validate_summary(dp: Any) -> str | None:
    if not isfinite(dp.sum):
        return NON_FINITE
    for q in dp.quantile_values:
        if not (0.0 <= q.quantile <= 1.0) or not isfinite(q.value):
            return MALFORMED_POINT if isfinite(q.value) else NON_FINITE
    return None


def _append_histogram(dp: Any, c: dict[str, list[Any]]) -> None:
    c["Count"].append(dp.count)
    c["Sum"].append(dp.sum)
    c["BucketCounts"].append(list(dp.bucket_counts))
    c["ExplicitBounds"].append(list(dp.explicit_bounds))
    c["Min"].append(dp.min)
    c["Max"].append(dp.max)


def _append_exp_histogram(dp: Any, c: dict[str, list[Any]]) -> None:
    c["Count"].append(dp.count)
    c["Sum"].append(dp.sum)
    c["Scale"].append(dp.scale)
    c["ZeroCount"].append(dp.zero_count)
    c["PositiveOffset"].append(dp.positive.offset)
    c["PositiveBucketCounts"].append(list(dp.positive.bucket_counts))
    c["NegativeOffset"].append(dp.negative.offset)
    c["NegativeBucketCounts"].append(list(dp.negative.bucket_counts))
    c["Min"].append(dp.min)
    c["Max"].append(dp.max)


def _append_summary(dp: Any, c: dict[str, list[Any]]) -> None:
    c["Count"].append(dp.count)
    c["Sum"].append(dp.sum)
    c["ValueAtQuantiles.Quantile"].append([q.quantile for q in dp.quantile_values])
    c["ValueAtQuantiles.Value"].append([q.value for q in dp.quantile_values])


_TABLE_OF = {
    "gauge": GAUGE,
    "sum": SUM,
    "histogram": HISTOGRAM,
    "exponential_histogram": EXP_HISTOGRAM,
    "summary": SUMMARY,
}
_VALIDATE: dict[str, Any] = {
    "gauge": None,  # gauges and sums are validated inline: they are most of the traffic
    "sum": None,
    "histogram": _validate_histogram,
    "exponential_histogram": _validate_exp_histogram,
    "summary": _validate_summary,
}
_APPEND: dict[str, Any] = {
    "gauge": None,
    "sum": None,
    "histogram": _append_histogram,
    "exponential_histogram": _append_exp_histogram,
    "summary": _append_summary,
}
