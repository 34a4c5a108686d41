"""Migration 14 against the real embedded store: a gauge point that comes a minute or more after its
series' previous one is its own minute row. It stays in the raw table and never reaches the minute
rollup's table, and the minutes every read uses (`vigil_metrics_gauge_minutes`) answer avg, min, max,
last and count as the raw rows do, for such series, for dense ones, and for points whose interval is
wrong (an interval claims, it never decides an answer)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.rollup_answers import insert, raw, rolled, same
from vigil.store import Store
from vigil.store.schema import GAUGE, MINUTES, ROLLUP_1M

SPARSE, DENSE, LIAR = "0", "1", "2"  # gpu.index: 60 s apart; 20 s apart; 20 s apart claiming 60


def _points(base_ns: int) -> list[tuple[str, int, float, int]]:
    """(gpu, time ns, value, IntervalSeconds) over two hours, shuffled: blocks arrive out of order."""
    rng = random.Random(11)
    rows = []
    for gpu, step, claim in ((SPARSE, 60, 60), (DENSE, 20, 20), (LIAR, 20, 60)):
        for i, s in enumerate(range(7, 2 * 3600, step)):
            value = rng.choice([rng.uniform(0, 100), float(rng.randint(0, 100))])
            rows.append((gpu, base_ns + s * 10**9 + 123, value, claim if i else 0))
    rng.shuffle(rows)
    return rows


@pytest.fixture
def loaded(clean_store: Store) -> Store:
    hours_ago = datetime.now(UTC) - timedelta(hours=4)
    base_ns = int(hours_ago.replace(minute=0, second=0, microsecond=0).timestamp()) * 10**9
    insert(clean_store, _points(base_ns), 400)
    return clean_store


def test_minutes_answer_as_raw_rows_for_every_kind_of_series(loaded: Store) -> None:
    same(rolled(loaded, MINUTES), raw(loaded, "toStartOfMinute"))
    # hours from minutes: `last` across buckets goes by bucket, then by the time within one
    same(rolled(loaded, MINUTES, bucket="toStartOfHour(TimeBucket)"), raw(loaded, "toStartOfHour"))
    loaded.command(f"OPTIMIZE TABLE {ROLLUP_1M} FINAL")  # merged: the same answers
    same(rolled(loaded, MINUTES), raw(loaded, "toStartOfMinute"))


def test_a_point_alone_in_its_minute_is_kept_once_in_the_raw_table(loaded: Store) -> None:
    in_rollup = loaded.query_rows(
        f"SELECT Attributes['gpu.index'] AS gpu, sum(Count) FROM {ROLLUP_1M} GROUP BY gpu ORDER BY gpu"
    )
    # each series' first point has no known interval (0), so it goes to the rollup as a dense point does
    assert in_rollup == [(SPARSE, 1), (DENSE, 360), (LIAR, 1)]
    kept = loaded.query_rows(f"SELECT count() FROM {GAUGE} WHERE IntervalSeconds >= 60")
    assert kept == [(119 + 359,)]
    # the index on the interval lets a read of minutes skip the raw granules of dense series
    explain = loaded.query_rows(
        f"EXPLAIN indexes = 1 SELECT count() FROM {MINUTES} WHERE MetricName = 'gpu.utilization'"
    )
    assert any("idx_interval" in line for (line,) in explain)
