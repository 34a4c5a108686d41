"""`vigil backfill` writes what it says into the real embedded store, and the rollups agree with raw rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.local import ROOT
from vigil import backfill as b
from vigil.pidlock import PidLock
from vigil.store import Store
from vigil.store.columns import GAUGE
from vigil.store.schema import MINUTES, ROLLUP_1H, ROLLUP_1M
from vigil.store.schema_history import GAUGE_HISTORY

GPUS, STEP = 32, 240  # 4 nodes: teams of 2, 1 and 1 nodes
HOUR = 3600


@pytest.fixture(scope="module")
def written(store: Store) -> b.Fleet:
    for table in (GAUGE, ROLLUP_1M, ROLLUP_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    # ends on a whole hour a day ago, so every hour bucket is complete and within the raw TTL
    fleet = b.Fleet(
        b.FleetSpec(gpus=GPUS, teams=3, days=1, step=STEP, clusters=2, seed=3), int(time.time()) // HOUR * HOUR - 86_400
    )
    report = b.write(store, fleet, chunk_rows=20_000)
    assert report.rows == fleet.samples == GPUS * 360 * 5
    return fleet


def test_every_metric_every_gpu_every_step_once(store: Store, written: b.Fleet) -> None:
    rows = store.query_rows(
        f"SELECT MetricName, count(), uniqExact(Attributes['gpu.uuid']), uniqExact(TimeUnix), "
        f"min(toUnixTimestamp(TimeUnix)), max(toUnixTimestamp(TimeUnix)) FROM {GAUGE} GROUP BY MetricName"
    )
    assert {r[0] for r in rows} == set(b.METRIC_NAMES)
    for _, count, gpus, times, first, last in rows:
        assert (count, gpus, times) == (GPUS * written.steps, GPUS, written.steps)
        assert (first, last) == (written.start, written.end - STEP)


def test_every_series_has_team_cluster_host_model_and_the_simulated_label(store: Store, written: b.Fleet) -> None:
    missing = store.query_rows(
        f"SELECT count() FROM {GAUGE} WHERE NOT (ResourceAttributes['vigil.simulated'] = 'true'"
        " AND ResourceAttributes['team'] != '' AND ResourceAttributes['k8s.cluster.name'] != ''"
        " AND ResourceAttributes['host.name'] != '' AND Attributes['gpu.model'] != ''"
        " AND Attributes['gpu.uuid'] != '' AND ServiceName = 'vigil-gpu-agent')"
    )
    assert missing == [(0,)]
    teams = store.query_rows(
        f"SELECT ResourceAttributes['team'] AS t, uniqExact(Attributes['gpu.uuid']) FROM {GAUGE} "
        "GROUP BY t ORDER BY 2 DESC"
    )
    assert [n for _, n in teams] == [16, 8, 8]


def test_rollups_equal_raw_per_team_per_hour(store: Store, written: b.Fleet) -> None:
    group = "ResourceAttributes['team'] AS team, toStartOfHour(TimeUnix) AS hour"
    raw = store.query_rows(
        f"SELECT {group}, avg(Value), count() FROM {GAUGE} WHERE MetricName = 'gpu.utilization' "
        "GROUP BY team, hour ORDER BY team, hour"
    )
    # at a 240 s step every point is its own minute row: none reached the minute rollup's table, and
    # the minutes every read uses (the rollup and those points) still hold each one
    assert store.query_rows(f"SELECT count() FROM {ROLLUP_1M}") == [(0,)]
    for table in (ROLLUP_1H, MINUTES):
        rolled = store.query_rows(
            "SELECT ResourceAttributes['team'] AS team, toStartOfHour(TimeBucket) AS hour, sum(Sum) / sum(Count), "
            f"sum(Count) FROM {table} WHERE MetricName = 'gpu.utilization' GROUP BY team, hour ORDER BY team, hour"
        )
        assert len(rolled) == len(raw) == 3 * 24
        for (t1, h1, a1, c1), (t2, h2, a2, c2) in zip(raw, rolled, strict=True):
            assert (t1, h1, c1) == (t2, h2, c2)
            assert a2 == pytest.approx(a1, rel=1e-12)


def test_usage_gpu_hours_from_rollups_equal_raw(store: Store, written: b.Fleet) -> None:
    usage = pytest.importorskip("vigil.store.usage")
    from vigil.store.plan import Resolution

    now = time.time()
    answers = {}
    for source in (Resolution.RAW, Resolution.MINUTE, Resolution.HOUR):
        q = usage.UsageQuery(written.start, written.end, HOUR, group_by="team", source=source)
        answers[source] = {
            h.labels["team"]: (h.allocated_h, h.busy_h, h.idle_h, h.gpus) for h in usage.gpu_hours(store, q, now=now)
        }
    raw = answers[Resolution.RAW]
    assert sum(v[3] for v in raw.values()) == GPUS and sum(v[0] for v in raw.values()) == pytest.approx(GPUS * 24)
    for source in (Resolution.MINUTE, Resolution.HOUR):
        assert answers[source].keys() == raw.keys()
        for team, values in raw.items():
            assert answers[source][team] == pytest.approx(values, rel=1e-9)


def test_a_backfill_leaves_the_history_tables_merged(store: Store, written: b.Fleet) -> None:
    parts = store.query_rows(
        "SELECT table, partition, count() FROM system.parts WHERE active AND table IN {t:Array(String)} "
        "GROUP BY table, partition",
        {"t": list(b.SETTLED)},
    )
    assert parts and all(n == 1 for _, _, n in parts)  # one part per partition: nothing left to merge on read


def test_the_same_backfill_twice_writes_nothing_new(store: Store, written: b.Fleet) -> None:
    before = store.query_rows(f"SELECT count() FROM {GAUGE}")
    b.write(store, written, chunk_rows=20_000)
    assert store.query_rows(f"SELECT count() FROM {GAUGE}") == before


def test_measure_times_the_store_alone_and_the_backfill_over_the_same_chunks(store: Store, written: b.Fleet) -> None:
    before = store.query_rows(f"SELECT count() FROM {GAUGE}")
    report = b.write(store, written, chunk_rows=20_000, measure=True)  # 6 chunks: 1 alone, 4 pipelined, 1 alone
    summary = report.as_dict()
    assert report.rows == written.samples
    assert report.store_rows_per_s and report.backfill_rows_per_s and summary["ratio"]
    assert store.query_rows(f"SELECT count() FROM {GAUGE}") == before  # the same tokens: nothing twice


def vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def _counts(data: Path) -> tuple[int, int, int, int, int]:
    """Raw rows, the oldest raw time, and the samples in the hourly rollup, the minute rollup and the minutes."""
    sql = (
        "SELECT (SELECT count() FROM otel_metrics_gauge),"
        " (SELECT toUnixTimestamp(min(TimeUnix)) FROM otel_metrics_gauge),"
        " (SELECT sum(Count) FROM vigil_metrics_gauge_1h_v2), (SELECT sum(Count) FROM vigil_metrics_gauge_1m_v2),"
        " (SELECT sum(Count) FROM vigil_metrics_gauge_minutes)"
    )
    q = vigil("query", "--data", str(data), "--json", sql)
    assert q.returncode == 0, q.stderr
    [row] = json.loads(q.stdout)
    return tuple(int(v) for v in row)  # type: ignore[return-value]


def _backfill(data: Path, step: int) -> dict[str, int]:
    out = vigil(
        "backfill", "--gpus", "8", "--teams", "1", "--days", "3", "--step", str(step), "--metrics", "gpu.utilization",
        "--data", str(data), "--quiet", env={"VIGIL_RAW_TTL_DAYS": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["rows"] == 8 * 3 * 86_400 // step
    return summary


def test_rows_past_the_raw_ttl_reach_the_rollups_and_leave_raw(tmp_path: Path) -> None:
    """At a 30 s step a point shares its minute, so it goes to the minute rollup. Observed in chdb
    (ClickHouse 26.9): the insert itself drops the rows already past the TTL, so raw rows older than it
    are gone at once (live rows would go at a later merge). The views saw every row first."""
    summary = _backfill(tmp_path, 30)
    raw, oldest, hourly, minutely, minutes = _counts(tmp_path)
    assert hourly == minutely == minutes == summary["rows"]
    assert 0 < raw < summary["rows"]
    assert raw == 8 * ((summary["end"] - oldest) // 30)  # every row from the oldest on
    assert oldest >= time.time() - 86_400 - 60  # nothing older than the TTL (a minute for the run)


def test_points_a_minute_apart_are_their_own_minute_rows_kept_past_the_raw_ttl(tmp_path: Path) -> None:
    """At a 300 s step each point is alone in its minute: kept once, in the raw table, for as long as
    the minute rollup keeps minutes (90 days here), not copied into the rollup and not dropped at the
    raw TTL; reads of minutes still see every one."""
    summary = _backfill(tmp_path, 300)
    raw, oldest, hourly, minutely, minutes = _counts(tmp_path)
    assert raw == hourly == minutes == summary["rows"]
    assert minutely == 0
    assert oldest == summary["start"]


def test_backfill_is_refused_while_vigil_holds_the_store(tmp_path: Path) -> None:
    lock = PidLock(tmp_path / "clickhouse.lock").acquire()
    try:
        out = vigil("backfill", "--gpus", "8", "--teams", "1", "--days", "1", "--data", str(tmp_path), "--quiet")
    finally:
        lock.release()
    assert out.returncode == 1
    assert "in use by another Vigil process" in out.stderr and "stop `vigil up` first" in out.stderr


def test_bad_flags_are_named(tmp_path: Path) -> None:
    out = vigil("backfill", "--gpus", "0", "--teams", "1", "--days", "1", "--data", str(tmp_path))
    assert out.returncode == 1 and "--gpus 0" in out.stderr
