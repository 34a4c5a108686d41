"""Migration 14: a point alone in its minute is its own 1-minute rollup row, kept once, in the raw table.

Why: at a 60 s interval the 1-minute rollup held one row per sample (its sum, extremes and last value:
three copies of the value, each merged by its own function and so in its own column stream) beside
the raw row, a fourth copy (measured, 256 GPUs x 30 days at 60 s: 2.40 bytes per sample in the rollup,
against 1.16 for the raw row). A series reporting once a minute or slower gains nothing from a minute
rollup: its raw row already is that minute's row.

So the gauge table gets `IntervalSeconds`, the seconds since the series' previous point as its writer
saw it (the collector per series, `vigil backfill` its step; 0 when unknown, as any other writer
leaves it). A point whose interval is `OWN_MINUTE_S` or more:

- is not aggregated into the 1-minute rollup (its view now skips it);
- stays in the raw table for as long as the 1-minute rollup keeps minutes (the raw TTL depends on it);
- is read as a minute row through `vigil_metrics_gauge_minutes`, a view of the rollup's rows and these
  raw rows in the rollup's columns, which every 1-minute read uses.

Every point therefore reaches the minute view exactly once, whatever its interval says: a wrong or
missing interval costs disk, never an answer. A minmax index on the interval lets reads of a dense
fleet's recent minutes skip its raw granules without reading them. The hourly tables still take every
point. The raw table's TTL now differs row to row, so its parts are no longer dropped only whole
(`ttl_only_drop_parts = 0`): a day holding both kinds loses its dense rows at the raw TTL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vigil.store.columns import GAUGE, INTERVAL, table_columns
from vigil.store.schema_rollups import ROLLUP_1M, view_select

if TYPE_CHECKING:
    from vigil.store.schema import SchemaContext

MINUTES = "vigil_metrics_gauge_minutes"  # what a 1-minute gauge read names
OWN_MINUTE_S = 60

_MINUTE_ROW = """SELECT MetricName, ServiceName, ResourceAttributes, Attributes,
    toDateTime(toStartOfMinute(TimeUnix)) AS TimeBucket, Value AS Sum, toUInt64(1) AS Count,
    map(toUInt8(0), Value, toUInt8(1), -Value) AS Extremes,
    (toUInt64(toUnixTimestamp64Nano(TimeUnix) - toInt64(toUnixTimestamp(toStartOfMinute(TimeUnix))) * 1000000000),
     Value) AS Last"""


def raw_gauge_ttl(raw_days: int, minute_days: int) -> str:
    """The raw gauge table's TTL: `raw_days`, or the minute rollup's keep for a point that is its own row."""
    kept = max(raw_days, minute_days)
    days = str(raw_days) if kept == raw_days else f"if({INTERVAL} >= {OWN_MINUTE_S}, {kept}, {raw_days})"
    return f"toDateTime(TimeUnix) + toIntervalDay({days})"


def own_minute_rows(ctx: SchemaContext) -> list[str]:
    local = ctx.storage_name(GAUGE)
    column = next(c for c in table_columns(GAUGE) if c.name == INTERVAL)
    add = f"ADD COLUMN IF NOT EXISTS {column.ddl()}"
    statements = [f"ALTER TABLE {local}{ctx.on_cluster} {add}"]
    if ctx.cluster:
        statements.append(f"ALTER TABLE {GAUGE}{ctx.on_cluster} {add}")
    index = f"ADD INDEX IF NOT EXISTS idx_interval {INTERVAL} TYPE minmax GRANULARITY 1"
    statements += [
        f"ALTER TABLE {local}{ctx.on_cluster} {index}",
        f"ALTER TABLE {local}{ctx.on_cluster} MODIFY SETTING ttl_only_drop_parts = 0",
        # existing parts keep their TTL until they merge: no mutation rewriting a big install's history
        f"ALTER TABLE {local}{ctx.on_cluster} MODIFY TTL {raw_gauge_ttl(ctx.raw_ttl_days, ctx.rollup_1m_ttl_days)}"
        " SETTINGS materialize_ttl_after_modify = 0",
        # the rollup's view again, without the points that are their own rows (a drop and a create: the
        # inserts in between miss the rollup, as in migrations 12 and 13)
        f"DROP VIEW IF EXISTS {ROLLUP_1M}_mv{ctx.on_cluster} SYNC",
        *ctx.materialized_view(
            f"{ROLLUP_1M}_mv", ROLLUP_1M, view_select(ctx, "toStartOfMinute", f"{INTERVAL} < {OWN_MINUTE_S}")
        ),
        f"CREATE VIEW IF NOT EXISTS {MINUTES}{ctx.on_cluster} AS\n"
        f"SELECT MetricName, ServiceName, ResourceAttributes, Attributes, TimeBucket, Sum, Count, Extremes, Last\n"
        f"FROM {ROLLUP_1M}\nUNION ALL\n{_MINUTE_ROW}\nFROM {GAUGE}\nWHERE {INTERVAL} >= {OWN_MINUTE_S}",
    ]
    return statements
