"""Numbered, idempotent migrations, rendered for one node or for a cluster.

Each migration is a function of a `SchemaContext` returning DDL statements. The same
functions render single-node MergeTree tables, or, with a cluster name, ReplicatedMergeTree
`<name>_local` tables plus `Distributed` tables named `<name>` (what every query and insert
uses), all `ON CLUSTER`.

Raw metric tables keep the OpenTelemetry Collector ClickHouse exporter's column names and
types, so Grafana's ClickHouse data source and any OTel collector read and write the same data;
those columns are declared once, in `vigil.store.columns`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vigil.logs import event
from vigil.store.client import Store
from vigil.store.columns import (  # the table names are re-exported: callers import them from here
    ATTRIBUTE_MAP,
    GAUGE,
    METRIC_TABLES,
    table_columns,
)
from vigil.store.columns import EXP_HISTOGRAM as EXP_HISTOGRAM
from vigil.store.columns import HISTOGRAM as HISTOGRAM
from vigil.store.columns import SUM as SUM
from vigil.store.columns import SUMMARY as SUMMARY
from vigil.store.schema_history import GAUGE_SERIES, ROLLUP_1H_SERIES, m012_history_series, m015_series_read_codecs
from vigil.store.schema_minutes import MINUTES as MINUTES
from vigil.store.schema_minutes import own_minute_rows, raw_gauge_ttl
from vigil.store.schema_rollups import (
    OLD_ROLLUP_1H,
    OLD_ROLLUP_1M,
    ROLLUP_1H,
    ROLLUP_1M,
    plain_gauge_rollups,
    rollup_ttl,
)

if TYPE_CHECKING:
    from vigil.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_TABLE = "vigil_schema_migrations"
DEDUP_WINDOW = 10_000  # recent insert blocks whose dedup tokens/hashes a table remembers

SUM_ROLLUP_1M, SUM_ROLLUP_1H = "vigil_metrics_sum_1m", "vigil_metrics_sum_1h"
HISTOGRAM_ROLLUP_1M, HISTOGRAM_ROLLUP_1H = "vigil_metrics_histogram_1m", "vigil_metrics_histogram_1h"
ROLLUPS_1M = (ROLLUP_1M, SUM_ROLLUP_1M, HISTOGRAM_ROLLUP_1M)
ROLLUPS_1H = (ROLLUP_1H, SUM_ROLLUP_1H, HISTOGRAM_ROLLUP_1H)
INGEST_LEDGER = "vigil_ingest_requests"
SILENCES, NOTIFICATION_LOG = "vigil_silences", "vigil_notification_log"  # alerting's notify state

_MAP = ATTRIBUTE_MAP

INDEXES = """
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1"""

SERIES_KEY = "MetricName, ServiceName, ResourceAttributes, Attributes"


@dataclass(frozen=True)
class SchemaContext:
    cluster: str = ""
    raw_ttl_days: int = 14
    rollup_1m_ttl_days: int = 90
    rollup_1h_ttl_days: int = 730
    idempotency_window_hours: int = 24
    alert_history_days: int = 90

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaContext:
        """The context the settings describe: cluster name, TTLs and windows."""
        return cls(
            cluster=settings.clickhouse_cluster,
            raw_ttl_days=settings.raw_ttl_days,
            rollup_1m_ttl_days=settings.rollup_1m_ttl_days,
            rollup_1h_ttl_days=settings.rollup_1h_ttl_days,
            idempotency_window_hours=settings.idempotency_window_hours,
            alert_history_days=settings.alert_history_days,
        )

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def storage_name(self, table: str) -> str:
        """The table that holds the rows: `<table>_local` on a cluster, else `table` itself."""
        return f"{table}_local" if self.cluster else table

    def table(
        self,
        name: str,
        body: str,
        *,
        engine: str = "MergeTree",
        engine_args: str = "",
        partition_by: str | None = None,
        order_by: str,
        ttl: str | None = None,
        settings: str = "index_granularity = 8192",
    ) -> list[str]:
        local = self.storage_name(name)
        # engine_args follow the replication path and replica name of a Replicated engine
        if self.cluster:
            args = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
            engine_sql = f"Replicated{engine}({args}{', ' + engine_args if engine_args else ''})"
        else:
            engine_sql = f"{engine}({engine_args})" if engine_args else engine
        clauses = [f"ENGINE = {engine_sql}"]
        if partition_by:
            clauses.append(f"PARTITION BY {partition_by}")
        clauses.append(f"ORDER BY ({order_by})")
        if ttl:
            clauses.append(f"TTL {ttl}")
        clauses.append(f"SETTINGS {settings}")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {local}{self.on_cluster}\n({body.strip().rstrip(',')}\n)\n"
            + "\n".join(clauses)
        ]
        if self.cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {name}{self.on_cluster} AS {local}\n"
                f"ENGINE = Distributed(`{self.cluster}`, currentDatabase(), {local}, rand())"
            )
        return statements

    def materialized_view(self, name: str, target: str, select: str) -> list[str]:
        """A view on the storage tables; `select` names its source as `{source}`."""
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}{self.on_cluster} "
            f"TO {self.storage_name(target)}\nAS {select}"
        ]


def _ttl_days(column: str, days: int) -> str:
    return f"toDateTime({column}) + toIntervalDay({days})"


def _raw_metric_table(ctx: SchemaContext, table: str) -> list[str]:
    # columns a later migration adds are left to it, so this one renders the same for every install
    columns = (c for c in table_columns(table) if c.migration == 2)
    body = "".join(f"\n    {column.ddl()}," for column in columns) + INDEXES
    return ctx.table(
        table,
        body,
        partition_by="toDate(TimeUnix)",
        order_by=f"{SERIES_KEY}, toUnixTimestamp64Nano(TimeUnix)",
        ttl=_ttl_days("TimeUnix", ctx.raw_ttl_days),
        settings=f"index_granularity = 8192, ttl_only_drop_parts = 1, "
        f"non_replicated_deduplication_window = {DEDUP_WINDOW}",
    )


def m001_schema_table(ctx: SchemaContext) -> list[str]:
    return ctx.table(
        SCHEMA_TABLE,
        "Version UInt32, Name String, AppliedAt DateTime64(3)",
        order_by="Version",
    )


def m002_metric_tables(ctx: SchemaContext) -> list[str]:
    return [stmt for table in METRIC_TABLES for stmt in _raw_metric_table(ctx, table)]


def _rollup_table(ctx: SchemaContext, table: str, body: str, select: str, ttl_days: int, key: str) -> list[str]:
    """An AggregatingMergeTree rollup and the view that fills it from each inserted block."""
    return [
        *ctx.table(
            table,
            body,
            engine="AggregatingMergeTree",
            partition_by="toYYYYMM(TimeBucket)",
            order_by=f"{key}, TimeBucket",
            ttl=_ttl_days("TimeBucket", ttl_days),
            settings=f"index_granularity = 8192, ttl_only_drop_parts = 1, "
            f"non_replicated_deduplication_window = {DEDUP_WINDOW}",
        ),
        *ctx.materialized_view(f"{table}_mv", table, select),
    ]


_ROLLUP_SERIES = f"""
    MetricName LowCardinality(String),
    ServiceName LowCardinality(String),
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    Attributes {_MAP} CODEC(ZSTD(1)),"""


def _rollup(ctx: SchemaContext, table: str, bucket_fn: str, ttl_days: int) -> list[str]:
    body = f"""{_ROLLUP_SERIES}
    TimeBucket DateTime CODEC(Delta, ZSTD(1)),
    ValueAvg AggregateFunction(avg, Float64),
    ValueMin SimpleAggregateFunction(min, Float64),
    ValueMax SimpleAggregateFunction(max, Float64),
    ValueLast AggregateFunction(argMax, Float64, DateTime64(9)),
    Count SimpleAggregateFunction(sum, UInt64)"""
    select = f"""SELECT MetricName, ServiceName, ResourceAttributes, Attributes,
    toDateTime({bucket_fn}(TimeUnix)) AS TimeBucket,
    avgState(Value) AS ValueAvg, min(Value) AS ValueMin, max(Value) AS ValueMax,
    argMaxState(Value, TimeUnix) AS ValueLast, toUInt64(count()) AS Count
FROM {ctx.storage_name(GAUGE)}
GROUP BY MetricName, ServiceName, ResourceAttributes, Attributes, TimeBucket"""
    return _rollup_table(ctx, table, body, select, ttl_days, SERIES_KEY)


def m003_gauge_rollups(ctx: SchemaContext) -> list[str]:
    # Replaced by migration 13's tables of plain columns, which copies and then drops these.
    return [
        *_rollup(ctx, OLD_ROLLUP_1M, "toStartOfMinute", ctx.rollup_1m_ttl_days),
        *_rollup(ctx, OLD_ROLLUP_1H, "toStartOfHour", ctx.rollup_1h_ttl_days),
    ]


def m004_ingest_ledger(ctx: SchemaContext) -> list[str]:
    return ctx.table(
        INGEST_LEDGER,
        "Key String, BatchId String, Points UInt64, CommittedAt DateTime64(3)",
        order_by="Key",
        ttl=f"toDateTime(CommittedAt) + toIntervalHour({ctx.idempotency_window_hours})",
        settings=f"index_granularity = 1024, non_replicated_deduplication_window = {DEDUP_WINDOW}",
    )


def m005_ledger_body_digest(ctx: SchemaContext) -> list[str]:
    # The body's SHA-256 beside its key, so a reused Idempotency-Key with another body is refused.
    column = "ADD COLUMN IF NOT EXISTS BodySha256 String DEFAULT ''"
    statements = [f"ALTER TABLE {ctx.storage_name(INGEST_LEDGER)}{ctx.on_cluster} {column}"]
    if ctx.cluster:
        statements.append(f"ALTER TABLE {INGEST_LEDGER}{ctx.on_cluster} {column}")
    return statements


# Cumulative series (sums, histograms) keep per bucket the first and the last point, the peak, and
# the point count: enough for `vigil.store.window` to take increases at query time that equal the raw
# ones, detecting counter resets (see the exactness conditions there). First and last are argMin /
# argMax by time, so blocks inserted in any order merge to the same state.
_CUMULATIVE_TIMES = """
    TimeFirst SimpleAggregateFunction(min, DateTime64(9)),
    TimeLast SimpleAggregateFunction(max, DateTime64(9)),
    Points SimpleAggregateFunction(sum, UInt64)"""
_CUMULATIVE_TIMES_SELECT = "min(TimeUnix) AS TimeFirst, max(TimeUnix) AS TimeLast, toUInt64(count()) AS Points"


def _sum_rollup(ctx: SchemaContext, table: str, bucket_fn: str, ttl_days: int) -> list[str]:
    body = f"""{_ROLLUP_SERIES}
    TimeBucket DateTime CODEC(Delta, ZSTD(1)),
    ValueFirst AggregateFunction(argMin, Float64, DateTime64(9)),
    ValueLast AggregateFunction(argMax, Float64, DateTime64(9)),
    ValueMax SimpleAggregateFunction(max, Float64),{_CUMULATIVE_TIMES}"""
    select = f"""SELECT MetricName, ServiceName, ResourceAttributes, Attributes,
    toDateTime({bucket_fn}(TimeUnix)) AS TimeBucket,
    argMinState(Value, TimeUnix) AS ValueFirst, argMaxState(Value, TimeUnix) AS ValueLast, max(Value) AS ValueMax,
    {_CUMULATIVE_TIMES_SELECT}
FROM {ctx.storage_name(SUM)}
GROUP BY MetricName, ServiceName, ResourceAttributes, Attributes, TimeBucket"""
    return _rollup_table(ctx, table, body, select, ttl_days, SERIES_KEY)


def m006_sum_rollups(ctx: SchemaContext) -> list[str]:
    return [
        *_sum_rollup(ctx, SUM_ROLLUP_1M, "toStartOfMinute", ctx.rollup_1m_ttl_days),
        *_sum_rollup(ctx, SUM_ROLLUP_1H, "toStartOfHour", ctx.rollup_1h_ttl_days),
    ]


def _histogram_rollup(ctx: SchemaContext, table: str, bucket_fn: str, ttl_days: int) -> list[str]:
    # The bounds are part of the series: a histogram whose bounds change is a new series, so the
    # bucket-count arrays of one series always have one length.
    body = f"""{_ROLLUP_SERIES}
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
    TimeBucket DateTime CODEC(Delta, ZSTD(1)),
    CountFirst AggregateFunction(argMin, UInt64, DateTime64(9)),
    CountLast AggregateFunction(argMax, UInt64, DateTime64(9)),
    CountMax SimpleAggregateFunction(max, UInt64),
    SumFirst AggregateFunction(argMin, Float64, DateTime64(9)),
    SumLast AggregateFunction(argMax, Float64, DateTime64(9)),
    SumAtMax AggregateFunction(argMax, Float64, UInt64),
    BucketCountsFirst AggregateFunction(argMin, Array(UInt64), DateTime64(9)),
    BucketCountsLast AggregateFunction(argMax, Array(UInt64), DateTime64(9)),
    BucketCountsAtMax AggregateFunction(argMax, Array(UInt64), UInt64),{_CUMULATIVE_TIMES}"""
    select = f"""SELECT MetricName, ServiceName, ResourceAttributes, Attributes, ExplicitBounds,
    toDateTime({bucket_fn}(TimeUnix)) AS TimeBucket,
    argMinState(Count, TimeUnix) AS CountFirst, argMaxState(Count, TimeUnix) AS CountLast, max(Count) AS CountMax,
    argMinState(Sum, TimeUnix) AS SumFirst, argMaxState(Sum, TimeUnix) AS SumLast, argMaxState(Sum, Count) AS SumAtMax,
    argMinState(BucketCounts, TimeUnix) AS BucketCountsFirst, argMaxState(BucketCounts, TimeUnix) AS BucketCountsLast,
    argMaxState(BucketCounts, Count) AS BucketCountsAtMax,
    {_CUMULATIVE_TIMES_SELECT}
FROM {ctx.storage_name(HISTOGRAM)}
WHERE length(BucketCounts) = length(ExplicitBounds) + 1
GROUP BY MetricName, ServiceName, ResourceAttributes, Attributes, ExplicitBounds, TimeBucket"""
    return _rollup_table(ctx, table, body, select, ttl_days, f"{SERIES_KEY}, ExplicitBounds")


def m007_histogram_rollups(ctx: SchemaContext) -> list[str]:
    return [
        *_histogram_rollup(ctx, HISTOGRAM_ROLLUP_1M, "toStartOfMinute", ctx.rollup_1m_ttl_days),
        *_histogram_rollup(ctx, HISTOGRAM_ROLLUP_1H, "toStartOfHour", ctx.rollup_1h_ttl_days),
    ]


def m009_notify_state(ctx: SchemaContext) -> list[str]:
    # Both append-only (a change is a new row; readers take the newest per key with argMax), so a
    # silence expiry or a sent notification is one insert on a single node and a cluster alike.
    silences = ctx.table(
        SILENCES,
        """
    Id String,
    Matchers String,
    StartsAt DateTime64(3, 'UTC'),
    EndsAt DateTime64(3, 'UTC'),
    CreatedBy String,
    Comment String,
    UpdatedAt DateTime64(3, 'UTC')""",
        order_by="Id, UpdatedAt",
        ttl="toDateTime(EndsAt) + toIntervalDay(5)",
        settings="index_granularity = 1024",
    )
    notification_log = ctx.table(
        NOTIFICATION_LOG,
        """
    Receiver String,
    GroupKey String,
    Firing Array(String),
    Resolved Array(String),
    SentAt DateTime64(3, 'UTC'),
    ExpiresAt DateTime64(3, 'UTC')""",
        order_by="Receiver, GroupKey, SentAt",
        ttl="toDateTime(ExpiresAt)",
        settings="index_granularity = 1024",
    )
    return [*silences, *notification_log]


ALERTS, ALERT_HISTORY = "vigil_alerts", "vigil_alert_history"


def m008_alert_state(ctx: SchemaContext) -> list[str]:
    """The alerts each rule holds (one row per fingerprint, newest Version wins) and their transitions.

    Read the current state with argMax over Version, not FINAL: on a cluster one fingerprint's rows
    may sit on several shards, which FINAL does not merge. No TTL on the state: a TTL could drop a
    forgotten alert's last row before an older firing row of it merged away and so revive it;
    alerting prunes whole forgotten fingerprints instead.
    """
    state = f"""
    Fingerprint String,
    Rule LowCardinality(String),
    GroupName LowCardinality(String),
    Labels {_MAP},
    Annotations {_MAP},
    State LowCardinality(String),
    Value Float64,
    ActiveAt DateTime64(3),
    FiredAt Nullable(DateTime64(3)),
    ResolvedAt Nullable(DateTime64(3)),
    KeepFiringSince Nullable(DateTime64(3)),
    UpdatedAt DateTime64(3),
    Version UInt64"""
    history = f"""
    At DateTime64(3),
    Fingerprint String,
    Rule LowCardinality(String),
    Labels {_MAP},
    FromState LowCardinality(String),
    ToState LowCardinality(String),
    Value Float64"""
    return [
        *ctx.table(
            ALERTS,
            state,
            engine="ReplacingMergeTree",
            engine_args="Version",
            order_by="Fingerprint",
            settings="index_granularity = 1024",
        ),
        *ctx.table(
            ALERT_HISTORY,
            history,
            partition_by="toYYYYMM(At)",
            order_by="At, Fingerprint",
            ttl=_ttl_days("At", ctx.alert_history_days),
        ),
    ]


RUNBOOK_RUNS, RUNBOOK_EVENTS = "vigil_runbook_runs", "vigil_runbook_events"


def m010_runbook_audit(ctx: SchemaContext) -> list[str]:
    """The runbook audit trail: each run's versions and each step's events (see `runbooks/audit.py`).

    Append-only MergeTree, not ReplacingMergeTree: an audit trail keeps every version of a run, and
    readers take the newest per run with argMax over Seq (right on a cluster, where FINAL is not).
    No TTL: a run's first row (who, which parameters) must not expire before its last.
    """
    runs = """
    RunId String,
    Seq UInt32,
    At DateTime64(3, 'UTC'),
    Runbook LowCardinality(String),
    TargetKind LowCardinality(String),
    Target String,
    Params String,
    DryRun UInt8,
    StartedBy String,
    Auto UInt8,
    Origin String,
    State LowCardinality(String),
    Step Int32,
    Reason String,
    Actor String"""
    events = """
    RunId String,
    Seq UInt32,
    At DateTime64(3, 'UTC'),
    StepIndex Int32,
    StepName String,
    StepKind LowCardinality(String),
    Attempt UInt16,
    Event LowCardinality(String),
    Actor String,
    Message String,
    Output String CODEC(ZSTD(3))"""
    return [
        *ctx.table(
            RUNBOOK_RUNS, runs, partition_by="toYYYYMM(At)", order_by="RunId, Seq", settings="index_granularity = 1024"
        ),
        *ctx.table(
            RUNBOOK_EVENTS,
            events,
            partition_by="toYYYYMM(At)",
            order_by="RunId, Seq",
            settings="index_granularity = 1024",
        ),
    ]


INCIDENT_EVENTS = "vigil_incident_events"


def m011_incident_events(ctx: SchemaContext) -> list[str]:
    """Incidents as append-only events (see `alerting/incident_store.py`); state is rebuilt by replaying them.

    Kinds: opened (title, group key and labels), alert and alert_resolved (an alert joins or leaves:
    its labels, fingerprint, severity, runbook, since when it held), note (author, text), closed (by
    hand: who), resolved (its alerts resolved). No TTL: an open incident's first row must outlive its last.
    """
    body = f"""
    IncidentId String,
    Seq UInt64,
    At DateTime64(3, 'UTC'),
    Kind LowCardinality(String),
    Actor String,
    Text String,
    Title String,
    GroupKey String,
    Labels {_MAP},
    Fingerprint String,
    Severity LowCardinality(String),
    Runbook String,
    ActiveAt DateTime64(3, 'UTC')"""
    return ctx.table(
        INCIDENT_EVENTS,
        body,
        partition_by="toYYYYMM(At)",
        order_by="IncidentId, Seq",
        settings="index_granularity = 1024",
    )


def m013_plain_gauge_rollups(ctx: SchemaContext) -> list[str]:
    old_tables = [sql for sql in m003_gauge_rollups(ctx) if not sql.startswith("CREATE MATERIALIZED VIEW")]
    return plain_gauge_rollups(ctx, old_tables, DEDUP_WINDOW)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    render: Callable[[SchemaContext], list[str]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "schema_migrations", m001_schema_table),
    Migration(2, "otel_metric_tables", m002_metric_tables),
    Migration(3, "gauge_rollups_1m_1h", m003_gauge_rollups),
    Migration(4, "ingest_ledger", m004_ingest_ledger),
    Migration(5, "ingest_ledger_body_digest", m005_ledger_body_digest),
    Migration(6, "sum_rollups_1m_1h", m006_sum_rollups),
    Migration(7, "histogram_rollups_1m_1h", m007_histogram_rollups),
    Migration(8, "alert_state_and_history", m008_alert_state),
    Migration(9, "notify_silences_and_log", m009_notify_state),
    Migration(10, "runbook_runs_and_events", m010_runbook_audit),
    Migration(11, "incident_events", m011_incident_events),
    Migration(12, "history_series_and_codecs", m012_history_series),
    Migration(13, "plain_gauge_rollups", m013_plain_gauge_rollups),
    Migration(14, "own_minute_rows", own_minute_rows),
    Migration(15, "series_read_codecs", m015_series_read_codecs),
)

# Tables whose TTL follows a setting, and how to render it; kept in step with the settings.
TTL_TABLES: dict[str, Callable[[SchemaContext], str]] = {
    **{t: (lambda ctx: _ttl_days("TimeUnix", ctx.raw_ttl_days)) for t in METRIC_TABLES},
    GAUGE: lambda ctx: raw_gauge_ttl(ctx.raw_ttl_days, ctx.rollup_1m_ttl_days),
    **{t: (lambda ctx: _ttl_days("TimeBucket", ctx.rollup_1m_ttl_days)) for t in ROLLUPS_1M},
    **{t: (lambda ctx: _ttl_days("TimeBucket", ctx.rollup_1h_ttl_days)) for t in ROLLUPS_1H},
    INGEST_LEDGER: lambda ctx: f"toDateTime(CommittedAt) + toIntervalHour({ctx.idempotency_window_hours})",
    ALERT_HISTORY: lambda ctx: _ttl_days("At", ctx.alert_history_days),
    GAUGE_SERIES: lambda ctx: _ttl_days("LastSeen", ctx.rollup_1h_ttl_days),
    ROLLUP_1H_SERIES: lambda ctx: _ttl_days("TimeBucket", ctx.rollup_1h_ttl_days),
    ROLLUP_1M: lambda ctx: rollup_ttl(ctx.rollup_1m_ttl_days),
    ROLLUP_1H: lambda ctx: rollup_ttl(ctx.rollup_1h_ttl_days),
}


def render_all(ctx: SchemaContext) -> list[tuple[Migration, list[str]]]:
    return [(m, m.render(ctx)) for m in MIGRATIONS]


def render_sql(ctx: SchemaContext) -> str:
    """Every migration as one SQL script, for review or for applying by hand."""
    lines = []
    for migration, statements in render_all(ctx):
        lines.append(f"-- {migration.version:03d} {migration.name}")
        lines.extend(sql.strip() + ";\n" for sql in statements)
    return "\n".join(lines) + "\n"


def applied_versions(store: Store) -> set[int]:
    exists = store.command("EXISTS TABLE {t:Identifier}", {"t": SCHEMA_TABLE})
    if not int(exists):
        return set()
    return {int(r[0]) for r in store.query_rows(f"SELECT DISTINCT Version FROM {SCHEMA_TABLE}")}


def migrate(store: Store, ctx: SchemaContext) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now.

    Statements are `IF NOT EXISTS`, so a migration interrupted half-way is simply run again.
    """
    done = applied_versions(store)
    applied = []
    for migration, statements in render_all(ctx):
        if migration.version in done:
            continue
        for sql in statements:
            store.command(sql)
        store.command(
            f"INSERT INTO {SCHEMA_TABLE} (Version, Name, AppliedAt) VALUES ({{v:UInt32}}, {{n:String}}, now64(3))",
            {"v": migration.version, "n": migration.name},
        )
        applied.append(migration.version)
        event(log, "migration_applied", version=migration.version, name=migration.name)
    reconcile_ttls(store, ctx)
    return applied


def _normalized(sql: str) -> str:
    return "".join(sql.split()).lower()


def reconcile_ttls(store: Store, ctx: SchemaContext) -> list[str]:
    """Bring each table's TTL in line with the settings; return the tables changed.

    Changing a TTL setting after first start must take effect: the old TTL is replaced without
    rewriting existing parts (`materialize_ttl_after_modify = 0`); parts expire as they merge.
    """
    rows = store.query_rows(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name IN {n:Array(String)}",
        {"n": [ctx.storage_name(t) for t in TTL_TABLES]},
    )
    current = {name: engine_full for name, engine_full in rows}
    changed = []
    for table, render in TTL_TABLES.items():
        local = ctx.storage_name(table)
        wanted = render(ctx)
        engine_full = current.get(local)
        if engine_full is None or _normalized(f"TTL {wanted}") in _normalized(engine_full):
            continue
        store.command(
            f"ALTER TABLE {local}{ctx.on_cluster} MODIFY TTL {wanted}",
            settings={"materialize_ttl_after_modify": 0},
        )
        changed.append(table)
        event(log, "ttl_changed", table=local, ttl=wanted)
    return changed
