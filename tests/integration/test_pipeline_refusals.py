"""A request the store refuses is set aside alone; the rest of its batch, and the queue, go on."""

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from prometheus_client import CollectorRegistry

from collector.errors import RequestRefusedByStore, StoreUnavailable
from collector.pipeline import Outcome
from collector.service import Collector
from collector.wal import WalEntry
from tests.otlp import gauge_request
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.schema import GAUGE, INGEST_LEDGER

PB = "application/x-protobuf"


class PoisonStore:
    """The real store, refusing (as the engine would, with a data error code) any block holding `poison`."""

    def __init__(self, store: Store, down: bool = False) -> None:
        self._store = store
        self.down = down

    def insert_arrow(self, table: str, data: pa.Table, **kwargs: Any) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        if "poison" in data.column("MetricName").to_pylist():
            raise DatabaseError("Code: 53. DB::Exception: Type mismatch (TYPE_MISMATCH)", code=53)
        self._store.insert_arrow(table, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def make_collector(store: Any, tmp_path: Path, **overrides: Any) -> Collector:
    collector = Collector(Settings(data=tmp_path, **{"batch_wait_ms": 300, **overrides}), store, CollectorRegistry())
    collector.start()
    return collector


def ingest(collector: Collector, body: bytes) -> Future[Outcome]:
    _, future = collector.ingest(body, PB, None, None)
    assert future is not None
    return future


def count(store: Store, table: str = GAUGE) -> int:
    return store.query_rows(f"SELECT count() FROM {table}")[0][0]


def test_only_the_refused_request_fails_and_its_batch_mates_are_stored(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(PoisonStore(clean_store), tmp_path)
    good = [ingest(collector, gauge_request(10, ts=time.time_ns() + i)) for i in range(3)]
    bad = ingest(collector, gauge_request(5, name="poison"))
    more = [ingest(collector, gauge_request(10, ts=time.time_ns() + 10 + i)) for i in range(3)]
    with pytest.raises(RequestRefusedByStore, match="TYPE_MISMATCH"):
        bad.result(10)
    assert [f.result(10).stored for f in good + more] == [10] * 6
    assert ingest(collector, gauge_request(4, ts=time.time_ns() + 99)).result(10).stored == 4, "the queue moves"
    collector.close()
    assert count(clean_store) == 64
    assert count(clean_store, INGEST_LEDGER) == 7
    assert collector.pipeline.wal.batch_ids() == []
    assert len(list((tmp_path / "wal").glob("*.refused"))) == 1, "kept for inspection"
    ok, details = collector.health()
    assert ok and details["requests_set_aside"] == 1


def test_replay_sets_a_refused_request_aside_and_goes_on_to_later_batches(clean_store: Store, tmp_path: Path) -> None:
    first = make_collector(clean_store, tmp_path)
    first.close()
    wal = first.pipeline.wal
    now = time.time_ns()
    wal.write("00000000000000000001-aaaa", [WalEntry("a", PB, "identity", gauge_request(3, name="poison"), now)])
    wal.write(
        "00000000000000000002-bbbb",
        [
            WalEntry("b", PB, "identity", gauge_request(3, ts=now), now),
            WalEntry("c", PB, "identity", gauge_request(3, name="poison"), now),
        ],
    )
    wal.write("00000000000000000003-cccc", [WalEntry("d", PB, "identity", gauge_request(2, ts=now + 1), now)])
    restarted = make_collector(PoisonStore(clean_store), tmp_path)
    assert restarted.pipeline.wal.batch_ids() == []
    assert count(clean_store) == 5
    assert sorted(r[0] for r in clean_store.query_rows(f"SELECT Key FROM {INGEST_LEDGER}")) == ["b", "d"]
    assert len(list((tmp_path / "wal").glob("*.refused"))) == 2
    restarted.close()


def test_replay_validates_against_the_acceptance_time_kept_in_the_wal(clean_store: Store, tmp_path: Path) -> None:
    first = make_collector(clean_store, tmp_path, max_point_age_hours=1)
    first.close()
    long_ago = time.time_ns() - 2 * 3600 * 10**9  # past the 1-hour window today, fresh when accepted
    body = gauge_request(4, ts=long_ago + 1)
    first.pipeline.wal.write("00000000000000000001-aaaa", [WalEntry("k", PB, "identity", body, long_ago)])
    restarted = make_collector(clean_store, tmp_path, max_point_age_hours=1)
    assert count(clean_store) == 4
    assert clean_store.query_rows(f"SELECT Points FROM {INGEST_LEDGER} WHERE Key = 'k'") == [(4,)]
    restarted.close()


def test_health_reports_a_wal_that_does_not_drain(clean_store: Store, tmp_path: Path) -> None:
    store = PoisonStore(clean_store, down=True)
    collector = make_collector(store, tmp_path, wal_stuck_after_s=0.5, batch_wait_ms=10)
    collector.pipeline.retry_interval_s = 0.2
    assert collector.health()[0]
    with pytest.raises(StoreUnavailable):
        ingest(collector, gauge_request(3)).result(10)
    time.sleep(0.8)
    ok, details = collector.health()
    assert not ok and details["wal_batches"] == 1 and details["oldest_wal_age_s"] > 0.5
    assert "ConnectionError" in details["last_error"]
    store.down = False
    deadline = time.monotonic() + 10
    while not collector.health()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert collector.health()[0], "healthy again once the WAL drained"
    collector.close()
    assert count(clean_store) == 3
