"""Migration 12: tables for fast history reads, and codecs that make gauge samples smaller on disk.

Why the series tables: the gauge rollups keep each row's attribute maps, and reading those maps was
most of a history query's time (30 days of 256 GPUs at 1 h: 184 k rows, ~50 ms of map reads before
any arithmetic). Here the maps are stored once per series, and the hourly numbers per series
without them:

- `vigil_metrics_gauge_series`: one row per series (`SeriesHash` = cityHash64 of its resource
  and point attributes) with its maps and the last hour it was seen; ReplacingMergeTree on LastSeen.
- `vigil_metrics_gauge_1h_series`: per series and hour, `Sum` and `Count` of its samples, ordered by
  series then time; SummingMergeTree, so merges keep one row per series and hour.

Both are filled by views on the raw gauge table, like the rollups. For an existing install the
migration copies the hourly rollup's history into them first (`Sum` = its average times its count).
That copy runs before the views exist and only into an empty table, so running the migration again
does not count a row twice; rows inserted by another node between the copy and the views (a cluster
migrating while it ingests) reach the rollups but not these tables.

The codecs: times at a fixed interval cost nearly nothing under DoubleDelta; values change by small
steps, which Gorilla's XOR encoding shortens before ZSTD; counts are small integers (T64); strings and
attribute maps, the same row after row in key order, want ZSTD(3)'s longer match search.
`ALTER ... MODIFY COLUMN ... CODEC` keeps names and types (the raw tables stay the
OTel exporter's) and applies to parts written or merged from then on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vigil.store.columns import ATTRIBUTE_MAP, GAUGE, METRIC_TABLES, table_columns

if TYPE_CHECKING:
    from vigil.store.schema import SchemaContext

GAUGE_SERIES, ROLLUP_1H_SERIES = "vigil_metrics_gauge_series", "vigil_metrics_gauge_1h_series"
GAUGE_HISTORY = (GAUGE_SERIES, ROLLUP_1H_SERIES)  # derived from the gauge table, as the rollups are
SERIES_HASH = "cityHash64(ResourceAttributes, Attributes)"  # the one definition; readers join on it
_SOURCE_1H = "vigil_metrics_gauge_1h"  # the hourly gauge rollup (migration 3), history's source to copy

TIME_CODEC = "DoubleDelta, ZSTD(1)"
VALUE_CODEC = "Gorilla, ZSTD(1)"
COUNT_CODEC = "T64, ZSTD(1)"
# Strings and maps repeat row after row in key order; ZSTD(1)'s short match search left ~4.7 bytes per
# sample in the two attribute maps (measured), ZSTD(3) ~0.09. Aggregate states are opaque bytes to the
# column codecs, so they get the same.
TEXT_CODEC = "ZSTD(3)"
_TIMES = ("StartTimeUnix", "TimeUnix")
_VALUES = ("Value", "Sum", "Min", "Max")

ROLLUP_CODECS: tuple[tuple[str, str, str], ...] = (
    ("ResourceAttributes", ATTRIBUTE_MAP, TEXT_CODEC),
    ("Attributes", ATTRIBUTE_MAP, TEXT_CODEC),
    ("TimeBucket", "DateTime", TIME_CODEC),
    ("ValueAvg", "AggregateFunction(avg, Float64)", TEXT_CODEC),
    ("ValueMin", "SimpleAggregateFunction(min, Float64)", VALUE_CODEC),
    ("ValueMax", "SimpleAggregateFunction(max, Float64)", VALUE_CODEC),
    ("ValueLast", "AggregateFunction(argMax, Float64, DateTime64(9))", TEXT_CODEC),
    ("Count", "SimpleAggregateFunction(sum, UInt64)", COUNT_CODEC),
)


def raw_codecs(table: str) -> tuple[tuple[str, str, str], ...]:
    """(column, type, codec) for an exporter table: the same names and types, other codecs."""
    out = []
    for column in table_columns(table):
        if column.fields:  # Nested: rare (exemplars, quantiles), left as they are
            continue
        if column.name in _TIMES:
            out.append((column.name, column.type, TIME_CODEC))
        elif column.name in _VALUES and column.type == "Float64":
            out.append((column.name, column.type, VALUE_CODEC))
        elif column.type in ("String", ATTRIBUTE_MAP):
            out.append((column.name, column.type, TEXT_CODEC))
    return tuple(out)


def ttl(column: str, days: int) -> str:
    return f"toDateTime({column}) + toIntervalDay({days})"


def _codecs(ctx: SchemaContext, table: str, columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    local = ctx.storage_name(table)
    changes = ",\n    ".join(f"MODIFY COLUMN {name} {type_} CODEC({codec})" for name, type_, codec in columns)
    return [f"ALTER TABLE {local}{ctx.on_cluster}\n    {changes}"]


def m012_history_series(ctx: SchemaContext) -> list[str]:
    settings = "index_granularity = 8192, ttl_only_drop_parts = 1"
    series = ctx.table(
        GAUGE_SERIES,
        f"""
    MetricName LowCardinality(String),
    SeriesHash UInt64,
    ResourceAttributes {ATTRIBUTE_MAP} CODEC({TEXT_CODEC}),
    Attributes {ATTRIBUTE_MAP} CODEC({TEXT_CODEC}),
    LastSeen DateTime""",
        engine="ReplacingMergeTree",
        engine_args="LastSeen",
        order_by="MetricName, SeriesHash",
        ttl=ttl("LastSeen", ctx.rollup_1h_ttl_days),
        settings=settings,
    )
    hourly = ctx.table(
        ROLLUP_1H_SERIES,
        f"""
    MetricName LowCardinality(String),
    SeriesHash UInt64,
    TimeBucket DateTime CODEC({TIME_CODEC}),
    Sum Float64 CODEC({VALUE_CODEC}),
    Count UInt64 CODEC({COUNT_CODEC})""",
        engine="SummingMergeTree",
        engine_args="(Sum, Count)",
        partition_by="toYYYYMM(TimeBucket)",
        order_by="MetricName, SeriesHash, TimeBucket",
        ttl=ttl("TimeBucket", ctx.rollup_1h_ttl_days),
        settings=settings,
    )
    # Copy what the hourly rollup already holds, into empty tables only (see the module's note).
    copy_series = (
        f"INSERT INTO {GAUGE_SERIES} SELECT MetricName, {SERIES_HASH}, ResourceAttributes, Attributes, "
        f"max(TimeBucket)\nFROM {_SOURCE_1H}\nWHERE (SELECT count() FROM {GAUGE_SERIES}) = 0\n"
        "GROUP BY MetricName, ResourceAttributes, Attributes"
    )
    copy_hourly = (
        f"INSERT INTO {ROLLUP_1H_SERIES} SELECT MetricName, {SERIES_HASH}, TimeBucket, "
        f"avgMerge(ValueAvg) * sum(Count), sum(Count)\nFROM {_SOURCE_1H}\n"
        f"WHERE (SELECT count() FROM {ROLLUP_1H_SERIES}) = 0\n"
        "GROUP BY MetricName, ResourceAttributes, Attributes, TimeBucket"
    )
    source = ctx.storage_name(GAUGE)
    views = [
        *ctx.materialized_view(
            f"{GAUGE_SERIES}_mv",
            GAUGE_SERIES,
            f"SELECT MetricName, {SERIES_HASH} AS SeriesHash, ResourceAttributes, Attributes,\n"
            "    toDateTime(toStartOfHour(max(TimeUnix))) AS LastSeen\n"
            f"FROM {source}\nGROUP BY MetricName, ResourceAttributes, Attributes",
        ),
        *ctx.materialized_view(
            f"{ROLLUP_1H_SERIES}_mv",
            ROLLUP_1H_SERIES,
            f"SELECT MetricName, {SERIES_HASH} AS SeriesHash, toDateTime(toStartOfHour(TimeUnix)) AS TimeBucket,\n"
            "    sum(Value) AS Sum, toUInt64(count()) AS Count\n"
            f"FROM {source}\nGROUP BY MetricName, SeriesHash, TimeBucket",
        ),
    ]
    codecs = [
        *(stmt for table in METRIC_TABLES for stmt in _codecs(ctx, table, raw_codecs(table))),
        *_codecs(ctx, "vigil_metrics_gauge_1m", ROLLUP_CODECS),
        *_codecs(ctx, _SOURCE_1H, ROLLUP_CODECS),
    ]
    return [*series, *hourly, copy_series, copy_hourly, *views, *codecs]


# Migration 15: the per-series hourly table's numbers under LZ4 alone. Every GPU-hours, top-GPU and
# hourly-average question reads each of its rows (184 k for 256 GPUs over 30 days), and decoding
# DoubleDelta, Gorilla and T64 under ZSTD was a fifth of each read: measured on that store, one query
# per question, single-threaded, medians of six rounds: per-series totals 9.8 ms against 12.4, the
# hourly average 13.5 against 17.1. The table is small beside the raw one (a row per series and hour
# against sixty samples), so the cost on disk is small: 0.67 MB against 0.34 MB there, 0.03 bytes per
# sample. Parts written before keep their codecs until a merge rewrites them.
SERIES_READ_CODEC = "LZ4"
SERIES_READ_CODECS: tuple[tuple[str, str, str], ...] = (
    ("TimeBucket", "DateTime", SERIES_READ_CODEC),
    ("Sum", "Float64", SERIES_READ_CODEC),
    ("Count", "UInt64", SERIES_READ_CODEC),
)


def m015_series_read_codecs(ctx: SchemaContext) -> list[str]:
    return _codecs(ctx, ROLLUP_1H_SERIES, SERIES_READ_CODECS)
