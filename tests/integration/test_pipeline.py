"""The ingest pipeline against the real embedded store, in this process."""

import gzip
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.arrow import to_arrow
from collector.errors import IdempotencyConflict, QueueFull, StoreUnavailable
from collector.pipeline import Outcome
from collector.service import Collector
from collector.wal import WalEntry
from tests.otlp import gauge_request
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.schema import GAUGE, INGEST_LEDGER, MINUTES, ROLLUP_1M

PB = "application/x-protobuf"


def make_collector(store: Store, tmp_path: Path, **overrides: Any) -> Collector:
    settings = Settings(data=tmp_path, **{"batch_wait_ms": 50, **overrides})
    collector = Collector(settings, store, CollectorRegistry())
    collector.start()
    return collector


def count(store: Store, table: str = GAUGE) -> int:
    return store.query_rows(f"SELECT count() FROM {table}")[0][0]


def inserts(collector: Collector, table: str = GAUGE) -> float:
    return collector.metrics.insert_rows.labels(table)._sum.get(), sum(
        b.get() for b in collector.metrics.insert_rows.labels(table)._buckets
    )


def ingest(collector: Collector, body: bytes, key: str | None = None) -> Future[Outcome]:
    _, future = collector.ingest(body, PB, None, key)
    assert future is not None
    return future


def test_requests_arriving_together_share_one_insert(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(clean_store, tmp_path, batch_wait_ms=500)
    futures = [ingest(collector, gauge_request(100, ts=time.time_ns() + i)) for i in range(5)]
    assert [f.result(10).stored for f in futures] == [100] * 5
    collector.close()
    assert count(clean_store) == 500
    assert inserts(collector) == (500, 1)


def test_batches_close_at_batch_rows(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(clean_store, tmp_path, batch_rows=250, batch_wait_ms=2000)
    started = time.monotonic()
    futures = [ingest(collector, gauge_request(100, ts=time.time_ns() + i)) for i in range(5)]
    for f in futures:
        f.result(10)
    collector.close()
    assert count(clean_store) == 500
    assert inserts(collector) == (500, 3)  # 200 + 200 + 100: full batches did not wait
    assert time.monotonic() - started < 10


def test_a_retry_is_acknowledged_without_a_second_copy(clean_store: Store, tmp_path: Path) -> None:
    body = gauge_request(10)
    collector = make_collector(clean_store, tmp_path)
    assert ingest(collector, body).result(10) == Outcome(10)
    assert ingest(collector, gzip.compress(body) and body).result(10).duplicate
    collector.close()
    # a new process knows nothing in memory: the ledger answers
    fresh = make_collector(clean_store, tmp_path)
    assert ingest(fresh, body).result(10).duplicate
    keyed = gauge_request(10, ts=time.time_ns() + 1)
    assert ingest(fresh, keyed, key="client-key-1").result(10).stored == 10
    assert ingest(fresh, keyed, key="client-key-1").result(10).duplicate, "the key decides"
    with pytest.raises(IdempotencyConflict):
        ingest(fresh, gauge_request(3), key="client-key-1")  # the same key with another body is not a retry
    fresh.close()
    again = make_collector(clean_store, tmp_path)
    with pytest.raises(IdempotencyConflict):  # known to the ledger only: refused when its batch is taken
        ingest(again, gauge_request(3), key="client-key-1").result(10)
    again.close()
    assert count(clean_store) == 20
    assert count(clean_store, INGEST_LEDGER) == 2


def test_identical_requests_in_flight_together_are_stored_once(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(clean_store, tmp_path, batch_wait_ms=300)
    body = gauge_request(7)
    first, second = ingest(collector, body), ingest(collector, body)
    assert first is second
    first.result(10)
    collector.close()
    assert count(clean_store) == 7


def test_a_full_queue_refuses_and_keeps_what_it_accepted(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(clean_store, tmp_path, queue_rows=150, batch_rows=10_000, batch_wait_ms=1500)
    accepted = ingest(collector, gauge_request(100))
    with pytest.raises(QueueFull) as refused:
        ingest(collector, gauge_request(100, ts=time.time_ns() + 1))
    assert refused.value.status == 429 and refused.value.retry_after
    assert accepted.result(10).stored == 100
    assert ingest(collector, gauge_request(100, ts=time.time_ns() + 2)).result(10).stored == 100
    collector.close()
    assert count(clean_store) == 200


def test_a_batch_interrupted_between_tables_is_completed_from_the_wal(clean_store: Store, tmp_path: Path) -> None:
    """Crash after the first table's insert, before the ledger: replay must not duplicate."""
    body = gauge_request(40)
    first = make_collector(clean_store, tmp_path)
    first.close()
    conversion = first.convert_entry(WalEntry("k-crash", PB, "identity", body))
    batch_id = "00000000000000000001-deadbeef"
    first.pipeline.wal.write(batch_id, [WalEntry("k-crash", PB, "identity", body)])
    clean_store.insert_arrow(GAUGE, to_arrow(conversion.tables[GAUGE]), dedup_token=f"{batch_id}:{GAUGE}")
    assert count(clean_store) == 40 and count(clean_store, INGEST_LEDGER) == 0

    restarted = make_collector(clean_store, tmp_path)  # start() replays the WAL
    assert count(clean_store) == 40, "the table that had the batch skipped it (same token)"
    assert count(clean_store, INGEST_LEDGER) == 1
    assert restarted.pipeline.wal.batch_ids() == []
    assert ingest(restarted, body, key="k-crash").result(10).duplicate
    restarted.close()
    assert restarted.metrics.wal_replayed._value.get() == 1


class FailingStore:
    """The real store, with its next `failures` inserts raising as a dead server would."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store = store
        self.failures = failures

    def insert_arrow(self, *args: Any, **kwargs: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("connection refused")
        self._store.insert_arrow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_failed_insert_answers_503_keeps_the_batch_and_stores_it_once(clean_store: Store, tmp_path: Path) -> None:
    store = FailingStore(clean_store, failures=1)
    collector = make_collector(store, tmp_path)  # type: ignore[arg-type]
    collector.pipeline.retry_interval_s = 0.3
    body = gauge_request(25)
    with pytest.raises(StoreUnavailable):
        ingest(collector, body).result(10)
    with pytest.raises(StoreUnavailable, match="earlier copy"):
        ingest(collector, body)  # the retry must not race the WAL replay into a second copy
    deadline = time.monotonic() + 10
    while collector.pipeline._unstored and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ingest(collector, body).result(10).duplicate
    collector.close()
    assert count(clean_store) == 25


def test_a_waiter_that_gives_up_does_not_stop_the_writer(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(clean_store, tmp_path, batch_wait_ms=300)
    abandoned = ingest(collector, gauge_request(5))
    assert abandoned.cancel(), "the client went away before its batch was written"
    assert ingest(collector, gauge_request(6, ts=time.time_ns() + 1)).result(10).stored == 6
    collector.close()
    assert count(clean_store) == 11, "the abandoned request's rows were still stored"


def test_a_blank_idempotency_key_counts_as_none(clean_store: Store, tmp_path: Path) -> None:
    collector = make_collector(clean_store, tmp_path)
    assert ingest(collector, gauge_request(3), key="  ").result(10).stored == 3
    assert ingest(collector, gauge_request(4, ts=time.time_ns() + 1), key=" ").result(10).stored == 4
    collector.close()
    assert count(clean_store) == 7


def test_an_unreadable_wal_batch_is_set_aside(clean_store: Store, tmp_path: Path) -> None:
    first = make_collector(clean_store, tmp_path)
    first.close()
    first.pipeline.wal.write("00000000000000000002-badbad", [WalEntry("k", PB, "identity", b"x")])
    path = tmp_path / "wal" / "00000000000000000002-badbad.wal"
    path.write_bytes(path.read_bytes()[:-3] + b"???")
    restarted = make_collector(clean_store, tmp_path)
    assert restarted.pipeline.wal.batch_ids() == []
    assert (tmp_path / "wal" / "00000000000000000002-badbad.corrupt").exists()
    assert ingest(restarted, gauge_request(2)).result(10).stored == 2
    restarted.close()


def test_a_series_reporting_once_a_minute_is_kept_as_its_own_minute_rows(clean_store: Store, tmp_path: Path) -> None:
    """Through the collector into the store: the points after a series' first carry their interval, so
    at 60 s they stay in the raw table and the minute rollup's table gets only the first one."""
    collector = make_collector(clean_store, tmp_path)
    start = (time.time_ns() // 60_000_000_000 - 10) * 60_000_000_000
    for i in range(4):
        assert ingest(collector, gauge_request(3, name="slow", ts=start + i * 60 * 10**9)).result(10).stored == 3
    collector.close()
    intervals = clean_store.query_rows(
        f"SELECT IntervalSeconds, count() FROM {GAUGE} WHERE MetricName = 'slow' GROUP BY 1 ORDER BY 1"
    )
    assert intervals == [(0, 3), (60, 9)]
    rolled = clean_store.query_rows(f"SELECT sum(Count) FROM {ROLLUP_1M} WHERE MetricName = 'slow'")
    minutes = clean_store.query_rows(f"SELECT sum(Count) FROM {MINUTES} WHERE MetricName = 'slow'")
    assert rolled == [(3,)] and minutes == [(12,)]
