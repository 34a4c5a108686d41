"""Migration 13: gauge rollups of plain, codec-friendly columns in place of opaque aggregate states.

Why: at a 60 s interval the 1-minute rollup holds one row per sample, and its states cost more than
the sample did (measured, 64 GPUs x 30 days: 9.05 bytes per sample, of which `ValueLast` 6.1: an
argMax state carries its nanosecond time as 8 raw bytes that no column codec can see into). The new
tables keep the same answers in columns a codec can read:

- `Sum`, `Count` (avg = sum(Sum) / sum(Count));
- `Extremes`, a map {0: min, 1: -max} merged by `minMap`: both extremes in one stream, so where a bucket
  holds one sample (min = max) the second costs a short repeat, not a second copy of the value;
- `Last`, the max of (nanoseconds into the bucket, value): within a bucket (part of the key, so rows
  merge only within one) the tuple's max is argMax by time, and it merges the same way. The offset
  rather than the time: a series sampled at the same second of every minute repeats one offset, which
  costs nothing, and the value stream keeps the plain value codec (delta coding the pair, so the times
  would cost nothing, made the values 0.14 bytes per sample dearer).

Values want ZSTD's longer match search: on whole-percent utilization ZSTD(15) stored 0.54 bytes per
value against Gorilla + ZSTD(1)'s 0.70 (measured, `vigil_metrics_gauge_1m`'s columns). But ZSTD(15) on
the insert path cost 2.4 times the CPU of ZSTD(3) per inserted row (live batches hold about one point
per series, so each rollup gets as many rows per insert as the raw table), so the value columns take
the default codec (LZ4, cheap) when written, and a TTL rule recompresses parts with ZSTD(15) once
all their buckets are `REST_AFTER_HOURS` old: history at rest is dense, the ingest path stays cheap.

An existing install migrates: new tables (`*_v2`, so every statement stays safe to run again),
the old rows copied once into the still empty tables (their states read exactly: an avg state is
(sum, count), an argMax state (value, time)), then the views switched and the old tables dropped.
As in migration 12, rows that another node inserts between the copy and the new views (a cluster
migrating while it ingests) reach the raw table but not these rollups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vigil.store.columns import ATTRIBUTE_MAP, GAUGE

if TYPE_CHECKING:
    from vigil.store.schema import SchemaContext

ROLLUP_1M, ROLLUP_1H = "vigil_metrics_gauge_1m_v2", "vigil_metrics_gauge_1h_v2"
OLD_ROLLUP_1M, OLD_ROLLUP_1H = "vigil_metrics_gauge_1m", "vigil_metrics_gauge_1h"  # migration 3's

REST_CODEC = "ZSTD(15)"
REST_AFTER_HOURS = 2
TIME_CODEC = "DoubleDelta, ZSTD(1)"
COUNT_CODEC = "T64, ZSTD(1)"
TEXT_CODEC = "ZSTD(3)"

# What each aggregate is over the new rollups' columns; `vigil.store.read.AGGREGATE_SQL` uses these.
ROLLUP_AVG = "sum(Sum) / sum(Count)"
ROLLUP_MIN = "min(Extremes[0])"
ROLLUP_MAX = "-min(Extremes[1])"
ROLLUP_LAST = "argMax(tupleElement(Last, 2), (TimeBucket, Last))"  # across buckets: by bucket, then offset
ROLLUP_COUNT = "sum(Count)"

_BODY = f"""
    MetricName LowCardinality(String),
    ServiceName LowCardinality(String),
    ResourceAttributes {ATTRIBUTE_MAP} CODEC({TEXT_CODEC}),
    Attributes {ATTRIBUTE_MAP} CODEC({TEXT_CODEC}),
    TimeBucket DateTime CODEC({TIME_CODEC}),
    Sum SimpleAggregateFunction(sum, Float64),
    Count SimpleAggregateFunction(sum, UInt64) CODEC({COUNT_CODEC}),
    Extremes SimpleAggregateFunction(minMap, Map(UInt8, Float64)),
    Last SimpleAggregateFunction(max, Tuple(UInt64, Float64))"""
_SERIES = "MetricName, ServiceName, ResourceAttributes, Attributes"
_BUCKET_NS = "toInt64(toUnixTimestamp(TimeBucket)) * 1000000000"

# An old row's states, read as the new columns (ClickHouse's state formats: avg = Float64 sum then
# VarUInt count; argMax = a has-value byte, the Float64 value, a has-value byte, the DateTime64 time).
_COPY = f"""SELECT {_SERIES}, TimeBucket,
    reinterpretAsFloat64(substring(CAST(ValueAvg, 'String'), 1, 8)) AS Sum, Count,
    map(0, ValueMin, 1, -ValueMax) AS Extremes,
    (toUInt64(reinterpretAsInt64(substring(CAST(ValueLast, 'String'), 11, 8)) - {_BUCKET_NS}),
     finalizeAggregation(ValueLast)) AS Last"""


def view_select(ctx: SchemaContext, bucket_fn: str, where: str = "") -> str:
    """The rollup view's SELECT over each inserted block; `where` keeps only some of its rows."""
    return f"""SELECT {_SERIES}, toDateTime({bucket_fn}(TimeUnix)) AS TimeBucket,
    sum(Value) AS Sum, toUInt64(count()) AS Count, map(0, min(Value), 1, -max(Value)) AS Extremes,
    max((toUInt64(toUnixTimestamp64Nano(TimeUnix) - {_BUCKET_NS}), Value)) AS Last
FROM {ctx.storage_name(GAUGE)}{f"{chr(10)}WHERE {where}" if where else ""}
GROUP BY {_SERIES}, TimeBucket"""


def rollup_ttl(days: int) -> str:
    """The rollups' TTL: recompress at rest, drop after `days` (reconciled with the settings as one)."""
    bucket = "toDateTime(TimeBucket)"
    return (
        f"{bucket} + toIntervalDay({days}), "
        f"{bucket} + toIntervalHour({REST_AFTER_HOURS}) RECOMPRESS CODEC({REST_CODEC})"
    )


def _drop(ctx: SchemaContext, kind: str, name: str) -> list[str]:
    names = [name, f"{name}_local"] if ctx.cluster and kind == "TABLE" else [name]
    return [f"DROP {kind} IF EXISTS {n}{ctx.on_cluster} SYNC" for n in names]


def plain_gauge_rollups(ctx: SchemaContext, old_tables: list[str], dedup_window: int) -> list[str]:
    """Migration 13's statements; `old_tables` creates migration 3's rollup tables if they are gone (a
    run interrupted after dropping them), so the copy always has a table to read, maybe empty."""
    plan = (
        (ROLLUP_1M, OLD_ROLLUP_1M, "toStartOfMinute", ctx.rollup_1m_ttl_days),
        (ROLLUP_1H, OLD_ROLLUP_1H, "toStartOfHour", ctx.rollup_1h_ttl_days),
    )
    statements: list[str] = []
    for table, _old, _bucket, days in plan:
        statements += ctx.table(
            table,
            _BODY,
            engine="AggregatingMergeTree",
            partition_by="toYYYYMM(TimeBucket)",
            order_by=f"{_SERIES}, TimeBucket",
            ttl=rollup_ttl(days),
            # recompress within the hour parts that no ordinary merge picks (the default waits 4 h)
            settings=f"index_granularity = 8192, ttl_only_drop_parts = 1, merge_with_recompression_ttl_timeout = 3600, "
            f"non_replicated_deduplication_window = {dedup_window}",
        )
    statements += old_tables
    # Into an empty table only: running again copies nothing twice.
    statements += [
        f"INSERT INTO {table}\n{_COPY}\nFROM {old}\nWHERE (SELECT count() FROM {table}) = 0"
        for table, old, _bucket, _days in plan
    ]
    for table, _old, bucket, _days in plan:
        statements += ctx.materialized_view(f"{table}_mv", table, view_select(ctx, bucket))
    for _table, old, _bucket, _days in plan:
        statements += _drop(ctx, "VIEW", f"{old}_mv")
        statements += _drop(ctx, "TABLE", old)
    return statements
