"""SQL of counter and histogram series over time, pure: one row per series and step bucket.

A row summarises one series' points inside one step bucket [b, b + step): the reset-aware increase
among them (`window_sql`'s formula, over raw points or over rollup summaries, so both sources share
it), the first and last value (and bucket counts, for histograms), the times of the first and last
point, and how many points there were. `vigil.store.rates` then adds the increase between consecutive
buckets of a series and turns the sum into rates and quantiles.

Every value is a `{name:Type}` parameter; the only identifiers are table names from `window_sql.TABLES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from vigil.store.plan import QueryRejected, Resolution
from vigil.store.read import check_labels, filter_sql
from vigil.store.window_sql import (
    BUCKET_INCREASES_SQL,
    INCREASE_SQL,
    TABLES,
    histogram_summaries,
    labels_sql,
    sum_summaries,
)

CounterKind = Literal["sum", "histogram"]

# The columns after the labels, in order: what `vigil.store.rates.StepSummary` is built from.
SUM_COLUMNS = ("sid", "bucket", "increase", "first", "last", "first_t", "last_t", "points")
HISTOGRAM_COLUMNS = (*SUM_COLUMNS, "bounds", "bucket_increases", "first_buckets", "last_buckets")


def _range_sql(source: Resolution, start: int, end: int, params: dict[str, Any]) -> str:
    # [start, end) in both sources, as the gauge series read: a raw point on a bucket edge belongs to
    # the bucket it starts, as it does in the rollup whose TimeBucket it falls into.
    if source is Resolution.RAW:
        params["start"], params["end"] = start * 10**9, end * 10**9
        return "TimeUnix >= fromUnixTimestamp64Nano({start:Int64}) AND TimeUnix < fromUnixTimestamp64Nano({end:Int64})"
    params["start"], params["end"] = start, end
    return "TimeBucket >= toDateTime({start:UInt32}, 'UTC') AND TimeBucket < toDateTime({end:UInt32}, 'UTC')"


def label_columns(group_by: tuple[str, ...] | None, params: dict[str, Any]) -> list[str]:
    """The label columns a row starts with: the group's values, or both attribute maps when every
    series stays apart (`group_by` None)."""
    if group_by is None:
        return ["ResourceAttributes", "Attributes"]
    check_labels("group_by keys", group_by)
    return labels_sql(group_by, params)


def step_sql(
    kind: CounterKind,
    metric: str,
    source: Resolution,
    start: int,
    end: int,
    step: int,
    filters: Mapping[str, str],
    group_by: tuple[str, ...] | None,
) -> tuple[str, dict[str, Any]]:
    """One row per series and step bucket over [start, end), ordered by series then bucket.

    `start`, `end` and `step` must be whole buckets of `source` (the plan makes them so), so a rollup
    bucket never straddles two steps.
    """
    if kind not in ("sum", "histogram"):
        raise QueryRejected(f"kind {kind!r} is not sum or histogram")
    if not metric:
        raise QueryRejected("metric must not be empty")
    if step <= 0 or step % source.bucket_s or start % step or end % step:
        raise QueryRejected(f"step {step}s and the range must be whole {source.value} buckets")
    check_labels("filters", list(filters))
    params: dict[str, Any] = {"metric": metric, "step": step}
    labels = label_columns(group_by, params)
    where = f"MetricName = {{metric:String}} AND {_range_sql(source, start, end, params)}{filter_sql(filters, params)}"
    table = TABLES[kind][source]
    histogram = kind == "histogram"
    series = "ServiceName, ResourceAttributes, Attributes" + (", bounds" if histogram else "")
    inner = (histogram_summaries if histogram else sum_summaries)(source, table, where)
    summary = "(t0, f, l, m, fv, lv, mv)" if histogram else "(t0, f, l, m)"
    extra = [f"bounds, {BUCKET_INCREASES_SQL}", "bs[1].5", "bs[-1].6"] if histogram else []
    columns = [
        *labels,
        f"cityHash64({series}) AS sid",
        "bucket",
        INCREASE_SQL,
        "bs[1].2",
        "bs[-1].3",
        "toUnixTimestamp64Nano(tf) / 1e9",
        "toUnixTimestamp64Nano(tl) / 1e9",
        "points",
        *extra,
    ]
    sql = (
        f"SELECT {', '.join(columns)}\n"
        "FROM (\n"
        f"    SELECT {series}, intDiv(toUnixTimestamp(t0), {{step:UInt32}}) * {{step:UInt32}} AS bucket,\n"
        f"        arraySort(b -> b.1, groupArray({summary})) AS bs, min(t0) AS tf, max(t1) AS tl, sum(n) AS points\n"
        f"    FROM ({inner})\n"
        f"    GROUP BY {series}, bucket\n"
        ")\n"
        "ORDER BY sid, bucket"
    )
    return sql, params
