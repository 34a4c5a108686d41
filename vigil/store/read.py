"""The reads services share: latest value per GPU, and a gauge series over a range at a step.

Every value a caller passes (metric names, label keys and values, times) is bound as a
`{name:Type}` parameter; the only identifiers in the SQL are table names from `Resolution`
and the fixed column names below. The SQL builders are pure, so tests read the SQL they make.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.names import GPU_INDEX, GPU_UUID, HOST_NAME
from vigil.store.client import Store, StoreQueryError
from vigil.store.columns import GAUGE, SUM
from vigil.store.plan import QueryRejected, Resolution, SeriesPlan, plan_series
from vigil.store.schema import SchemaContext
from vigil.store.schema_rollups import ROLLUP_AVG, ROLLUP_COUNT, ROLLUP_LAST, ROLLUP_MAX, ROLLUP_MIN

NONE_LABEL = "(none)"  # the group of series that lack a grouping attribute: kept, never dropped
GPU_MIG_UUID = "gpu.mig.uuid"  # set by the agent on MIG instances, beside their parent's gpu.uuid
MAX_ROWS = 1_000_000  # per read; past it the store stops the query and the caller gets a clear error
MAX_LABELS = 16
_LATEST_TABLES = (GAUGE, SUM)  # tables whose points have one `Value` to take the latest of

# What each aggregate is over raw rows and over a rollup's mergeable columns: the same answer.
AGGREGATE_SQL: dict[str, tuple[str, str]] = {
    "avg": ("avg(Value)", ROLLUP_AVG),
    "min": ("min(Value)", ROLLUP_MIN),
    "max": ("max(Value)", ROLLUP_MAX),
    "last": ("argMax(Value, TimeUnix)", ROLLUP_LAST),
    "count": ("toFloat64(count())", f"toFloat64({ROLLUP_COUNT})"),
}
AGGREGATES = tuple(AGGREGATE_SQL)


@dataclass(frozen=True)
class SeriesQuery:
    """A gauge metric over [start, end) (unix seconds) at `step` seconds.

    `filters` keep points whose attribute or resource attribute `key` equals the value.
    `group_by` names attribute keys (point first, then resource) to aggregate series into; empty
    keeps every series apart, labelled with all its attributes. `source` forces raw or a rollup.
    """

    metric: str
    start: int
    end: int
    step: int
    aggregate: str = "avg"
    filters: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    source: Resolution | None = None


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[int, float]]  # (bucket start, unix seconds; value), in time order


@dataclass(frozen=True)
class SeriesResult:
    series: list[Series]
    step: int
    source: Resolution


@dataclass(frozen=True)
class GpuLatest:
    """One GPU (or MIG instance: `mig_uuid` set) with the latest value of each metric asked for."""

    uuid: str
    mig_uuid: str
    resource: dict[str, str]  # host.name, team, k8s.cluster.name, vigil.simulated, ...
    attributes: dict[str, str]  # gpu.index, gpu.model, ... of its most recent point
    values: dict[str, float]
    time_ns: int  # of its most recent point


def check_labels(kind: str, keys: Sequence[str]) -> None:
    if len(keys) > MAX_LABELS:
        raise QueryRejected(f"at most {MAX_LABELS} {kind} per read, got {len(keys)}")
    if any(not key for key in keys):
        raise QueryRejected(f"{kind}: an attribute key must not be empty")


def filter_sql(filters: Mapping[str, str], params: dict[str, Any]) -> str:
    clauses = []
    for i, (key, value) in enumerate(sorted(filters.items())):
        params[f"fk{i}"], params[f"fv{i}"] = key, value
        clauses.append(
            f" AND (Attributes[{{fk{i}:String}}] = {{fv{i}:String}}"
            f" OR ResourceAttributes[{{fk{i}:String}}] = {{fv{i}:String}})"
        )
    return "".join(clauses)


def series_sql(query: SeriesQuery, plan: SeriesPlan) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of one series read."""
    if query.aggregate not in AGGREGATE_SQL:
        raise QueryRejected(f"aggregate {query.aggregate!r} is not one of {', '.join(AGGREGATES)}")
    if not query.metric:
        raise QueryRejected("metric must not be empty")
    check_labels("group_by keys", query.group_by)
    check_labels("filters", list(query.filters))
    raw = plan.source is Resolution.RAW
    params: dict[str, Any] = {"metric": query.metric, "step": plan.step, "none": NONE_LABEL}
    if raw:
        time_col = "TimeUnix"
        params |= {"start": plan.start * 10**9, "end": plan.end * 10**9}
        range_sql = (
            "TimeUnix >= fromUnixTimestamp64Nano({start:Int64}) AND TimeUnix < fromUnixTimestamp64Nano({end:Int64})"
        )
    else:
        time_col = "TimeBucket"
        params |= {"start": plan.start, "end": plan.end}
        range_sql = "TimeBucket >= toDateTime({start:UInt32}, 'UTC') AND TimeBucket < toDateTime({end:UInt32}, 'UTC')"
    if query.group_by:
        labels = []
        for i, key in enumerate(query.group_by):
            params[f"g{i}"] = key
            labels.append(
                f"if(mapContains(Attributes, {{g{i}:String}}), Attributes[{{g{i}:String}}], "
                f"if(mapContains(ResourceAttributes, {{g{i}:String}}), ResourceAttributes[{{g{i}:String}}], "
                f"{{none:String}})) AS g{i}"
            )
        names = ", ".join(f"g{i}" for i in range(len(query.group_by)))
    else:
        labels = ["ResourceAttributes AS resource", "Attributes AS attributes"]
        names = "resource, attributes"
    value = AGGREGATE_SQL[query.aggregate][0 if raw else 1]
    sql = (
        f"SELECT {', '.join(labels)},\n"
        f"    intDiv(toUnixTimestamp({time_col}), {{step:UInt32}}) * {{step:UInt32}} AS bucket, {value} AS value\n"
        f"FROM {plan.source.table}\n"
        f"WHERE MetricName = {{metric:String}} AND {range_sql}{filter_sql(query.filters, params)}\n"
        f"GROUP BY {names}, bucket\nORDER BY {names}, bucket"
    )
    return sql, params


def _limited(max_rows: int) -> dict[str, Any]:
    return {"max_result_rows": max_rows, "result_overflow_mode": "throw"}


def run_limited(store: Store, sql: str, params: dict[str, Any], max_rows: int) -> list[tuple[Any, ...]]:
    """Rows of a read, stopped by the store past `max_rows`; a failure becomes a StoreQueryError."""
    try:
        return store.query_rows(sql, params, settings=_limited(max_rows))
    except Exception as exc:
        if "TOO_MANY_ROWS" in str(exc) or "Limit for result exceeded" in str(exc):
            raise StoreQueryError(
                f"the answer has more than {max_rows} rows: narrow the range, raise the step or group the series"
            ) from None
        raise StoreQueryError(f"the store failed a read: {exc}") from None


def read_series(
    store: Store, query: SeriesQuery, ctx: SchemaContext, now: float, *, max_rows: int = MAX_ROWS
) -> SeriesResult:
    """One gauge metric over a range, from the source `plan_series` chooses."""
    plan = plan_series(query.start, query.end, query.step, now, ctx, source=query.source)
    sql, params = series_sql(query, plan)
    series: dict[tuple[Any, ...], Series] = {}
    width = len(query.group_by) or 2
    for row in run_limited(store, sql, params, max_rows):
        labels, bucket, value = row[:width], row[width], row[width + 1]
        key = tuple(tuple(sorted(v.items())) if isinstance(v, dict) else v for v in labels)
        found = series.get(key)
        if found is None:
            # Without grouping a series is labelled by all its attributes; a point's wins over the resource's.
            named = dict(zip(query.group_by, labels, strict=True)) if query.group_by else {**labels[0], **labels[1]}
            found = series[key] = Series(named, [])
        found.points.append((int(bucket), float(value)))
    return SeriesResult(list(series.values()), plan.step, plan.source)


def _latest_where(
    metrics: Sequence[str], since_ns: int, until_ns: int, filters: Mapping[str, str], table: str
) -> tuple[str, dict[str, Any]]:
    if table not in _LATEST_TABLES:
        raise QueryRejected(f"latest values come from {' or '.join(_LATEST_TABLES)}, not {table!r}")
    if not metrics or any(not m for m in metrics):
        raise QueryRejected("name at least one metric, none of them empty")
    check_labels("filters", list(filters))
    params: dict[str, Any] = {
        "metrics": list(metrics),
        "since": since_ns,
        "until": until_ns,
        "uuid_key": GPU_UUID,
        "mig_key": GPU_MIG_UUID,
    }
    where = (
        f"FROM {table}\n"
        "WHERE MetricName IN {metrics:Array(String)} AND mapContains(Attributes, {uuid_key:String})\n"
        "    AND TimeUnix >= fromUnixTimestamp64Nano({since:Int64})\n"
        "    AND TimeUnix <= fromUnixTimestamp64Nano({until:Int64})"
        f"{filter_sql(filters, params)}"
    )
    return where, params


_GPU_KEY = "SELECT Attributes[{uuid_key:String}] AS uuid, Attributes[{mig_key:String}] AS mig"


def latest_sql(
    metrics: Sequence[str], since_ns: int, until_ns: int, filters: Mapping[str, str], table: str = GAUGE
) -> tuple[str, dict[str, Any]]:
    """The SQL of `latest_per_gpu`'s values: per GPU, MIG instance and metric, the newest value and its time.

    No attribute map is aggregated here: taking the newest of a map per row copied both maps on every
    row of the window (points come in time order within a series), which was most of the read's cost."""
    where, params = _latest_where(metrics, since_ns, until_ns, filters, table)
    sql = (
        f"{_GPU_KEY}, MetricName, argMax(Value, TimeUnix), toUnixTimestamp64Nano(max(TimeUnix))\n"
        f"{where}\nGROUP BY uuid, mig, MetricName"
    )
    return sql, params


def identity_sql(
    keys: Sequence[tuple[str, str, int]],
    metrics: Sequence[str],
    since_ns: int,
    until_ns: int,
    filters: Mapping[str, str],
    table: str = GAUGE,
) -> tuple[str, dict[str, Any]]:
    """The SQL of the maps of each GPU's newest point, `keys` being (gpu.uuid, gpu.mig.uuid, time in ns).

    One row per GPU: of the points at its newest time, the one with the fewest attributes (the GPU's own
    labels, not a metric's extra `reason` or `xid`), then by metric name, so the answer is deterministic."""
    where, params = _latest_where(metrics, since_ns, until_ns, filters, table)
    params["keys"] = [tuple(k) for k in keys]
    sql = (
        f"{_GPU_KEY}, ResourceAttributes, Attributes\n{where}\n"
        "    AND (uuid, mig, toUnixTimestamp64Nano(TimeUnix)) IN {keys:Array(Tuple(String, String, Int64))}\n"
        "ORDER BY uuid, mig, length(Attributes), MetricName\nLIMIT 1 BY uuid, mig"
    )
    return sql, params


IDENTITY_KEYS_PER_READ = 5_000  # keys bound per identity read: keeps a query's parameters well under 1 MB


def _gpu_order(gpu: GpuLatest) -> tuple[str, int, str, str]:
    index = gpu.attributes.get(GPU_INDEX, "")
    return gpu.resource.get(HOST_NAME, ""), int(index) if index.isdigit() else -1, gpu.uuid, gpu.mig_uuid


def latest_per_gpu(
    store: Store,
    metrics: Sequence[str],
    now: float,
    *,
    window_s: float = 120.0,
    filters: Mapping[str, str] | None = None,
    table: str = GAUGE,
    max_rows: int = MAX_ROWS,
) -> list[GpuLatest]:
    """Each GPU that reported any of `metrics` in the last `window_s` seconds, keyed by `gpu.uuid`
    (a MIG instance apart from its parent), ordered by host and GPU index.

    A metric with more labels than the GPU's own (say, one series per throttle reason) gives the
    value of whichever of its series reported last; filter on the label to pick one. The GPU's
    resource and attributes are those of its newest point (`identity_sql`), read once per GPU.
    """
    until_ns = int(now * 10**9)
    since_ns = until_ns - int(window_s * 10**9)
    sql, params = latest_sql(metrics, since_ns, until_ns, filters or {}, table)
    values: dict[tuple[str, str], dict[str, float]] = {}
    newest: dict[tuple[str, str], int] = {}
    for uuid, mig, metric, value, time_ns in run_limited(store, sql, params, max_rows):
        values.setdefault((uuid, mig), {})[metric] = float(value)
        newest[(uuid, mig)] = max(newest.get((uuid, mig), 0), int(time_ns))
    keys = [(uuid, mig, t) for (uuid, mig), t in newest.items()]
    identity: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {}
    for i in range(0, len(keys), IDENTITY_KEYS_PER_READ):
        sql, params = identity_sql(
            keys[i : i + IDENTITY_KEYS_PER_READ], metrics, since_ns, until_ns, filters or {}, table
        )
        for uuid, mig, resource, attributes in run_limited(store, sql, params, max_rows):
            identity[(uuid, mig)] = (dict(resource), dict(attributes))
    gpus = []
    for key, time_ns in newest.items():
        # A GPU whose newest point went between the two reads (a TTL drop) keeps its values, unlabelled.
        resource, attributes = identity.get(key, ({}, {}))
        gpus.append(GpuLatest(key[0], key[1], resource, attributes, values[key], time_ns))
    return sorted(gpus, key=_gpu_order)
