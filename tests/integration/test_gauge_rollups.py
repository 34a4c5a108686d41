"""Migration 13 against the real embedded store: the gauge rollups of plain columns answer avg, min, max,
last and count as the raw rows do, an install with migration 3's rollups keeps its history through the
migration (same answers before and after), and running the migration again changes nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.rollup_answers import insert, raw, rolled, same
from vigil.store import Store
from vigil.store.schema import ROLLUP_1H, ROLLUP_1M, SchemaContext, m003_gauge_rollups, m013_plain_gauge_rollups
from vigil.store.schema_minutes import own_minute_rows
from vigil.store.schema_rollups import OLD_ROLLUP_1H, OLD_ROLLUP_1M

BUCKETS = {ROLLUP_1M: "toStartOfMinute", ROLLUP_1H: "toStartOfHour"}


def _insert(store: Store, rows: list[tuple[int, int, float]]) -> None:
    """(gpu, time in ns, value) rows, in blocks of 500; no interval known, as another writer's."""
    insert(store, [(str(g), t, v, 0) for g, t, v in rows], 500)


def _raw(store: Store, table: str) -> list[tuple[Any, ...]]:
    return raw(store, BUCKETS[table])


def _rows(base_ns: int, seconds: range, seed: int) -> list[tuple[int, int, float]]:
    rng = random.Random(seed)
    rows = [
        (g, base_ns + s * 10**9 + g, rng.choice([rng.uniform(0, 100), float(rng.randint(0, 100))]))
        for g in range(3)
        for s in seconds
    ]
    rng.shuffle(rows)  # blocks out of time order: `last` must still be the latest sample's value
    return rows


@pytest.fixture
def base_ns() -> int:
    hours_ago = datetime.now(UTC) - timedelta(hours=4)
    return int(hours_ago.replace(minute=0, second=0, microsecond=0).timestamp()) * 10**9


def _truncate(store: Store, *tables: str) -> None:
    for table in tables:
        store.command(f"TRUNCATE TABLE IF EXISTS {table}")


def test_plain_rollups_answer_as_raw_rows(clean_store: Store, base_ns: int) -> None:
    _insert(clean_store, _rows(base_ns, range(0, 3 * 3600, 20), seed=3))
    for table in (ROLLUP_1M, ROLLUP_1H):
        same(rolled(clean_store, table), _raw(clean_store, table))
    # hours from minute buckets: `last` across buckets goes by bucket, then by the time within one
    same(rolled(clean_store, ROLLUP_1M, bucket="toStartOfHour(TimeBucket)"), _raw(clean_store, ROLLUP_1H))
    # after the engine merges every block's rows into one per series and bucket: the same answers
    for table in (ROLLUP_1M, ROLLUP_1H):
        clean_store.command(f"OPTIMIZE TABLE {table} FINAL")
        assert clean_store.query_rows(f"SELECT count() FROM {table}")[0][0] == len(_raw(clean_store, table))
        same(rolled(clean_store, table), _raw(clean_store, table))


def test_an_install_with_state_rollups_migrates_keeping_its_history(clean_store: Store, base_ns: int) -> None:
    store, ctx = clean_store, SchemaContext()
    # the store as migration 12 left it: migration 3's rollups and views, none of migration 13's
    for table in (ROLLUP_1M, ROLLUP_1H):
        store.command(f"DROP VIEW IF EXISTS {table}_mv SYNC")
        store.command(f"DROP TABLE IF EXISTS {table} SYNC")
    for sql in m003_gauge_rollups(ctx):
        store.command(sql)
    try:
        _insert(store, _rows(base_ns, range(0, 2 * 3600, 20), seed=5))
        old = "avgMerge(ValueAvg), min(ValueMin), max(ValueMax), argMaxMerge(ValueLast), toFloat64(sum(Count))"
        before = {
            new: rolled(store, old_table, old)
            for new, old_table in ((ROLLUP_1M, OLD_ROLLUP_1M), (ROLLUP_1H, OLD_ROLLUP_1H))
        }

        for sql in m013_plain_gauge_rollups(ctx):
            store.command(sql)
        for table in (ROLLUP_1M, ROLLUP_1H):
            same(rolled(store, table), before[table])
            same(rolled(store, table), _raw(store, table))
        gone = store.query_rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN {n:Array(String)}",
            {"n": [OLD_ROLLUP_1M, OLD_ROLLUP_1H, f"{OLD_ROLLUP_1M}_mv", f"{OLD_ROLLUP_1H}_mv"]},
        )
        assert gone == []

        # new points in buckets the copy filled, one later and one earlier than the copied last
        # sample: the copied rows kept their samples' times, so `last` follows time, not arrival
        late = [(0, base_ns + 59 * 10**9, 123.0), (1, base_ns + 30 * 10**9 - 7, -1.0)]
        _insert(store, late)
        for table in (ROLLUP_1M, ROLLUP_1H):
            same(rolled(store, table), _raw(store, table))

        # again, as after a run interrupted past its last statement: nothing copied twice, nothing lost
        rows = {t: store.query_rows(f"SELECT count(), sum(Count) FROM {t}") for t in (ROLLUP_1M, ROLLUP_1H)}
        for sql in m013_plain_gauge_rollups(ctx):
            store.command(sql)
        for table in (ROLLUP_1M, ROLLUP_1H):
            assert store.query_rows(f"SELECT count(), sum(Count) FROM {table}") == rows[table]
            same(rolled(store, table), _raw(store, table))
    finally:  # leave the session's store as `migrate` makes it
        for sql in [*m013_plain_gauge_rollups(ctx), *own_minute_rows(ctx)]:
            store.command(sql)
        _truncate(store, ROLLUP_1M, ROLLUP_1H)
