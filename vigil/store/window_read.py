"""Runs a `WindowQuery` against the store and shapes the answer: the edge of `vigil.store.window`."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from vigil.store.client import Store
from vigil.store.plan import QueryRejected, Resolution
from vigil.store.read import run_limited
from vigil.store.schema import SchemaContext
from vigil.store.window import WindowQuery, WindowValue
from vigil.store.window_math import CounterSeries, cumulative, extrapolation_factor, histogram_quantile
from vigil.store.window_sql import WindowPlan, plan_window, window_sql

MAX_SERIES = 100_000  # rows of one read; past it the caller gets a clear error, the store is spared


def read_window(
    store: Store,
    query: WindowQuery,
    now: float,
    ctx: SchemaContext,
    *,
    source: Resolution | None = None,
    max_rows: int = MAX_SERIES,
) -> list[WindowValue]:
    """The answer of `vigil.store.window.window_values`; `source` forces raw rows or a rollup."""
    if query.function == "last_seen":
        source = Resolution.RAW
    plan = plan_window(query.window_s, now, ctx, source)
    sql, params = window_sql(query, plan)
    rows = run_limited(store, sql, params, max_rows)
    width = len(query.group_by)
    if query.kind == "gauge" or query.function == "last_seen":
        values = ((tuple(row[:width]), float(row[width])) for row in rows)
    elif query.kind == "sum":
        values = _sum_values(query, plan, now, rows, width)
    else:
        values = _histogram_values(query, plan, now, rows, width)
    return [
        WindowValue(dict(zip(query.group_by, key, strict=True)), value)
        for key, value in sorted(values, key=lambda kv: kv[0])
        if not math.isnan(value)
    ]


def _scale(query: WindowQuery, plan: WindowPlan, now: float, series: CounterSeries) -> float | None:
    """The factor from a series' measured increase to its increase over the whole window: Prometheus'
    extrapolation to the range read, then in proportion to the window where a rollup's range is
    shorter by its bucket edge (a raw range is the window itself)."""
    factor = extrapolation_factor(series, plan.range_start, now)
    if factor is None:
        return None
    return factor * query.window_s / plan.range_s(now)


def from_start(series: CounterSeries, started: float, range_start: float) -> CounterSeries:
    """The series counted from 0 at its OTLP start time where that lies inside the range: a counter
    that first appears at 1 (an XID, a preemption) rose by 1 in the window, not by 0, as Prometheus'
    reading of consecutive points alone would say. A start at or before the range's start, or after
    the first point (a malformed one), changes nothing."""
    if not range_start < started < series.first_t or series.first_value < 0:
        return series
    return CounterSeries(series.increase + series.first_value, 0.0, started, series.last_t, series.points + 1)


def _sum_values(
    query: WindowQuery, plan: WindowPlan, now: float, rows: list[tuple[Any, ...]], width: int
) -> list[tuple[tuple[str, ...], float]]:
    totals: dict[tuple[str, ...], float] = defaultdict(float)
    latest: dict[tuple[str, ...], tuple[float, float]] = {}
    for row in rows:
        key = tuple(row[:width])
        increase, first, last, first_t, last_t, points, started = row[width:]
        if query.function == "last":
            if key not in latest or last_t > latest[key][0]:
                latest[key] = (float(last_t), float(last))
            continue
        series = from_start(CounterSeries(increase, first, first_t, last_t, int(points)), started, plan.range_start)
        factor = _scale(query, plan, now, series)
        if factor is not None:
            totals[key] += series.increase * factor
    if query.function == "last":
        return [(key, value) for key, (_, value) in latest.items()]
    divisor = query.window_s if query.function == "rate" else 1
    return [(key, total / divisor) for key, total in totals.items()]


def _histogram_values(
    query: WindowQuery, plan: WindowPlan, now: float, rows: list[tuple[Any, ...]], width: int
) -> list[tuple[tuple[str, ...], float]]:
    # Buckets add up by upper bound across the series of a group, as `sum by (le)` does in PromQL.
    groups: dict[tuple[str, ...], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        key = tuple(row[:width])
        count, first_count, bounds, increases, first_t, last_t, points = row[width:]
        factor = _scale(query, plan, now, CounterSeries(count, first_count, first_t, last_t, int(points)))
        if factor is None:
            continue
        if query.function == "le_count" and query.le != math.inf and query.le not in bounds:
            raise QueryRejected(
                f"le_count: {query.le} is not a bucket bound of {query.metric!r}; its bounds are {list(bounds)}"
            )
        for le, total in cumulative(bounds, increases).items():
            groups[key][le] += total * factor
    if query.function == "quantile":
        assert query.quantile is not None  # check_query refused it otherwise
        return [(key, histogram_quantile(query.quantile, buckets)) for key, buckets in groups.items()]
    le = math.inf if query.function == "count" else query.le
    return [(key, buckets[le]) for key, buckets in groups.items()]
