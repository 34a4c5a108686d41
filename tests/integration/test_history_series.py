"""Migration 12 against the real embedded store: the per-series tables answer the 1-hour usage
questions as the hourly rollup does (one series per GPU or several), its copy of an existing install's
history runs once, its codecs keep the exporter's names and types, and history reads do not wait
behind the shared handle."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.integration.usage_fleet import DAY, DAYS, HOUR, NASTY, answers, load_fresh
from tests.rollup_answers import close
from vigil.store import Store, series_names
from vigil.store import usage as u
from vigil.store import usage_hourly as hourly
from vigil.store.columns import flat_types
from vigil.store.plan import Resolution
from vigil.store.schema import GAUGE, ROLLUP_1H, ROLLUP_1M, SchemaContext, m003_gauge_rollups
from vigil.store.schema_history import GAUGE_HISTORY, GAUGE_SERIES, ROLLUP_1H_SERIES, m012_history_series
from vigil.store.schema_rollups import OLD_ROLLUP_1H

MAP = {"gpu.uuid": "GPU-m0", "gpu.model": "H100"}


def _row(t_s: int, value: float, resource: dict[str, str]) -> tuple[Any, ...]:
    return (resource, resource.get("service.name", "agent"), "gpu.utilization", MAP, t_s * 10**9, value)


def _insert_rows(store: Store, rows: list[tuple[Any, ...]]) -> None:
    names = ["ResourceAttributes", "ServiceName", "MetricName", "Attributes", "TimeUnix", "Value"]
    store.insert_columns(GAUGE, list(zip(*rows, strict=True)), names)


@pytest.fixture(scope="module")
def loaded(store: Store) -> tuple[Store, int]:
    base = load_fresh(store)
    # GPU-m0: its pod changes at hour 5 (two series, one GPU and group), then its team at 10:30
    # (two groups inside one hour): the general path, not the one-series-per-GPU shortcut
    rows = []
    for t in range(base, base + DAYS * DAY, 60):
        pod = "p1" if t < base + 5 * HOUR else "p2"
        team = "ml" if t < base + 10 * HOUR + 1800 else "infra"
        value = float((t // 60) % 97)
        rows.append(_row(t, value, {"host.name": "n9", "team": team, "k8s.pod.name": pod}))
    _insert_rows(store, rows)
    return store, base


@pytest.mark.parametrize("step", [HOUR, 3 * HOUR])
@pytest.mark.parametrize(
    ("group_by", "filters"),
    [("team", {}), ("host.name", {}), ("team", {"k8s.cluster.name": "east"}), ("team", {"team": NASTY})],
)
def test_the_series_tables_answer_as_the_hourly_rollup(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch, step: int, group_by: str, filters: dict[str, str]
) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, step, group_by=group_by, filters=filters, source=Resolution.HOUR)
    used = []
    real = hourly.series
    monkeypatch.setattr(hourly, "series", lambda *a, **kw: used.append(1) or real(*a, **kw))
    fast = answers(store, q)
    assert used, "the 1-hour answers did not read the series tables"
    monkeypatch.setattr(u, "_hourly", lambda *a: None)  # the rollup with its maps, as before migration 12
    close(fast, answers(store, q))


def test_one_series_per_gpu_answers_hours_and_top_from_the_lookup_and_the_totals(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual fleet (GPU-m0, with two series, filtered out): each answer reads the series and their
    totals (at once, `Store.read_together`) and nothing more, and equals the rollup's answer (the
    parametrized test above compares the rest)."""
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, filters={"host.name": "n1"}, source=Resolution.HOUR)
    reads = []
    real = hourly.read_limited
    monkeypatch.setattr(hourly, "read_limited", lambda *a: reads.append(a[1]) or real(*a))
    fast = (u.gpu_hours(store, q), u.top_gpus(store, q, "idle"))
    assert len(reads) == 4  # two each: no read of per-GPU rows by bound arrays follows
    assert sum(sql.startswith("SELECT SeriesHash, Attributes[") for sql in reads) == 2  # the lookups
    assert sum(f"FROM {ROLLUP_1H_SERIES} FINAL" in sql for sql in reads) == 2
    assert not any("{h:Array(UInt64)}" in sql for sql in reads)
    assert fast[0] and fast[1]
    monkeypatch.setattr(u, "_hourly", lambda *a: None)
    close(fast, (u.gpu_hours(store, q), u.top_gpus(store, q, "idle")))


def test_a_gpu_with_several_series_answers_alike_named_or_looked_up(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GPU-m0 has one series until hour 5 and more after it. Over the first five hours the series with
    rows in the range are one per GPU, whether named or looked up (the lookup also finds m0's later
    series): the same answers, bit for bit. Over the whole range m0's series fall back to the lookup,
    and the totals are read once."""
    store, base = loaded
    series_names.names_of.clear()
    early = u.UsageQuery(base, base + 5 * HOUR, HOUR, source=Resolution.HOUR)

    def asked(q: u.UsageQuery) -> tuple[Any, ...]:
        return u.gpu_hours(store, q), u.top_gpus(store, q, "idle"), u.top_gpus(store, q, "hot")

    with monkeypatch.context() as m:
        m.setattr(series_names.SeriesNames, "knows", lambda *a: False)
        looked_up = asked(early)
    reads: list[str] = []
    real = hourly.read_limited
    monkeypatch.setattr(hourly, "read_limited", lambda *a: reads.append(a[1]) or real(*a))
    named = asked(early)
    assert len(reads) == 3 and all(f"FROM {ROLLUP_1H_SERIES} FINAL" in sql for sql in reads)  # totals alone
    assert named == looked_up
    reads.clear()
    whole = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    u.gpu_hours(store, whole)
    totals = [sql for sql in reads if f"FROM {ROLLUP_1H_SERIES} FINAL" in sql and "{h:Array(UInt64)}" not in sql]
    assert len(totals) == 1 and reads[0] == totals[0]  # read once, first
    assert reads[1].startswith("SELECT SeriesHash, Attributes[")  # then the lookup alone
    monkeypatch.setattr(u, "_hourly", lambda *a: None)  # the rollup with its maps
    close(named, asked(early))


@pytest.mark.parametrize("filters", [{}, {"host.name": "n9"}, {"team": NASTY}])
def test_the_lookup_read_final_finds_what_grouping_finds(loaded: tuple[Store, int], filters: dict[str, str]) -> None:
    """One node reads the series table FINAL, a cluster groups it: the same series, GPUs, groups, hosts
    and last hours, from a table holding older rows of each series (as each insert adds one) not yet merged."""
    store, base = loaded
    store.command(
        f"INSERT INTO {GAUGE_SERIES} SELECT MetricName, SeriesHash, ResourceAttributes, Attributes, "
        f"LastSeen - INTERVAL 1 HOUR FROM {GAUGE_SERIES} FINAL"
    )  # an older row changes no answer: the latest is kept
    for start in (base, base + DAYS * DAY - HOUR):  # every series, and those seen in the last hour
        q = u.UsageQuery(start, base + DAYS * DAY, HOUR, filters=filters, source=Resolution.HOUR)
        p = u.plan(q)
        final, grouped = (hourly.read_limited(store, *hourly.lookup_sql(q, p, one), 9999) for one in (True, False))
        assert final == grouped
        assert final or filters == {"team": NASTY}


def test_past_the_series_limit_the_rollup_answers(loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    fast = answers(store, q)
    monkeypatch.setattr(hourly, "MAX_SERIES", 2)
    p = u.plan(q)
    assert hourly.series(store, q, p) is None
    close(fast, answers(store, q))


def _contents(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    series = store.query_rows(f"SELECT SeriesHash, any(Attributes) FROM {GAUGE_SERIES} GROUP BY SeriesHash ORDER BY 1")
    hours = store.query_rows(
        f"SELECT SeriesHash, TimeBucket, round(sum(Sum), 6), sum(Count) FROM {ROLLUP_1H_SERIES} "
        "GROUP BY SeriesHash, TimeBucket ORDER BY 1, 2"
    )
    return series, hours


def test_the_migration_copies_the_hourly_rollup_once(loaded: tuple[Store, int]) -> None:
    store, _ = loaded
    filled_by_views = _contents(store)
    assert filled_by_views[0] and filled_by_views[1]
    copies = [s for s in m012_history_series(SchemaContext()) if s.startswith("INSERT")]
    assert len(copies) == 2
    # migration 12 copies from migration 3's hourly rollup (migration 13 replaces it): that table, filled
    # by its view's own SELECT
    old_tables = [s for s in m003_gauge_rollups(SchemaContext()) if OLD_ROLLUP_1H in s]
    (view,) = [s for s in old_tables if s.startswith("CREATE MATERIALIZED VIEW")]
    for sql in old_tables:
        if sql is not view:
            store.command(sql)
    store.command(f"INSERT INTO {OLD_ROLLUP_1H} {view.split(chr(10) + 'AS ', 1)[1]}")
    try:
        for table in GAUGE_HISTORY:  # an install from before migration 12: the rollup only
            store.command(f"TRUNCATE TABLE {table}")
        for sql in copies:
            store.command(sql)
        assert _contents(store) == filled_by_views
        for sql in copies:  # a migration run again copies nothing twice
            store.command(sql)
        assert _contents(store) == filled_by_views
    finally:
        for table in GAUGE_HISTORY:
            store.command(f"TRUNCATE TABLE {table}")
        for sql in copies:
            store.command(sql)
        store.command(f"DROP TABLE IF EXISTS {OLD_ROLLUP_1H} SYNC")


def test_codecs_change_and_the_exporter_columns_do_not(store: Store) -> None:
    rows = store.query_rows(
        "SELECT table, name, type, compression_codec FROM system.columns WHERE database = currentDatabase() "
        "AND table IN {t:Array(String)}",
        {"t": [GAUGE, ROLLUP_1M, ROLLUP_1H, ROLLUP_1H_SERIES]},
    )
    columns = {(t, n): (type_, codec) for t, n, type_, codec in rows}
    assert {n: ty for (t, n), (ty, _) in columns.items() if t == GAUGE} == flat_types(GAUGE)
    assert "DoubleDelta" in columns[(GAUGE, "TimeUnix")][1]
    assert "Gorilla" in columns[(GAUGE, "Value")][1]
    assert "ZSTD(3)" in columns[(GAUGE, "Attributes")][1]
    for rollup in (ROLLUP_1M, ROLLUP_1H):
        assert columns[(rollup, "Sum")][1] == ""  # migration 13: the default codec, recompressed at rest
        ((engine_full,),) = store.query_rows(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": rollup},
        )
        assert "RECOMPRESS CODEC(ZSTD(15))" in engine_full
        assert "T64" in columns[(rollup, "Count")][1]
        assert "ZSTD(3)" in columns[(rollup, "ResourceAttributes")][1]
    for name in ("TimeBucket", "Sum", "Count"):  # migration 15: what every history read decodes, cheaply
        assert columns[(ROLLUP_1H_SERIES, name)][1] == "CODEC(LZ4)"


def test_a_history_read_does_not_wait_behind_the_shared_handle(store: Store) -> None:
    busy = threading.Thread(target=store.query_rows, args=("SELECT sleep(1.5)",))
    busy.start()
    try:
        time.sleep(0.2)  # the shared handle is now inside its query
        assert store.read_rows("SELECT 41 + 1") == [(42,)]
        assert busy.is_alive(), "the read waited for the shared handle's query to end"
    finally:
        busy.join()
