"""Counters and histograms as series over time, for charts: a counter's rate per step, a histogram's
quantile per step, and the ratio of two counters' rates (errors over requests).

Each step bucket [b, b + step) of a series covers the time from the series' last point in the
bucket before (read one step before the range, so the first bucket has one too) to its last point in
this one. Over that span:

- a rate is the reset-aware increase divided by the span's length, so a bucket the agent's sampling
  missed, or a partial current bucket, gives the true average rate rather than a spike or a dip; a
  reset counts as in Prometheus (a value lower than the one before starts again from zero);
- a quantile is Prometheus' `histogram_quantile` (linear interpolation inside the bucket) over the
  bucket-count increases in the span, a histogram resetting as a whole (its count went down);
- a ratio is the numerator's rate over the denominator's, per group and bucket; no point where the
  denominator is zero, 0 where only the numerator is missing (no error series means no errors).

Grouped series add up per bucket (`sum by`); histograms add their buckets by upper bound first. A
series with a single point and no point before it gives nothing for that bucket. The source is chosen
as for gauges (`vigil.store.plan`); raw rows and rollups give the same answer, to float rounding,
under `vigil.store.window`'s conditions on resets within a rollup bucket.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vigil.store.client import Store
from vigil.store.plan import QueryRejected, Resolution, SeriesPlan, plan_series
from vigil.store.rates_sql import CounterKind, step_sql
from vigil.store.read import MAX_ROWS, Series, SeriesResult, run_limited
from vigil.store.schema import SchemaContext
from vigil.store.window_math import cumulative, histogram_quantile

Function = Literal["rate", "quantile"]
GroupKey = tuple[Any, ...]


@dataclass(frozen=True)
class CounterQuery:
    """A counter's rate (`quantile` None) or a histogram's quantile per step over [start, end).

    `group_by` None keeps every series apart, labelled with all its attributes (a point's win over its
    resource's); a tuple of keys adds series up by them, () into one series labelled {}.
    """

    metric: str
    start: int
    end: int
    step: int
    filters: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] | None = None
    quantile: float | None = None
    source: Resolution | None = None

    @property
    def function(self) -> Function:
        return "rate" if self.quantile is None else "quantile"


@dataclass(frozen=True)
class StepSummary:
    """One series' points inside one step bucket, as the store summarises them (times in unix seconds)."""

    bucket: int
    increase: float  # reset-aware, among the points inside the bucket
    first: float
    last: float
    first_t: float
    last_t: float
    points: int
    bounds: tuple[float, ...] = ()  # histograms: the bucket bounds, and per bucket (one more than bounds)...
    bucket_increases: tuple[float, ...] = ()  # ...the increase inside the step bucket,
    first_buckets: tuple[float, ...] = ()  # ...the first point's counts,
    last_buckets: tuple[float, ...] = ()  # ...and the last point's


def step_increases(steps: Sequence[StepSummary], start: int) -> Iterator[tuple[StepSummary, float, float]]:
    """(bucket, increase, span) per bucket from `start` on of one series' buckets in time order: the
    increase since the last point of the bucket before (or, for the first bucket read, since its own
    first point) and that span's length in seconds. Buckets with no span are left out."""
    previous: StepSummary | None = None
    for s in steps:
        if previous is None:
            increase, span = s.increase, s.last_t - s.first_t
        else:
            increase = s.increase + (s.first - previous.last if s.first >= previous.last else s.first)
            span = s.last_t - previous.last_t
        if s.bucket >= start and span > 0:
            yield s, increase, span
        previous = s


def step_rates(steps: Sequence[StepSummary], start: int) -> list[tuple[int, float]]:
    """One counter series' rate per bucket (see the module doc)."""
    return [(s.bucket, increase / span) for s, increase, span in step_increases(steps, start)]


def step_buckets(steps: Sequence[StepSummary], start: int) -> list[tuple[int, dict[float, float]]]:
    """One histogram series' cumulative bucket increases by upper bound per bucket (see the module doc)."""
    out = []
    previous: StepSummary | None = None
    for s in steps:
        counts = list(s.bucket_increases)
        if previous is not None:
            before = s.first_buckets
            if s.first >= previous.last and len(previous.last_buckets) == len(before):
                before = tuple(f - p for f, p in zip(s.first_buckets, previous.last_buckets, strict=True))
            counts = [c + b for c, b in zip(counts, before, strict=True)]
            span = s.last_t - previous.last_t
        else:
            span = s.last_t - s.first_t
        if s.bucket >= start and span > 0:
            out.append((s.bucket, cumulative(s.bounds, counts)))
        previous = s
    return out


def _summary(row: Sequence[Any], width: int, histogram: bool) -> StepSummary:
    _sid, bucket, increase, first, last, first_t, last_t, points, *extra = row[width:]
    buckets: dict[str, tuple[float, ...]] = {}
    if histogram:
        bounds, increases, first_buckets, last_buckets = extra
        buckets = {
            "bounds": tuple(bounds),
            "bucket_increases": tuple(map(float, increases)),
            "first_buckets": tuple(map(float, first_buckets)),
            "last_buckets": tuple(map(float, last_buckets)),
        }
    return StepSummary(
        int(bucket), float(increase), float(first), float(last), float(first_t), float(last_t), int(points), **buckets
    )


@dataclass
class _SeriesRows:
    labels: dict[str, str]
    group: GroupKey
    steps: list[StepSummary]


def _series_rows(rows: Iterable[Sequence[Any]], query: CounterQuery, histogram: bool) -> Iterator[_SeriesRows]:
    """The store's rows (ordered by series, then bucket) as one `_SeriesRows` per series."""
    width = 2 if query.group_by is None else len(query.group_by)
    current: _SeriesRows | None = None
    current_sid = None
    for row in rows:
        sid = row[width]
        if current is None or sid != current_sid:
            if current is not None:
                yield current
            if query.group_by is None:
                labels = {**row[0], **row[1]}
                group: GroupKey = (sid,)
            else:
                labels = dict(zip(query.group_by, row[:width], strict=True))
                group = tuple(row[:width])
            current, current_sid = _SeriesRows(labels, group, []), sid
        current.steps.append(_summary(row, width, histogram))
    if current is not None:
        yield current


def _plan(query: CounterQuery, ctx: SchemaContext, now: float) -> SeriesPlan:
    if not query.metric:
        raise QueryRejected("metric must not be empty")
    if query.quantile is not None and not 0 <= query.quantile <= 1:
        raise QueryRejected(f"quantile must be in [0, 1], got {query.quantile}")
    return plan_series(query.start, query.end, query.step, now, ctx, source=query.source)


def _read(
    store: Store, query: CounterQuery, plan: SeriesPlan, kind: CounterKind, max_rows: int
) -> Iterator[_SeriesRows]:
    # One step before the range, so its first bucket has a point before it to take the increase from.
    sql, params = step_sql(
        kind, query.metric, plan.source, plan.start - plan.step, plan.end, plan.step, query.filters, query.group_by
    )
    return _series_rows(run_limited(store, sql, params, max_rows), query, kind == "histogram")


def _rates_by_group(
    store: Store, query: CounterQuery, plan: SeriesPlan, max_rows: int
) -> dict[GroupKey, tuple[dict[str, str], dict[int, float]]]:
    groups: dict[GroupKey, tuple[dict[str, str], dict[int, float]]] = {}
    for series in _read(store, query, plan, "sum", max_rows):
        _, values = groups.setdefault(series.group, (series.labels, defaultdict(float)))
        for bucket, rate in step_rates(series.steps, plan.start):
            values[bucket] += rate
    return groups


def _result(groups: Iterable[tuple[dict[str, str], Mapping[int, float]]], plan: SeriesPlan) -> SeriesResult:
    series = [Series(labels, sorted(values.items())) for labels, values in groups if values]
    return SeriesResult(sorted(series, key=lambda s: sorted(s.labels.items())), plan.step, plan.source)


def read_rates(
    store: Store, query: CounterQuery, ctx: SchemaContext, now: float, *, max_rows: int = MAX_ROWS
) -> SeriesResult:
    """A counter's rate per second, per series or group and step bucket."""
    if query.quantile is not None:
        raise QueryRejected("a rate takes no quantile")
    plan = _plan(query, ctx, now)
    return _result(_rates_by_group(store, query, plan, max_rows).values(), plan)


def read_quantiles(
    store: Store, query: CounterQuery, ctx: SchemaContext, now: float, *, max_rows: int = MAX_ROWS
) -> SeriesResult:
    """A histogram's quantile per series or group and step bucket; no point where nothing was observed."""
    if query.quantile is None:
        raise QueryRejected("a quantile read needs `quantile` in [0, 1]")
    plan = _plan(query, ctx, now)
    groups: dict[GroupKey, tuple[dict[str, str], dict[int, dict[float, float]]]] = {}
    for series in _read(store, query, plan, "histogram", max_rows):
        _, by_bucket = groups.setdefault(series.group, (series.labels, defaultdict(lambda: defaultdict(float))))
        for bucket, cumulative_counts in step_buckets(series.steps, plan.start):
            for le, count in cumulative_counts.items():  # `sum by (le)`: buckets add up by upper bound
                by_bucket[bucket][le] += count
    out = []
    for labels, by_bucket in groups.values():
        values = {b: histogram_quantile(query.quantile, buckets) for b, buckets in by_bucket.items()}
        out.append((labels, {b: v for b, v in values.items() if not math.isnan(v)}))
    return _result(out, plan)


def read_ratio(
    store: Store,
    numerator: CounterQuery,
    denominator: CounterQuery,
    ctx: SchemaContext,
    now: float,
    *,
    max_rows: int = MAX_ROWS,
) -> SeriesResult:
    """The numerator's rate over the denominator's, per group and step bucket (see the module doc).

    Both must share range, step, grouping and source; a ratio always groups (`group_by` None reads as ()).
    """
    same = ("start", "end", "step", "group_by", "source")
    if any(getattr(numerator, k) != getattr(denominator, k) for k in same):
        raise QueryRejected("a ratio's numerator and denominator must share range, step, grouping and source")
    if numerator.quantile is not None or denominator.quantile is not None:
        raise QueryRejected("a ratio is of two counters' rates; it takes no quantile")
    group_by = numerator.group_by or ()
    numerator, denominator = replace(numerator, group_by=group_by), replace(denominator, group_by=group_by)
    plan = _plan(numerator, ctx, now)
    _plan(denominator, ctx, now)
    over = _rates_by_group(store, numerator, plan, max_rows)
    under = _rates_by_group(store, denominator, plan, max_rows)
    out = []
    for key, (labels, totals) in under.items():
        parts = over.get(key, (labels, {}))[1]
        out.append((labels, {b: parts.get(b, 0.0) / total for b, total in totals.items() if total > 0}))
    return _result(out, plan)
