import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigil.store import Store
from vigil.store.read import AGGREGATE_SQL
from vigil.store.schema import (
    GAUGE,
    HISTOGRAM,
    HISTOGRAM_ROLLUP_1H,
    HISTOGRAM_ROLLUP_1M,
    MIGRATIONS,
    MINUTES,
    ROLLUP_1H,
    ROLLUP_1M,
    ROLLUPS_1M,
    SCHEMA_TABLE,
    SUM,
    SUM_ROLLUP_1H,
    SUM_ROLLUP_1M,
    SchemaContext,
    migrate,
    reconcile_ttls,
    render_all,
)
from vigil.store.schema_history import GAUGE_SERIES, ROLLUP_1H_SERIES

ROOT = Path(__file__).resolve().parents[2]
MAP = "Map(LowCardinality(String), String)"
COMMON = {
    "ResourceAttributes": MAP,
    "ResourceSchemaUrl": "String",
    "ScopeName": "String",
    "ScopeVersion": "String",
    "ScopeAttributes": MAP,
    "ScopeDroppedAttrCount": "UInt32",
    "ScopeSchemaUrl": "String",
    "ServiceName": "LowCardinality(String)",
    "MetricName": "String",
    "MetricDescription": "String",
    "MetricUnit": "String",
    "Attributes": MAP,
    "StartTimeUnix": "DateTime64(9)",
    "TimeUnix": "DateTime64(9)",
    "Flags": "UInt32",
}
EXEMPLARS = {
    "Exemplars.FilteredAttributes": f"Array({MAP})",
    "Exemplars.TimeUnix": "Array(DateTime64(9))",
    "Exemplars.Value": "Array(Float64)",
    "Exemplars.SpanId": "Array(String)",
    "Exemplars.TraceId": "Array(String)",
}
HIST = {
    "Count": "UInt64",
    "Sum": "Float64",
    "Min": "Float64",
    "Max": "Float64",
    "AggregationTemporality": "Int32",
}
# REFERENCE.md §1: the OTel Collector ClickHouse exporter's columns, by name and type.
EXPECTED = {
    "otel_metrics_gauge": {**COMMON, **EXEMPLARS, "Value": "Float64"},
    "otel_metrics_sum": {
        **COMMON,
        **EXEMPLARS,
        "Value": "Float64",
        "AggregationTemporality": "Int32",
        "IsMonotonic": "Bool",
    },
    "otel_metrics_histogram": {
        **COMMON,
        **EXEMPLARS,
        **HIST,
        "BucketCounts": "Array(UInt64)",
        "ExplicitBounds": "Array(Float64)",
    },
    "otel_metrics_exponential_histogram": {
        **COMMON,
        **EXEMPLARS,
        **HIST,
        "Scale": "Int32",
        "ZeroCount": "UInt64",
        "PositiveOffset": "Int32",
        "PositiveBucketCounts": "Array(UInt64)",
        "NegativeOffset": "Int32",
        "NegativeBucketCounts": "Array(UInt64)",
    },
    "otel_metrics_summary": {
        **COMMON,
        "Count": "UInt64",
        "Sum": "Float64",
        "ValueAtQuantiles.Quantile": "Array(Float64)",
        "ValueAtQuantiles.Value": "Array(Float64)",
    },
}


# Vigil's own columns beside them, which a writer that does not know them leaves at their default.
VIGIL_COLUMNS = {"otel_metrics_gauge": {"IntervalSeconds": "UInt32"}}


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_metric_tables_have_the_exporters_columns_and_types(store: Store, table: str) -> None:
    rows = store.query_rows(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
        {"t": table},
    )
    assert dict(rows) == {**EXPECTED[table], **VIGIL_COLUMNS.get(table, {})}


def test_sort_key_puts_metric_name_first_and_ttl_drops_whole_parts(store: Store) -> None:
    def table(name: str) -> tuple[str, str]:
        ((sorting_key, engine_full),) = store.query_rows(
            "SELECT sorting_key, engine_full FROM system.tables"
            " WHERE database = currentDatabase() AND name = {t:String}",
            {"t": name},
        )
        return sorting_key, engine_full

    sorting_key, engine_full = table(SUM)
    assert sorting_key.startswith("MetricName, ")
    assert "toIntervalDay(14)" in engine_full and "ttl_only_drop_parts = 1" in engine_full
    # gauge points that are their own minute row stay as long as the minute rollup's rows (migration 14),
    # so a day's part may hold rows of two TTLs: expired rows leave at a merge, not only whole parts
    sorting_key, engine_full = table(GAUGE)
    assert sorting_key.startswith("MetricName, ")
    assert "toIntervalDay(if(IntervalSeconds >= 60, 90, 14))" in engine_full
    assert "ttl_only_drop_parts = 0" in engine_full


def test_migrations_are_recorded_once_and_rerun_is_a_no_op(store: Store) -> None:
    assert migrate(store, SchemaContext()) == []
    versions = store.query_rows(f"SELECT Version, count() FROM {SCHEMA_TABLE} GROUP BY Version ORDER BY Version")
    assert versions == [(m.version, 1) for m in MIGRATIONS]


def test_ttl_setting_changes_apply_to_existing_tables(store: Store) -> None:
    try:
        changed = reconcile_ttls(store, SchemaContext(rollup_1m_ttl_days=30))
        # the gauge, sum and histogram minute rollups, and the raw gauge points that are their own minute
        assert changed == [GAUGE, *ROLLUPS_1M]
        ((engine_full,),) = store.query_rows(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": ROLLUP_1M},
        )
        assert "toIntervalDay(30)" in engine_full
        assert reconcile_ttls(store, SchemaContext(rollup_1m_ttl_days=30)) == []
    finally:
        reconcile_ttls(store, SchemaContext())


def test_cluster_rendering_is_replicated_distributed_on_cluster_and_parses(store: Store) -> None:
    rendered = render_all(SchemaContext(cluster="gpu_fleet"))
    statements = [sql for _, stmts in rendered for sql in stmts]
    creates = [s for s in statements if s.startswith("CREATE")]
    assert all("ON CLUSTER `gpu_fleet`" in s for s in creates)
    local_tables = [s for s in creates if "_local ON CLUSTER" in s and "ENGINE = Replicated" in s]
    distributed = [s for s in creates if "ENGINE = Distributed(`gpu_fleet`" in s]
    assert (
        len(local_tables) == len(distributed) == 26
    )  # schema, 5 raw, 6 rollups, ledger, alerts, alert history, silences, nflog, incident events, 2 history series,
    # and migration 13's two gauge rollups, with migration 3's again (re-created if gone, then dropped)
    assert all("'/clickhouse/tables/{shard}/{database}/" in s and "'{replica}'" in s for s in local_tables)
    assert any("ReplicatedAggregatingMergeTree" in s for s in local_tables)
    views = [s for s in creates if "MATERIALIZED VIEW" in s]
    assert len(views) == 11  # migration 14 makes the gauge minute rollup's again, without own-minute points
    sources = {ROLLUP_1M: GAUGE, ROLLUP_1H: GAUGE, SUM_ROLLUP_1M: SUM, SUM_ROLLUP_1H: SUM}
    sources |= {GAUGE_SERIES: GAUGE, ROLLUP_1H_SERIES: GAUGE}
    sources |= {HISTOGRAM_ROLLUP_1M: HISTOGRAM, HISTOGRAM_ROLLUP_1H: HISTOGRAM}
    for rollup, raw in sources.items():
        view = [v for v in views if f"TO {rollup}_local" in v][-1]
        assert f"FROM {raw}_local" in view
    # the minutes every read uses: the rollup and the raw points, each through its Distributed table
    (minutes,) = [s for s in creates if s.startswith(f"CREATE VIEW IF NOT EXISTS {MINUTES} ")]
    assert f"FROM {ROLLUP_1M}\n" in minutes and f"FROM {GAUGE}\n" in minutes
    for sql in statements:  # the real parser of the engine checks the syntax of every statement
        store.query_rows("SELECT formatQuery({q:String})", {"q": sql})


def test_rollups_agree_with_raw_data_per_minute_and_per_hour(clean_store: Store) -> None:
    rng = random.Random(7)
    four_hours_ago = datetime.now(UTC) - timedelta(hours=4)
    base = int(four_hours_ago.replace(minute=0, second=0, microsecond=0).timestamp()) * 10**9
    rows = []
    for gpu in range(3):
        for second in range(0, 3 * 3600, 20):  # three hours, a point every 20 s, per GPU
            rows.append((gpu, base + second * 10**9 + gpu, rng.uniform(0, 100)))
    rng.shuffle(rows)
    # several inserts, so the rollups merge states from many blocks
    for chunk in range(0, len(rows), 700):
        part = rows[chunk : chunk + 700]
        n = len(part)
        clean_store.insert_columns(
            GAUGE,
            [
                ["gpu.utilization"] * n,
                [{"service.name": "t"}] * n,
                [{"gpu.index": str(g)} for g, _, _ in part],
                [t for _, t, _ in part],
                [v for _, _, v in part],
            ],
            ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
        )

    rollup_columns = ", ".join(AGGREGATE_SQL[a][1] for a in ("avg", "min", "max", "last", "count"))
    for table, bucket in ((ROLLUP_1M, "toStartOfMinute"), (ROLLUP_1H, "toStartOfHour")):
        rollup = clean_store.query_rows(
            f"""SELECT Attributes['gpu.index'] AS gpu, TimeBucket, {rollup_columns}
            FROM {table} WHERE MetricName = 'gpu.utilization' GROUP BY gpu, TimeBucket ORDER BY gpu, TimeBucket"""
        )
        raw = clean_store.query_rows(
            f"""SELECT Attributes['gpu.index'] AS gpu, toDateTime({bucket}(TimeUnix)) AS b, avg(Value), min(Value),
                   max(Value), argMax(Value, TimeUnix), count()
            FROM {GAUGE} WHERE MetricName = 'gpu.utilization' GROUP BY gpu, b ORDER BY gpu, b"""
        )
        assert len(rollup) == len(raw) == (3 * 180 if table == ROLLUP_1M else 3 * 3)
        for got, want in zip(rollup, raw, strict=True):
            assert got[:2] == want[:2]
            assert got[2] == pytest.approx(want[2], rel=1e-12)
            assert got[3:] == want[3:]


def test_vigil_query_reads_with_bound_parameters_and_refuses_writes(tmp_path: Path) -> None:
    def vigil(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "vigil.cli", *args, "--data", str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)

    assert vigil("migrate").returncode == 0
    read = vigil("query", "SELECT {n:UInt8} + 1 AS m, count() AS rows FROM otel_metrics_gauge", "--param", "n=2")
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == ["m\trows", "3\t0"]
    write = vigil("query", "INSERT INTO otel_metrics_gauge (MetricName) VALUES ('x')")
    assert write.returncode != 0 and "query failed" in write.stderr and "readonly" in write.stderr
