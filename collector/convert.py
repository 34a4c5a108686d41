"""OTLP metrics to the exporter tables' columns: validation and conversion in one pass.

Pure: no I/O and no clock (the caller passes `now_ns`). Every point either lands in exactly one
table's columns or is counted under one rejection reason, so
`received == accepted + sum(rejected.values())` always holds.

Columns that are constant for a metric (resource, scope, name, unit, temporality) are appended
once per metric with `extend(repeat(...))`; only per-point columns are touched per point.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.attributes import AttributeCache, any_value, attribute_pairs
from collector.intervals import SeriesIntervals
from collector.limits import MAX_TIMESTAMP_NS, Limits, SeriesLimiter
from collector.points import (
    APPEND,
    ATTRIBUTE_LIMIT,
    BUCKET_LIMIT,
    EXEMPLAR_LIMIT,
    FIELD_LIMIT,
    MALFORMED_POINT,
    NO_NAME,
    NO_VALUE,
    NON_FINITE,
    SERIES_LIMIT,
    TIMESTAMP,
    PointChecks,
)
from vigil.store.columns import INTERVAL, METRIC_TABLES, Role, flat_names
from vigil.store.schema import EXP_HISTOGRAM, GAUGE, HISTOGRAM, SUM, SUMMARY

FLAG_NO_RECORDED_VALUE = 1

__all__ = [
    "ATTRIBUTE_LIMIT",
    "BUCKET_LIMIT",
    "EXEMPLAR_LIMIT",
    "FIELD_LIMIT",
    "MALFORMED_POINT",
    "NON_FINITE",
    "NO_NAME",
    "NO_VALUE",
    "SERIES_LIMIT",
    "TIMESTAMP",
    "AttributeCache",
    "Conversion",
    "Converter",
    "Limits",
    "SeriesLimiter",
    "any_value",
]

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
    """Holds the limits and the per-process state (attribute cache, series limiter, gauge intervals)."""

    def __init__(self, limits: Limits, limiter: SeriesLimiter | None = None) -> None:
        self.limits = limits
        self.attributes = AttributeCache(limits)
        self.limiter = limiter or SeriesLimiter(
            limits.max_series_per_metric, limits.max_metric_names, limits.max_series_total
        )
        self.checks = PointChecks(limits)
        self.intervals = SeriesIntervals(limits.interval_cache_bytes)

    def convert(self, request: ExportMetricsServiceRequest, now_ns: int) -> Conversion:
        out = Conversion()
        lo = now_ns - self.limits.max_age_ns
        hi = min(now_ns + self.limits.max_future_ns, MAX_TIMESTAMP_NS)
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
                    reason = self._metric_reason(rm, sm, metric, resource, scope)
                    if reason:
                        out.rejected[reason] += n_points
                        continue
                    assert resource is not None and scope is not None  # _metric_reason checked them
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

    def _metric_reason(self, rm: Any, sm: Any, metric: Any, resource: Any, scope: Any) -> str | None:
        """Why every point of this metric is refused (a limit on what is shared by its rows), or None."""
        if resource is None or scope is None:
            return ATTRIBUTE_LIMIT
        if not metric.name:
            return NO_NAME
        limits = self.limits
        if (
            len(metric.name) > limits.max_name_length
            or len(metric.description) > limits.max_description_length
            or len(metric.unit) > limits.max_unit_length
            or len(sm.scope.name) > limits.max_scope_field_length
            or len(sm.scope.version) > limits.max_scope_field_length
            or len(sm.schema_url) > limits.max_scope_field_length
            or len(rm.schema_url) > limits.max_scope_field_length
        ):
            return FIELD_LIMIT
        return None

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
        interval_col = p[INTERVAL] if kind == "gauge" else None
        gap = self.intervals.gap_s
        validate, append = self.checks.validator(kind), APPEND[kind]
        exemplar_reason = self.checks.exemplars
        with_exemplars = kind != "summary"
        row = cols.rows
        accepted = 0
        for dp in points:
            t = dp.time_unix_nano
            if t < lo or t > hi or dp.start_time_unix_nano > MAX_TIMESTAMP_NS:
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
            exemplars = dp.exemplars if with_exemplars else None
            if exemplars:
                reason = exemplar_reason(exemplars)
                if reason:
                    rejected[reason] += 1
                    continue
            attrs = attributes(dp.attributes)
            if attrs is None:
                rejected[ATTRIBUTE_LIMIT] += 1
                continue
            series = series_prefix ^ attrs[1]
            if not admit(metric, series):
                rejected[SERIES_LIMIT] += 1
                out.series_refused[metric] += 1
                continue
            attrs_col.append(attrs[0])
            start_col.append(dp.start_time_unix_nano)
            time_col.append(t)
            flags_col.append(flags)
            if numeric:
                value_col.append(value)  # type: ignore[union-attr]
                if interval_col is not None:
                    interval_col.append(gap(series, t))
            else:
                append(dp, p)
            if exemplars:
                cols.exemplars.append((row + accepted, self._exemplar_columns(exemplars)))
            accepted += 1
        return accepted

    def _exemplar_columns(self, exemplars: Any) -> tuple[list[Any], ...]:
        limits = self.limits
        return (
            [dict(sorted(attribute_pairs(e.filtered_attributes, limits) or ())) for e in exemplars],
            [e.time_unix_nano for e in exemplars],
            [e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int) for e in exemplars],
            [e.span_id.hex() for e in exemplars],
            [e.trace_id.hex() for e in exemplars],
        )


_TABLE_OF = {
    "gauge": GAUGE,
    "sum": SUM,
    "histogram": HISTOGRAM,
    "exponential_histogram": EXP_HISTOGRAM,
    "summary": SUMMARY,
}
