"""`vigil.store.usage`'s answers at the 1-hour resolution, from the per-series tables (migration 12).

The same rules as `vigil.store.usage` (read its docstring), computed without reading any attribute
map per row: the series table gives each series its GPU, group and host once; the hourly table gives
`Sum` and `Count` per series and hour; a series maps to its GPU (a distinct (uuid, group) pair) and to
its group through `transform` over arrays bound as parameters. The few per-GPU rows come back to
Python, which sums them per group or per GPU.

Per-GPU buckets are one row per (series, hour) read with FINAL when every GPU has one series, the step
is the table's hour and the store is one node (FINAL does not merge rows of one key held by two
shards); otherwise they are grouped per (GPU, bucket) in SQL, which is exact in every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vigil.names import GPU_UTILIZATION, GPU_UUID, HOST_NAME
from vigil.store.client import Store, StoreQueryError
from vigil.store.plan import SeriesPlan
from vigil.store.read import NONE_LABEL, filter_sql
from vigil.store.schema_history import GAUGE_SERIES, ROLLUP_1H_SERIES
from vigil.store.series_names import SeriesNames, names_of

if TYPE_CHECKING:
    from vigil.store.usage import GpuUsage, GroupHours, UsageQuery

MAX_SERIES = 4096  # past it the arrays bound into the SQL grow long: the caller reads the rollup instead
TOTALS_CAP = 2 * MAX_SERIES + 1  # rows of per-series totals read at most (series without a GPU count there too)
HOUR_S = 3600

_GROUP = (
    "if(mapContains(Attributes, {gkey:String}), Attributes[{gkey:String}], "
    "if(mapContains(ResourceAttributes, {gkey:String}), ResourceAttributes[{gkey:String}], {none:String}))"
)


@dataclass(frozen=True)
class Series:
    """The series of a question, indexed: `key[i]` is series i's GPU (1-based), `gpus[k - 1]` that
    GPU's (uuid, group, host), `groups[j - 1]` a group's value and `key_group[k - 1]` a GPU's group."""

    hashes: list[int]
    key: list[int]
    gpus: list[tuple[str, str, str]]
    groups: list[str]
    key_group: list[int]
    totals: dict[int, _Gpu] | None = None  # per GPU key, read with the series (`series(..., totals=True)`)

    @property
    def one_per_gpu(self) -> bool:
        return len(self.gpus) == len(self.hashes)


# The same question must get the same answer twice (the page's chart and its download), but float sums
# depend on their order: threads finish in any order, and a background merge turns an hour's partial rows
# into one. So the hourly rows are read FINAL (merged the same way whether merged yet or not) on one thread.
SAME_ORDER = {"max_threads": 1}


def read_limited(store: Store, sql: str, params: dict[str, Any], max_rows: int) -> list[tuple[Any, ...]]:
    try:
        with store.foreground.reading():
            return store.read_rows(
                sql, params, settings={**SAME_ORDER, "max_result_rows": max_rows, "result_overflow_mode": "throw"}
            )
    except Exception as exc:
        if "TOO_MANY_ROWS" in str(exc) or "Limit for result exceeded" in str(exc):
            raise StoreQueryError(
                f"the answer has more than {max_rows} rows: narrow the range, raise the step or group the series"
            ) from None
        raise StoreQueryError(f"the store failed a read: {exc}") from None


def lookup_sql(q: UsageQuery, p: SeriesPlan, single_node: bool) -> tuple[str, dict[str, Any]]:
    """The GPU series that match `q`'s filters and were seen in its range, one more than `MAX_SERIES` at most.

    On one node the series table is read FINAL, a row per series (its latest, as the table keeps them),
    the range's condition applied after: the same rows as grouping them, in 3.5-4 ms against 6-8 for
    the grouping's planning (256-GPU store, medians). Shards may each hold a row of one series, which
    FINAL does not merge, so a cluster groups them."""
    params: dict[str, Any] = {"metric": GPU_UTILIZATION.name, "uuid_key": GPU_UUID, "host_key": HOST_NAME}
    params |= {"gkey": q.group_by, "none": NONE_LABEL, "start": p.start}
    where = (
        "WHERE MetricName = {metric:String} AND mapContains(Attributes, {uuid_key:String})"
        f"{filter_sql(q.filters, params)}"
    )
    seen = "toDateTime({start:UInt32}, 'UTC')"
    if single_node:
        sql = (
            f"SELECT SeriesHash, Attributes[{{uuid_key:String}}] AS uuid, {_GROUP} AS g,\n"
            "    ResourceAttributes[{host_key:String}] AS host, LastSeen AS seen\n"
            f"FROM {GAUGE_SERIES} FINAL\n{where} AND LastSeen >= {seen}\nORDER BY SeriesHash\n"
            "LIMIT {over:UInt32}"
        )
    else:
        sql = (
            f"SELECT SeriesHash, any(Attributes[{{uuid_key:String}}]) AS uuid, any({_GROUP}) AS g,\n"
            "    any(ResourceAttributes[{host_key:String}]) AS host, max(LastSeen) AS seen\n"
            f"FROM {GAUGE_SERIES}\n{where}\n"
            f"GROUP BY SeriesHash HAVING seen >= {seen}\nORDER BY SeriesHash\nLIMIT {{over:UInt32}}"
        )
    params["over"] = MAX_SERIES + 1  # one more than may be bound: enough to tell there are too many
    return sql, params


def series(
    store: Store,
    q: UsageQuery,
    p: SeriesPlan,
    totals: bool = False,
    remember: Callable[[Series | None], None] | None = None,
) -> Series | None:
    """The GPU series that match `q`'s filters and were seen in its range; None past `MAX_SERIES`.

    `totals`: each series' hourly totals over the range too (`per_gpu`'s numbers when every GPU has one
    series, the step is the table's hour and the store is one node), and then only the series with rows
    in the range, as the rollup counts them. On one node a question without filters reads its totals
    alone once its grouping's series are named (`_named`); otherwise, or where that cannot answer, the
    lookup is read beside the totals (`Store.read_together`): each query pays a few milliseconds of
    planning before it reads a row, so the two at once cost about the longer of them.
    `remember`: hears the lookup's own series whenever the lookup is read (the average's speculation).
    """
    lookup, params = lookup_sql(q, p, not store.cluster)
    names = names_of(store) if not store.cluster else None  # only one node reads totals by name
    if not (totals and names is not None and p.step == HOUR_S):
        rows = read_limited(store, lookup, params, MAX_SERIES + 1)
        _remember(names, q, rows)
        return _indexed(rows, None) if len(rows) <= MAX_SERIES else None
    sums_sql, sums_params = _totals_sql(lookup, q, p, params)

    def read_lookup() -> list[tuple[Any, ...]]:
        return read_limited(store, lookup, params, MAX_SERIES + 1)

    def read_sums() -> list[tuple[Any, ...]]:
        return read_limited(store, sums_sql, sums_params, TOTALS_CAP)

    if not q.filters and names.knows(GPU_UTILIZATION.name, q.group_by):
        sums = read_sums()
        found = {int(row[0]): row[1:] for row in sums}
        named = _named(store, q, found, names) if len(sums) < TOTALS_CAP else None
        if named is not None:
            return named
        rows = read_lookup()  # the totals are read already
    else:
        rows, sums = store.read_together([read_lookup, read_sums])
        found = {int(row[0]): row[1:] for row in sums}
    _remember(names, q, rows)
    if remember is not None:
        remember(_indexed(rows, None) if len(rows) <= MAX_SERIES else None)
    if len(rows) > MAX_SERIES:
        return None
    if len(sums) >= TOTALS_CAP:  # series the lookup does not name (no gpu.uuid) filled the cap: read per GPU
        return _indexed(rows, None)
    return _indexed([row for row in rows if int(row[0]) in found], found)


def _remember(names: SeriesNames | None, q: UsageQuery, lookup_rows: list[tuple[Any, ...]]) -> None:
    """Remember what the lookup's series are (hash, uuid, group, host, seen): true of their hashes for good."""
    if names is not None:
        names.put(GPU_UTILIZATION.name, q.group_by, [(int(r[0]), (r[1], r[2], r[3])) for r in lookup_rows])


def _named(store: Store, q: UsageQuery, sums: dict[int, tuple[Any, ...]], names: SeriesNames) -> Series | None:
    """`series(..., totals=True)` of a question without filters from its totals alone: each series with
    rows in the range named from `names` (`vigil.store.series_names`), those not named yet looked up by
    their hashes. The same `Series`, in the same order, as the lookup beside the totals gives, as both
    keep the series with rows in the range (`sums`, by hash, under their cap). None where the lookup
    must answer: most of the series not named (a lookup costs what naming them would), more than `MAX_SERIES` GPU
    series, or a GPU with several series (the lookup picks the host of its latest)."""
    metric = GPU_UTILIZATION.name
    hashes = sorted(sums)  # the lookup's order
    known = names.get(metric, q.group_by, hashes)
    missing = [h for h in hashes if h not in known]
    if len(missing) > len(hashes) // 2:
        return None
    if missing:
        sql = (
            f"SELECT SeriesHash, mapContains(Attributes, {{uuid_key:String}}), Attributes[{{uuid_key:String}}],\n"
            f"    {_GROUP}, ResourceAttributes[{{host_key:String}}]\n"
            f"FROM {GAUGE_SERIES}\nWHERE MetricName = {{metric:String}} AND SeriesHash IN {{h:Array(UInt64)}}\n"
            "LIMIT 1 BY SeriesHash"  # unmerged rows of one hash hold the same maps: one will do
        )
        params = {"metric": metric, "uuid_key": GPU_UUID, "host_key": HOST_NAME, "gkey": q.group_by, "none": NONE_LABEL}
        rows = read_limited(store, sql, {**params, "h": missing}, len(missing))
        found = {int(h): ((uuid, g, host) if has else None) for h, has, uuid, g, host in rows}
        names.put(metric, q.group_by, list(found.items()))
        known |= found
    named = [(h, *name, 0) for h in hashes if (name := known.get(h)) is not None]
    if len(named) > MAX_SERIES:
        return None
    s = _indexed(named, sums)
    return s if s.one_per_gpu else None


def _indexed(rows: list[tuple[Any, ...]], sums: dict[int, tuple[Any, ...]] | None) -> Series:
    """The lookup's rows indexed as `Series` says; `sums`: each series' totals by its hash, when read."""
    hashes, key, gpus, groups, key_group = [], [], [], [], []
    gpu_index: dict[tuple[str, str], int] = {}
    group_index: dict[str, int] = {}
    latest: dict[int, Any] = {}
    found: dict[int, _Gpu] = {}
    for series_hash, uuid, group, host, seen in rows:
        j = group_index.setdefault(group, len(group_index) + 1)
        if j > len(groups):
            groups.append(group)
        k = gpu_index.setdefault((uuid, group), len(gpu_index) + 1)
        if k > len(gpus):
            gpus.append((uuid, group, host))
            key_group.append(j)
        elif seen > latest[k]:  # the host of a GPU's latest series
            gpus[k - 1] = (uuid, group, host)
        latest[k] = max(seen, latest.get(k, seen))
        hashes.append(int(series_hash))
        key.append(k)
        mine = sums.get(int(series_hash)) if sums is not None else None
        if mine:  # a series with rows in the range
            n, busy, idle, vsum, samples, last = mine
            found[k] = _Gpu(int(n), float(busy), int(idle), float(vsum), int(samples), int(last))
    return Series(hashes, key, gpus, groups, key_group, found if sums is not None else None)


def _totals_sql(lookup: str, q: UsageQuery, p: SeriesPlan, lookup_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Each series' totals over the range: the columns `per_gpu` reads, computed as its
    one-row-per-(series, hour) path computes them (FINAL rows, in the table's order; the samples' sum
    from `Sum` itself and the latest hour converted once, where a mean times its count and a conversion
    per row cost a millisecond of the read). Without filters it reads every series of the metric and
    the caller keeps the lookup's; with them only the lookup's."""
    params = {**lookup_params, "end": p.end, "thr": float(q.idle_threshold), "cap": TOTALS_CAP}
    only = f"\n    AND SeriesHash IN (SELECT SeriesHash FROM ({lookup}))" if q.filters else ""
    sql = (
        "SELECT SeriesHash, count() AS n, sum(Sum / Count) AS busy, countIf(Sum / Count < {thr:Float64}) AS idle,\n"
        "    sum(Sum) AS vsum, sum(Count) AS samples, toUnixTimestamp(max(TimeBucket)) AS last\n"
        f"FROM {ROLLUP_1H_SERIES} FINAL\n"
        "WHERE MetricName = {metric:String}\n"
        "    AND TimeBucket >= toDateTime({start:UInt32}, 'UTC') AND TimeBucket < toDateTime({end:UInt32}, 'UTC')"
        f"{only}\nGROUP BY SeriesHash\nLIMIT {{cap:UInt32}}"
    )
    return sql, params


def _span(p: SeriesPlan, s: Series, params: dict[str, Any]) -> str:
    params |= {"metric": GPU_UTILIZATION.name, "start": p.start, "end": p.end, "step": p.step}
    params |= {"h": s.hashes, "k": s.key}
    return (
        f"FROM {ROLLUP_1H_SERIES}{{final}}\n"
        "WHERE MetricName = {metric:String} AND SeriesHash IN {h:Array(UInt64)}\n"
        "    AND TimeBucket >= toDateTime({start:UInt32}, 'UTC') AND TimeBucket < toDateTime({end:UInt32}, 'UTC')"
    )


def _per_gpu_bucket(p: SeriesPlan, s: Series, params: dict[str, Any], single_node: bool) -> str:
    """One row per GPU and bucket with data: `k`, `bucket`, its mean `mean_b`, sample count `n_b` and
    sample sum `s_b`."""
    span = _span(p, s, params)
    gpu = "transform(SeriesHash, {h:Array(UInt64)}, {k:Array(UInt32)}, toUInt32(0))"
    if single_node and s.one_per_gpu and p.step == HOUR_S:
        # a (series, hour) row is a (GPU, bucket) once FINAL has summed its unmerged parts
        return (
            f"SELECT {gpu} AS k, toUnixTimestamp(TimeBucket) AS bucket,\n"
            "    Sum / Count AS mean_b, Count AS n_b, Sum AS s_b\n" + span.replace("{final}", " FINAL")
        )
    bucket = "intDiv(toUnixTimestamp(TimeBucket), {step:UInt32}) * {step:UInt32}"
    return (
        f"SELECT {gpu} AS k, {bucket} AS bucket, sum(Sum) / sum(Count) AS mean_b, sum(Count) AS n_b, sum(Sum) AS s_b\n"
        + span.replace("{final}", " FINAL" if single_node else "")
        + "\nGROUP BY k, bucket"
    )


def average(
    store: Store, q: UsageQuery, p: SeriesPlan, s: Series, max_rows: int, single_node: bool
) -> list[tuple[str, int, float]]:
    """(group, bucket, mean of the group's samples) in group then time order."""
    params: dict[str, Any] = {"g": [s.key_group[k - 1] for k in s.key]}
    span = _span(p, s, params).replace("{final}", " FINAL" if single_node else "")
    # at the table's own hour the bucket is the stored column: no arithmetic per row before grouping
    key = "TimeBucket" if p.step == HOUR_S else "intDiv(toUnixTimestamp(TimeBucket), {step:UInt32}) * {step:UInt32}"
    sql = (
        "SELECT transform(SeriesHash, {h:Array(UInt64)}, {g:Array(UInt32)}, toUInt32(0)) AS gi,\n"
        f"    toUnixTimestamp({key}) AS bucket, sum(Sum) / sum(Count)\n"
        f"{span}\nGROUP BY gi, {key}\nORDER BY gi, {key}"
    )
    rows = read_limited(store, sql, params, max_rows)
    return sorted(((s.groups[gi - 1], int(b), float(v)) for gi, b, v in rows), key=lambda r: (r[0], r[1]))


def stacked(
    store: Store, p: SeriesPlan, s: Series, value: str, max_rows: int, single_node: bool
) -> list[tuple[str, int, float]]:
    """(group, bucket, `value` over the group's per-GPU rows there), e.g. `sum(mean_b) / 100`."""
    params: dict[str, Any] = {"ks": list(range(1, len(s.gpus) + 1)), "kg": s.key_group}
    inner = _per_gpu_bucket(p, s, params, single_node)
    sql = (
        "SELECT transform(k, {ks:Array(UInt32)}, {kg:Array(UInt32)}, toUInt32(0)) AS gi, bucket, "
        f"{value} AS value\nFROM ({inner})\nGROUP BY gi, bucket\nORDER BY gi, bucket"
    )
    rows = read_limited(store, sql, params, max_rows)
    return sorted(((s.groups[gi - 1], int(b), float(v)) for gi, b, v in rows), key=lambda r: (r[0], r[1]))


@dataclass
class _Gpu:
    buckets: int = 0
    busy: float = 0.0  # sum of bucket means, %
    idle: int = 0
    value_sum: float = 0.0  # sum of samples
    samples: int = 0
    last: int = -1


def per_gpu(store: Store, q: UsageQuery, p: SeriesPlan, s: Series, single_node: bool) -> dict[int, _Gpu]:
    """Each GPU key's buckets, busy and idle buckets, sample sum and count, and latest bucket."""
    if s.totals is not None and single_node and s.one_per_gpu and p.step == HOUR_S:
        return s.totals  # read with the series: the same numbers as the query below
    params: dict[str, Any] = {"thr": float(q.idle_threshold)}
    inner = _per_gpu_bucket(p, s, params, single_node)
    sql = (
        "SELECT k, count(), sum(mean_b), countIf(mean_b < {thr:Float64}), sum(s_b), sum(n_b), max(bucket)\n"
        f"FROM ({inner})\nGROUP BY k"
    )
    return {
        int(k): _Gpu(int(n), float(busy), int(idle), float(vsum), int(samples), int(last))
        for k, n, busy, idle, vsum, samples, last in read_limited(store, sql, params, len(s.gpus) + 1)
    }


def hours(q: UsageQuery, p: SeriesPlan, s: Series, found: dict[int, _Gpu]) -> list[GroupHours]:
    from vigil.store.usage import GroupHours

    per_group: dict[str, list[Any]] = {}
    for k, g in sorted(found.items()):  # one order, so Python's float sums come out the same each time
        uuid, group, _ = s.gpus[k - 1]
        acc = per_group.setdefault(group, [0, 0.0, 0, set()])
        acc[0] += g.buckets
        acc[1] += g.busy
        acc[2] += g.idle
        acc[3].add(uuid)
    out = [
        GroupHours({q.group_by: group}, n * p.step / HOUR_S, busy * p.step / 360000, idle * p.step / HOUR_S, len(uuids))
        for group, (n, busy, idle, uuids) in per_group.items()
    ]
    return sorted(out, key=lambda h: (-h.allocated_h, h.labels[q.group_by]))


def top(q: UsageQuery, p: SeriesPlan, s: Series, found: dict[int, _Gpu], descending: bool) -> list[GpuUsage]:
    from vigil.store.usage import GpuUsage

    per_uuid: dict[str, list[Any]] = {}
    for k, g in sorted(found.items()):
        uuid, group, host = s.gpus[k - 1]
        acc = per_uuid.setdefault(uuid, [0, 0.0, 0, 0.0, 0, -1, group, host])
        acc[0] += g.buckets
        acc[1] += g.busy
        acc[2] += g.idle
        acc[3] += g.value_sum
        acc[4] += g.samples
        if g.last > acc[5]:
            acc[5], acc[6], acc[7] = g.last, group, host
    gpus = [
        GpuUsage(
            uuid,
            host,
            {q.group_by: group},
            vsum / samples,
            n * p.step / HOUR_S,
            busy * p.step / 360000,
            idle * p.step / HOUR_S,
        )
        for uuid, (n, busy, idle, vsum, samples, _, group, host) in per_uuid.items()
        if samples
    ]
    sign = -1.0 if descending else 1.0
    return sorted(gpus, key=lambda g: (sign * g.avg_utilization, g.uuid))[: q.top]
