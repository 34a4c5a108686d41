"""SQL of windowed reads, pure: which source answers a window, and the one query per `WindowQuery`.

Every value is a `{name:Type}` parameter; the only identifiers are table names from `TABLES`.
Cumulative kinds (sums, histograms) are read as a sequence of summaries per series — one per raw
point, or one per rollup bucket: (first time, first value, last value, peak value) — and one
expression turns either into the reset-aware increase, so raw and rollup reads share their math:

    increase = Σ within each summary:  L - F, or (M - F) + L where L < M (a reset inside it)
             + Σ between summaries:    F - L_prev, or F where F < L_prev (a reset between them)

For a raw point F = L = M, so only the second sum counts: Prometheus' rule over consecutive points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vigil.store.columns import GAUGE, HISTOGRAM, SUM
from vigil.store.plan import QueryRejected, Resolution
from vigil.store.read import AGGREGATE_SQL, NONE_LABEL
from vigil.store.schema import (
    HISTOGRAM_ROLLUP_1H,
    HISTOGRAM_ROLLUP_1M,
    MINUTES,
    ROLLUP_1H,
    SUM_ROLLUP_1H,
    SUM_ROLLUP_1M,
    SchemaContext,
)
from vigil.store.window import FUNCTIONS_BY_KIND, Matcher, WindowQuery

TABLES: dict[str, dict[Resolution, str]] = {
    "gauge": {Resolution.RAW: GAUGE, Resolution.MINUTE: MINUTES, Resolution.HOUR: ROLLUP_1H},
    "sum": {Resolution.RAW: SUM, Resolution.MINUTE: SUM_ROLLUP_1M, Resolution.HOUR: SUM_ROLLUP_1H},
    "histogram": {
        Resolution.RAW: HISTOGRAM,
        Resolution.MINUTE: HISTOGRAM_ROLLUP_1M,
        Resolution.HOUR: HISTOGRAM_ROLLUP_1H,
    },
}
ROLLUP_MIN_WINDOW_S = 3600
BUCKETS_PER_WINDOW = 60  # a rollup's bucket is at most 1/60 of the window: its edge moves the start that little
MAX_MATCHERS = 16
_OPS = {"=": "{v} = {p}", "!=": "{v} != {p}", "=~": "match({v}, {r})", "!~": "NOT match({v}, {r})"}


@dataclass(frozen=True)
class WindowPlan:
    """The source of one read and the range it covers: (start, end] of raw points, or the whole
    buckets [start, end) of a rollup. `range_start`..`now` is what rates are taken over."""

    source: Resolution
    start: float
    end: float
    range_start: float

    def range_s(self, now: float) -> float:
        return now - self.range_start


def plan_window(window_s: int, now: float, ctx: SchemaContext, source: Resolution | None = None) -> WindowPlan:
    """Raw rows for short windows; for a window of an hour or more, the coarsest rollup whose bucket
    divides it, is at most 1/60 of it, and still holds its start. `last_seen` always reads raw rows
    (the caller passes RAW). A rollup read covers the whole buckets up to the one holding `now`,
    so its start moves forward to a bucket edge (by less than one bucket)."""
    if window_s <= 0:
        raise QueryRejected(f"window_s must be a positive number of seconds, got {window_s}")
    if source is None:
        source = Resolution.RAW
        if window_s >= ROLLUP_MIN_WINDOW_S:
            for candidate in (Resolution.HOUR, Resolution.MINUTE):
                bucket = candidate.bucket_s
                fits = window_s % bucket == 0 and bucket * BUCKETS_PER_WINDOW <= window_s
                if fits and candidate.covers(int(now) - window_s, now, ctx):
                    source = candidate
                    break
    elif window_s % source.bucket_s:
        raise QueryRejected(f"a {window_s}s window is not a whole number of the {source.value} rollup's buckets")
    if source is Resolution.RAW:
        return WindowPlan(source, now - window_s, now, now - window_s)
    end = math.ceil(now / source.bucket_s) * source.bucket_s
    return WindowPlan(source, end - window_s, end, end - window_s)


def _attribute(param: str, missing: str) -> str:
    # A point attribute wins over a resource attribute of the same key, as in the read layer.
    key = f"{{{param}:String}}"
    return (
        f"if(mapContains(Attributes, {key}), Attributes[{key}], "
        f"if(mapContains(ResourceAttributes, {key}), ResourceAttributes[{key}], {missing}))"
    )


def matchers_sql(matchers: tuple[Matcher, ...], params: dict[str, Any]) -> str:
    """` AND …` per matcher; a key neither map has reads as "" (as a missing label in PromQL)."""
    if len(matchers) > MAX_MATCHERS:
        raise QueryRejected(f"at most {MAX_MATCHERS} matchers per read, got {len(matchers)}")
    clauses = []
    for i, m in enumerate(matchers):
        if m.op not in _OPS:
            raise QueryRejected(f"matcher on {m.key!r}: operator {m.op!r} is not one of {', '.join(_OPS)}")
        if not m.key:
            raise QueryRejected("a matcher's key must not be empty")
        params[f"mk{i}"], params[f"mv{i}"] = m.key, m.value
        anchored = f"concat('^(?:', {{mv{i}:String}}, ')$')"  # whole-value match, as PromQL's
        clauses.append(" AND " + _OPS[m.op].format(v=_attribute(f"mk{i}", "''"), p=f"{{mv{i}:String}}", r=anchored))
    return "".join(clauses)


def labels_sql(group_by: tuple[str, ...], params: dict[str, Any]) -> list[str]:
    params["none"] = NONE_LABEL
    labels = []
    for i, key in enumerate(group_by):
        if not key:
            raise QueryRejected("a group_by key must not be empty")
        params[f"g{i}"] = key
        labels.append(f"{_attribute(f'g{i}', '{none:String}')} AS g{i}")
    return labels


def _range_sql(plan: WindowPlan, params: dict[str, Any]) -> str:
    if plan.source is Resolution.RAW:
        params["start"], params["end"] = round(plan.start * 1e9), round(plan.end * 1e9)
        return "TimeUnix > fromUnixTimestamp64Nano({start:Int64}) AND TimeUnix <= fromUnixTimestamp64Nano({end:Int64})"
    params["start"], params["end"] = int(plan.start), int(plan.end)
    return "TimeBucket >= toDateTime({start:UInt32}, 'UTC') AND TimeBucket < toDateTime({end:UInt32}, 'UTC')"


def check_query(query: WindowQuery) -> None:
    """Refuse what no table can answer, before any SQL is built."""
    if query.kind not in FUNCTIONS_BY_KIND:
        raise QueryRejected(f"kind {query.kind!r} is not one of {', '.join(FUNCTIONS_BY_KIND)}")
    if query.function not in FUNCTIONS_BY_KIND[query.kind]:
        allowed = ", ".join(sorted(FUNCTIONS_BY_KIND[query.kind]))
        raise QueryRejected(f"{query.kind} metrics answer {allowed}; not {query.function!r}")
    if not query.metric:
        raise QueryRejected("metric must not be empty")
    if len(query.group_by) > MAX_MATCHERS:
        raise QueryRejected(f"at most {MAX_MATCHERS} group_by keys per read, got {len(query.group_by)}")
    if query.function == "quantile" and (query.quantile is None or not 0 <= query.quantile <= 1):
        raise QueryRejected(f"quantile needs `quantile` in [0, 1], got {query.quantile}")
    if query.function == "le_count" and (query.le is None or math.isnan(query.le)):
        raise QueryRejected("le_count needs `le`: one of the histogram's bucket bounds")


def window_sql(query: WindowQuery, plan: WindowPlan) -> tuple[str, dict[str, Any]]:
    """The one query of a read. Gauges and `last_seen` answer per group; sums and histograms per
    series (with the group labels), for the caller to extrapolate and add up by group."""
    check_query(query)
    params: dict[str, Any] = {"metric": query.metric}
    table = TABLES[query.kind][plan.source]
    where = f"MetricName = {{metric:String}} AND {_range_sql(plan, params)}{matchers_sql(query.matchers, params)}"
    labels = labels_sql(query.group_by, params)
    group = f"GROUP BY {', '.join(f'g{i}' for i in range(len(labels)))}\n" if labels else ""
    if query.function == "last_seen":
        if plan.source is not Resolution.RAW:
            raise QueryRejected("last_seen reads raw rows")
        value = "toUnixTimestamp64Nano(max(TimeUnix)) / 1e9"
        return f"SELECT {', '.join([*labels, value])}\nFROM {table}\nWHERE {where}\n{group}HAVING count() > 0", params
    if query.kind == "gauge":
        value = AGGREGATE_SQL[query.function][0 if plan.source is Resolution.RAW else 1]
        return f"SELECT {', '.join([*labels, value])}\nFROM {table}\nWHERE {where}\n{group}HAVING count() > 0", params
    inner = (sum_summaries if query.kind == "sum" else histogram_summaries)(plan.source, table, where)
    return _per_series(query.kind, labels, inner), params


def sum_summaries(source: Resolution, table: str, where: str) -> str:
    if source is Resolution.RAW:
        return (
            "SELECT ServiceName, ResourceAttributes, Attributes, TimeUnix AS t0, TimeUnix AS t1,\n"
            "    Value AS f, Value AS l, Value AS m, toUInt64(1) AS n, StartTimeUnix AS s0\n"
            f"FROM {table}\nWHERE {where}"
        )
    return (
        "SELECT ServiceName, ResourceAttributes, Attributes, min(TimeFirst) AS t0, max(TimeLast) AS t1,\n"
        "    argMinMerge(ValueFirst) AS f, argMaxMerge(ValueLast) AS l, max(ValueMax) AS m, sum(Points) AS n,\n"
        "    toDateTime64(0, 9, 'UTC') AS s0\n"
        f"FROM {table}\nWHERE {where}\n"
        "GROUP BY ServiceName, ResourceAttributes, Attributes, TimeBucket"
    )


def histogram_summaries(source: Resolution, table: str, where: str) -> str:
    floats = "arrayMap(x -> toFloat64(x), {})"
    if source is Resolution.RAW:
        return (
            "SELECT ServiceName, ResourceAttributes, Attributes, ExplicitBounds AS bounds,\n"
            "    TimeUnix AS t0, TimeUnix AS t1,\n"
            "    toFloat64(Count) AS f, f AS l, f AS m,\n"
            f"    {floats.format('BucketCounts')} AS fv, fv AS lv, fv AS mv, toUInt64(1) AS n\n"
            f"FROM {table}\nWHERE {where} AND length(BucketCounts) = length(ExplicitBounds) + 1"
        )
    return (
        "SELECT ServiceName, ResourceAttributes, Attributes, ExplicitBounds AS bounds,\n"
        "    min(TimeFirst) AS t0, max(TimeLast) AS t1,\n"
        "    toFloat64(argMinMerge(CountFirst)) AS f, toFloat64(argMaxMerge(CountLast)) AS l,\n"
        "    toFloat64(max(CountMax)) AS m,\n"
        f"    {floats.format('argMinMerge(BucketCountsFirst)')} AS fv,\n"
        f"    {floats.format('argMaxMerge(BucketCountsLast)')} AS lv,\n"
        f"    {floats.format('argMaxMerge(BucketCountsAtMax)')} AS mv, sum(Points) AS n\n"
        f"FROM {table}\nWHERE {where}\n"
        "GROUP BY ServiceName, ResourceAttributes, Attributes, ExplicitBounds, TimeBucket"
    )


# Over `bs`, one series' summaries in time order as tuples (t0, f, l, m, ...): the module doc's formula.
# Public, with the summaries above, because `vigil.store.rates_sql` applies them per step bucket too.
INCREASE_SQL = (
    "arraySum(arrayMap(b -> if(b.3 < b.4, b.4 - b.2 + b.3, b.3 - b.2), bs))"
    " + arraySum(arrayMap((c, p) -> if(c.2 >= p.3, c.2 - p.3, c.2), arrayPopFront(bs), arrayPopBack(bs)))"
)
# The same per histogram bucket, with the scalar count deciding where a reset happened.
BUCKET_INCREASES_SQL = (
    "arrayReduce('sumForEach', arrayConcat(\n"
    "        arrayMap(b -> if(b.3 < b.4, arrayMap((m, f, l) -> m - f + l, b.7, b.5, b.6),"
    " arrayMap((l, f) -> l - f, b.6, b.5)), bs),\n"
    "        arrayMap((c, p) -> if(c.2 >= p.3, arrayMap((f, l) -> f - l, c.5, p.6), c.5),"
    " arrayPopFront(bs), arrayPopBack(bs))))"
)


def _per_series(kind: str, labels: list[str], inner: str) -> str:
    histogram = kind == "histogram"
    series = "ServiceName, ResourceAttributes, Attributes" + (", bounds" if histogram else "")
    summary = "(t0, f, l, m, fv, lv, mv)" if histogram else "(t0, f, l, m)"
    extra = [f"bounds, {BUCKET_INCREASES_SQL} AS buckets"] if histogram else ["last"]
    # a sum's row ends with the start time of its first point in the window (0 from a rollup, which
    # keeps none): a series that started inside the window counts from 0 there (window_read)
    started = "" if histogram else ", toUnixTimestamp64Nano(started) / 1e9"
    return (
        f"SELECT {', '.join([*labels, f'{INCREASE_SQL} AS increase', 'bs[1].2 AS first', *extra])},\n"
        f"    toUnixTimestamp64Nano(tf) / 1e9, toUnixTimestamp64Nano(tl) / 1e9, points{started}\n"
        "FROM (\n"
        f"    SELECT {series}, arraySort(b -> b.1, groupArray({summary})) AS bs,\n"
        "        min(t0) AS tf, max(t1) AS tl, sum(n) AS points, argMax(l, t1) AS last"
        + ("" if histogram else ", argMin(s0, t0) AS started")
        + "\n"
        f"    FROM ({inner})\n"
        f"    GROUP BY {series}\n"
        ")"
    )
