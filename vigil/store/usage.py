"""Historical GPU utilization per group: the series over time, GPU-hours, and the idlest and hottest GPUs.

Every number here is computed the same way from raw rows and from either gauge rollup, so a rollup's
answer equals the raw one within floating-point error. The rules, exactly (for a peer to ask the same):

- **Samples**: `gpu.utilization` (%) points that carry `gpu.uuid`, whose point or resource attributes
  match every filter exactly, with time in the planned range. A GPU is one `gpu.uuid`.
- **Group**: the value of `group_by` in the point's attributes, else in its resource attributes,
  else `(none)`: a GPU without the attribute is counted in its own group, never dropped.
- **Buckets**: `[k·step, (k+1)·step)` in unix seconds (UTC); the range is widened to whole buckets.
  The step may be raised (never lowered) so a series has at most `plan.MAX_POINTS` points, and to a
  multiple of the source's bucket (see `vigil.store.plan`).
- **Average utilization** of a group in a bucket: the mean over all the group's samples in the bucket
  (not the mean of per-GPU means; the two agree when GPUs report at one interval). In PromQL, with the
  window ending at the bucket's end: `sum by (g) (sum_over_time(u[step])) / sum by (g) (count_over_time(u[step]))`.
- **Per GPU and bucket** (a GPU with at least one sample in the bucket): `mean_b` = its samples' mean.
  - allocated GPU-hours: step / 3600 for every such bucket ("buckets with data * bucket length");
  - busy GPU-hours: mean_b / 100 * step / 3600;
  - idle GPU-hours: step / 3600 when mean_b < `idle_threshold` (%).
  A group's hours are the sums over its GPUs' buckets; `gpus` counts the distinct GPUs. A GPU whose
  group changes inside a bucket counts in both groups for that bucket.
- **Top GPUs**: per GPU over the whole range, `avg_utilization` = the mean of all its samples
  (PromQL `avg_over_time(u[range])`), its hours as above; idle = lowest average first, hot = highest,
  ties by uuid. Its labels and host are those of its latest bucket.

Why the bucket count and not samples * interval: the store does not know each GPU's sampling
interval, while a bucket with data is the same fact in raw rows and in both rollups. The hours
therefore depend on the step (a GPU seen for 5 minutes of an hour counts an hour at step 3600):
the page and the API report the step used.

Every value a caller passes, attribute keys included, is bound as a parameter; the only identifiers
in the SQL are table names from `Resolution`.

At the 1-hour resolution the same numbers come from migration 12's per-series tables
(`vigil.store.usage_hourly`), which hold no attribute maps per row; reads go through the store's own
history handles (`Store.read_rows`, `vigil.store.handles`), so they do not queue behind rule evaluation
and inserts, and a question's independent reads run at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from vigil.names import GPU_UTILIZATION, GPU_UUID, HOST_NAME, SIMULATED
from vigil.store import usage_hourly as hourly
from vigil.store.client import Store
from vigil.store.plan import QueryRejected, Resolution, SeriesPlan, plan_series
from vigil.store.read import MAX_ROWS, NONE_LABEL, check_labels, filter_sql
from vigil.store.schema import SchemaContext
from vigil.store.schema_history import GAUGE_SERIES
from vigil.store.series_cache import cache_of, speculate

METRIC = GPU_UTILIZATION.name
HOUR_S = 3600
MAX_TOP = 1000
DEFAULT_CTX = SchemaContext()

Order = Literal["idle", "hot"]


@dataclass(frozen=True)
class UsageQuery:
    """One question about [start, end) in unix seconds, at `step` seconds, per `group_by` value.

    `filters`: resource (or point) attribute → exact value. `idle_threshold`: percent utilization
    under which a GPU's bucket counts as idle. `top`: how many GPUs `top_gpus` answers.
    `source` forces raw rows or a rollup (its bucket must divide the step); None lets `plan` choose.
    """

    start: int
    end: int
    step: int
    group_by: str = "team"
    filters: Mapping[str, str] = field(default_factory=dict)
    idle_threshold: float = 5.0
    top: int = 10
    source: Resolution | None = None


class UsageSeries(NamedTuple):
    labels: dict[str, str]  # {group_by: value}
    points: list[tuple[int, float]]  # (bucket start in unix seconds, average utilization %), in time order


@dataclass(frozen=True)
class UsageResult:
    series: list[UsageSeries]
    step: int
    source: Resolution


@dataclass(frozen=True)
class GroupHours:
    labels: dict[str, str]  # {group_by: value}
    allocated_h: float
    busy_h: float
    idle_h: float
    gpus: int

    @property
    def utilization(self) -> float:
        """Busy over allocated, in percent: the time-weighted average utilization of the group."""
        return 100.0 * self.busy_h / self.allocated_h if self.allocated_h else 0.0


@dataclass(frozen=True)
class GpuUsage:
    uuid: str
    host: str
    labels: dict[str, str]  # {group_by: value} of its latest bucket
    avg_utilization: float  # mean of its samples over the range, %
    hours: float  # allocated GPU-hours
    busy_h: float
    idle_h: float


def _validate(q: UsageQuery) -> None:
    if not q.group_by:
        raise QueryRejected("group_by: name a resource attribute, e.g. team")
    check_labels("filters", list(q.filters))
    if not 0.0 <= q.idle_threshold <= 100.0:
        raise QueryRejected(f"idle_threshold is a percentage from 0 to 100, got {q.idle_threshold}")
    if not 1 <= q.top <= MAX_TOP:
        raise QueryRejected(f"top must be from 1 to {MAX_TOP}, got {q.top}")


def plan(q: UsageQuery, *, ctx: SchemaContext = DEFAULT_CTX, now: float | None = None) -> SeriesPlan:
    """The source, step and bucket-aligned range every function here uses for `q`."""
    _validate(q)
    return plan_series(q.start, q.end, q.step, time.time() if now is None else now, ctx, source=q.source)


def choose_source(q: UsageQuery, *, ctx: SchemaContext = DEFAULT_CTX, now: float | None = None) -> Resolution:
    """Raw rows, the 1-minute or the 1-hour rollup: the coarsest that answers the step while its TTL
    still keeps the range's start, so a 90-day query never reads raw rows."""
    return plan(q, ctx=ctx, now=now).source


def _from(q: UsageQuery, p: SeriesPlan, params: dict[str, Any]) -> tuple[str, str, str]:
    """FROM + WHERE, the bucket expression, and (mean, count) aggregates for the planned source."""
    params |= {"metric": METRIC, "uuid_key": GPU_UUID, "host_key": HOST_NAME, "gkey": q.group_by}
    params |= {"none": NONE_LABEL, "step": p.step, "thr": float(q.idle_threshold)}
    if p.source is Resolution.RAW:
        time_col = "TimeUnix"
        params |= {"start": p.start * 10**9, "end": p.end * 10**9}
        span = "TimeUnix >= fromUnixTimestamp64Nano({start:Int64}) AND TimeUnix < fromUnixTimestamp64Nano({end:Int64})"
    else:
        time_col = "TimeBucket"
        params |= {"start": p.start, "end": p.end}
        span = "TimeBucket >= toDateTime({start:UInt32}, 'UTC') AND TimeBucket < toDateTime({end:UInt32}, 'UTC')"
    where = (
        f"FROM {p.source.table}\n"
        f"WHERE MetricName = {{metric:String}} AND mapContains(Attributes, {{uuid_key:String}}) AND {span}"
        f"{filter_sql(q.filters, params)}"
    )
    bucket = f"intDiv(toUnixTimestamp({time_col}), {{step:UInt32}}) * {{step:UInt32}}"
    return where, bucket, time_col


def _aggregates(p: SeriesPlan) -> tuple[str, str]:
    """The mean and the sample count of the rows grouped, over raw rows or a rollup's states."""
    if p.source is Resolution.RAW:
        return "avg(Value)", "count()"
    return "sum(Sum) / sum(Count)", "sum(Count)"


_GROUP = (
    "if(mapContains(Attributes, {gkey:String}), Attributes[{gkey:String}], "
    "if(mapContains(ResourceAttributes, {gkey:String}), ResourceAttributes[{gkey:String}], {none:String}))"
)
_UUID = "Attributes[{uuid_key:String}]"
_HOST = "ResourceAttributes[{host_key:String}]"


def utilization_sql(q: UsageQuery, p: SeriesPlan) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    where, bucket, _ = _from(q, p, params)
    mean, _count = _aggregates(p)
    sql = f"SELECT {_GROUP} AS g, {bucket} AS bucket, {mean} AS value\n{where}\nGROUP BY g, bucket\nORDER BY g, bucket"
    return sql, params


def _per_gpu_bucket(q: UsageQuery, p: SeriesPlan, params: dict[str, Any]) -> str:
    """One row per GPU, group and bucket with data: its mean (%) and sample count there."""
    where, bucket, _ = _from(q, p, params)
    mean, count = _aggregates(p)
    return (
        f"SELECT {_UUID} AS uuid, {_GROUP} AS g, {bucket} AS bucket, any({_HOST}) AS host,\n"
        f"    {mean} AS mean_b, {count} AS n_b\n{where}\nGROUP BY uuid, g, bucket"
    )


def gpu_hours_sql(q: UsageQuery, p: SeriesPlan) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    inner = _per_gpu_bucket(q, p, params)
    sql = (
        "SELECT g, count() * {step:UInt32} / 3600 AS allocated_h,\n"
        "    sum(mean_b) * {step:UInt32} / 360000 AS busy_h,\n"
        "    countIf(mean_b < {thr:Float64}) * {step:UInt32} / 3600 AS idle_h, uniqExact(uuid) AS gpus\n"
        f"FROM ({inner})\nGROUP BY g\nORDER BY allocated_h DESC, g"
    )
    return sql, params


def top_gpus_sql(q: UsageQuery, p: SeriesPlan, order: Order) -> tuple[str, dict[str, Any]]:
    if order not in ("idle", "hot"):
        raise QueryRejected(f"order must be idle or hot, got {order!r}")
    params: dict[str, Any] = {"top": q.top}
    inner = _per_gpu_bucket(q, p, params)
    direction = "ASC" if order == "idle" else "DESC"  # one of two fixed words, never the caller's text
    sql = (
        "SELECT uuid, argMax(host, bucket) AS host_, argMax(g, bucket) AS g_,\n"
        "    sum(mean_b * n_b) / sum(n_b) AS avg_u, count() * {step:UInt32} / 3600 AS hours,\n"
        "    sum(mean_b) * {step:UInt32} / 360000 AS busy_h,\n"
        "    countIf(mean_b < {thr:Float64}) * {step:UInt32} / 3600 AS idle_h\n"
        f"FROM ({inner})\nGROUP BY uuid\nORDER BY avg_u {direction}, uuid\nLIMIT {{top:UInt32}}"
    )
    return sql, params


def utilization(
    store: Store,
    q: UsageQuery,
    *,
    ctx: SchemaContext = DEFAULT_CTX,
    now: float | None = None,
    max_rows: int = MAX_ROWS,
) -> UsageResult:
    """Average utilization per group per bucket (see the module's rules), one series per group."""
    return series(store, q, "avg", ctx=ctx, now=now, max_rows=max_rows)


def gpu_hours(
    store: Store,
    q: UsageQuery,
    *,
    ctx: SchemaContext = DEFAULT_CTX,
    now: float | None = None,
    max_rows: int = MAX_ROWS,
) -> list[GroupHours]:
    """Allocated, busy and idle GPU-hours per group, most allocated first."""
    p = plan(q, ctx=ctx, now=now)
    fast = _hourly(store, q, p, True)  # with each GPU's totals
    if fast is not None:
        return hourly.hours(q, p, fast, hourly.per_gpu(store, q, p, fast, not store.cluster))
    sql, params = gpu_hours_sql(q, p)
    return [
        GroupHours({q.group_by: g}, float(allocated), float(busy), float(idle), int(gpus))
        for g, allocated, busy, idle, gpus in hourly.read_limited(store, sql, params, max_rows)
    ]


def top_gpus(
    store: Store,
    q: UsageQuery,
    order: Order,
    *,
    ctx: SchemaContext = DEFAULT_CTX,
    now: float | None = None,
) -> list[GpuUsage]:
    """The `q.top` GPUs with the lowest (idle) or highest (hot) average utilization over the range."""
    p = plan(q, ctx=ctx, now=now)
    sql, params = top_gpus_sql(q, p, order)  # checks `order` whichever source answers
    fast = _hourly(store, q, p, True)  # with each GPU's totals
    if fast is not None:
        return hourly.top(q, p, fast, hourly.per_gpu(store, q, p, fast, not store.cluster), order == "hot")
    return [
        GpuUsage(uuid, host, {q.group_by: g}, float(avg), float(hours), float(busy), float(idle))
        for uuid, host, g, avg, hours, busy, idle in hourly.read_limited(store, sql, params, q.top)
    ]


def _hourly(store: Store, q: UsageQuery, p: SeriesPlan, totals: bool = False) -> hourly.Series | None:
    """The series for the per-series hourly tables when the plan reads the 1-hour rollup and they are
    few enough to bind (see `vigil.store.usage_hourly`); None: read the rollup itself. `totals`: with
    each GPU's totals over the range, read beside the lookup (GPU-hours and top GPUs need them)."""
    if p.source is not Resolution.HOUR:
        return None
    if not totals:
        return hourly.series(store, q, p)
    return hourly.series(store, q, p, totals, remember=lambda s: cache_of(store).put(_lookup_key(q, p), s))


def _lookup_key(q: UsageQuery, p: SeriesPlan) -> tuple[Any, ...]:
    """What a series lookup depends on (`usage_hourly.lookup_sql`): the same key, the same lookup."""
    return (METRIC, q.group_by, tuple(sorted(q.filters.items())), p.start)


Measure = Literal["avg", "busy", "allocated"]
MEASURES: dict[str, str] = {
    # per group and bucket, from the per-GPU rows: summing these over groups gives the fleet's figure,
    # which is what a stacked chart shows
    "busy": "sum(mean_b) / 100",  # busy GPUs: each GPU counts its mean utilization as a fraction of one
    "allocated": "toFloat64(count())",  # GPUs that reported
}


def stacked_sql(q: UsageQuery, p: SeriesPlan, measure: Measure) -> tuple[str, dict[str, Any]]:
    if measure not in MEASURES:
        raise QueryRejected(f"measure must be one of avg, {', '.join(MEASURES)}; got {measure!r}")
    params: dict[str, Any] = {}
    inner = _per_gpu_bucket(q, p, params)
    value = MEASURES[measure]
    sql = f"SELECT g, bucket, {value} AS value\nFROM ({inner})\nGROUP BY g, bucket\nORDER BY g, bucket"
    return sql, params


def series(
    store: Store,
    q: UsageQuery,
    measure: Measure = "avg",
    *,
    ctx: SchemaContext = DEFAULT_CTX,
    now: float | None = None,
    max_rows: int = MAX_ROWS,
) -> UsageResult:
    """One series per group: `avg` is `utilization`; `busy` the busy GPUs (the sum of each GPU's mean
    utilization / 100, so busy GPU-hours = its points * step / 3600); `allocated` the GPUs reporting."""
    p = plan(q, ctx=ctx, now=now)
    sql, params = utilization_sql(q, p) if measure == "avg" else stacked_sql(q, p, measure)
    rows = None
    if p.source is Resolution.HOUR:
        single_node = not store.cluster

        def answer(s: hourly.Series) -> list[tuple[str, int, float]]:
            if measure == "avg":
                return hourly.average(store, q, p, s, max_rows, single_node)
            return hourly.stacked(store, p, s, MEASURES[measure], max_rows, single_node)

        # read beside the lookup, from the series this question found last time (`vigil.store.series_cache`)
        rows = speculate(store, _lookup_key(q, p), lambda: _hourly(store, q, p), answer)
    if rows is None:
        rows = hourly.read_limited(store, sql, params, max_rows)
    found: dict[str, UsageSeries] = {}
    for group, bucket, value in rows:
        one = found.get(group)
        if one is None:
            one = found[group] = UsageSeries({q.group_by: group}, [])
        one.points.append((int(bucket), float(value)))
    return UsageResult(list(found.values()), p.step, p.source)


def simulated(store: Store, q: UsageQuery, *, ctx: SchemaContext = DEFAULT_CTX, now: float | None = None) -> bool:
    """Whether any GPU the question reads is simulated (`vigil.simulated=true`), so a page can say so."""
    p = plan(q, ctx=ctx, now=now)
    params: dict[str, Any] = {"metric": METRIC, "uuid_key": GPU_UUID, "sim": SIMULATED, "start": p.start}
    sql = (
        f"SELECT count() FROM {GAUGE_SERIES}\n"
        "WHERE MetricName = {metric:String} AND mapContains(Attributes, {uuid_key:String})\n"
        "    AND ResourceAttributes[{sim:String}] = 'true' AND LastSeen >= toDateTime({start:UInt32}, 'UTC')"
        f"{filter_sql(q.filters, params)}"
    )
    return bool(hourly.read_limited(store, sql, params, 1)[0][0])
