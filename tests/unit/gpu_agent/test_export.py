"""The exporter against a scripted loopback endpoint: order, keys, spool, retries, final refusals."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import MetricsData

from gpu_agent.export import Exporter, Poster
from gpu_agent.model import Snapshot
from gpu_agent.spool import DiskSpool, MemorySpool
from gpu_agent.telemetry import Telemetry
from tests.local import free_port
from tests.unit.gpu_agent.collector_stub import CollectorStub
from vigil import names as n

GPU = {n.GPU_INDEX: "0", n.GPU_UUID: "GPU-0"}


@pytest.fixture
def stub() -> Iterator[CollectorStub]:
    s = CollectorStub()
    yield s
    s.stop()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry({"service.name": "vigil-gpu-agent", n.HOST_NAME: "node-1"})
    yield t
    t.shutdown()


def data(telemetry: Telemetry, i: int) -> MetricsData:
    snapshot = Snapshot()
    snapshot.add(n.GPU_UTILIZATION, i, GPU)  # the value numbers the cycle, to check the order
    return telemetry.collect(snapshot, [])


def exporter(url: str, spool: DiskSpool | MemorySpool, telemetry: Telemetry | None = None, **kw: object) -> Exporter:
    return Exporter(Poster(url, "s3cret", timeout_s=5), spool, telemetry, min_backoff_s=0.05, max_backoff_s=0.2, **kw)  # type: ignore[arg-type]


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def cycles(stub: CollectorStub) -> list[float]:
    return [v for r in stub.delivered for v in r.values(n.GPU_UTILIZATION.name)]


def one_by_one(e: Exporter, telemetry: Telemetry, stub: CollectorStub, values: range) -> None:
    """Submit cycles one request at a time (a backlog would be merged into one request)."""
    for i in values:
        before = len(stub.received)
        e.submit(data(telemetry, i))
        assert wait_for(lambda before=before: len(stub.received) > before)


def test_batches_arrive_in_order_gzipped_with_token_and_one_key_each(stub: CollectorStub, telemetry: Telemetry) -> None:
    e = exporter(stub.url, MemorySpool(10**7), telemetry)
    e.start()
    for i in range(5):
        e.submit(data(telemetry, i))
    assert e.drain(15)
    e.close()
    assert cycles(stub) == [0, 1, 2, 3, 4]
    assert {r.authorization for r in stub.received} == {"Bearer s3cret"}
    assert {r.encoding for r in stub.received} == {"gzip"}
    keys = [r.key for r in stub.received]
    assert len(set(keys)) == len(keys) and all(k.startswith(f"vigil-agent-{e.run_id}-") for k in keys)
    assert e.stats.batches_sent == len(keys) and e.stats.points_sent == 5 and e.stats.failures == 0


def test_an_outage_is_spooled_and_replayed_in_order_with_the_same_keys(
    stub: CollectorStub, telemetry: Telemetry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script = [(503, {"Retry-After": "0"})] * 4 + [(500, {})] * 2
    e = exporter(stub.url, DiskSpool(tmp_path, 10**7), telemetry)
    e.start()
    with caplog.at_level(logging.INFO, logger="gpu_agent.export"):
        for i in range(6):
            e.submit(data(telemetry, i))
        assert e.drain(20)
    e.close()
    assert cycles(stub) == [0, 1, 2, 3, 4, 5]
    first_key = {}
    for r in stub.received:
        first_key.setdefault(r.values(n.GPU_UTILIZATION.name)[0], r.key)
        assert first_key[r.values(n.GPU_UTILIZATION.name)[0]] == r.key, "a retry changed its idempotency key"
    assert e.stats.failures == 6 and e.stats.batches_replayed >= 1
    events = [rec.getMessage() for rec in caplog.records]
    assert events.count("export_failing") == 1 and events.count("export_recovered") == 1  # not once per failure
    assert len(e.spool) == 0


def test_a_collector_that_is_not_there_yet_gets_everything_once_it_answers(telemetry: Telemetry) -> None:
    port = free_port()
    e = exporter(f"http://127.0.0.1:{port}", MemorySpool(10**7), telemetry)
    e.start()
    for i in range(4):
        e.submit(data(telemetry, i))
    assert wait_for(lambda: e.stats.failures >= 2 and e._queue.empty())
    assert e.spool.oldest().points == 4  # type: ignore[union-attr]  # never sent: merged into one batch
    stub = CollectorStub(port)
    try:
        e.submit(data(telemetry, 4))
        assert e.drain(15)
    finally:
        e.close()
        stub.stop()
    assert cycles(stub) == [0, 1, 2, 3, 4]


def test_a_4xx_refusal_is_final_dropped_counted_and_logged_once(
    stub: CollectorStub, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script = [(400, {}), (400, {})]
    e = exporter(stub.url, MemorySpool(10**7), telemetry)
    e.start()
    with caplog.at_level(logging.INFO, logger="gpu_agent.export"):
        one_by_one(e, telemetry, stub, range(4))
        assert e.drain(15)
    e.close()
    assert cycles(stub) == [2, 3]
    assert e.stats.dropped == {"rejected": 2}
    assert [r.getMessage() for r in caplog.records].count("batch_rejected") == 1


def test_an_unknown_token_is_retried_so_an_operator_can_fix_it(
    stub: CollectorStub, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script = [(401, {})] * 3
    e = exporter(stub.url, MemorySpool(10**7), telemetry)
    e.start()
    with caplog.at_level(logging.INFO, logger="gpu_agent.export"):
        e.submit(data(telemetry, 0))
        assert e.drain(15)
    e.close()
    assert cycles(stub) == [0] and not e.stats.dropped
    (failing,) = [r for r in caplog.records if r.getMessage() == "export_failing"]
    assert "check --token" in failing.fields["hint"]  # type: ignore[attr-defined]


def test_partial_success_is_counted_and_said_once(
    stub: CollectorStub, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    stub.rejected_points = 1
    e = exporter(stub.url, MemorySpool(10**7), telemetry)
    e.start()
    with caplog.at_level(logging.INFO, logger="gpu_agent.export"):
        one_by_one(e, telemetry, stub, range(3))
        assert e.drain(15)
    e.close()
    assert e.stats.points_rejected == 3
    assert [r.getMessage() for r in caplog.records].count("points_rejected") == 1


def test_what_cannot_be_drained_stays_spooled_and_a_restart_replays_it_with_its_keys(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    port = free_port()
    first = exporter(f"http://127.0.0.1:{port}", DiskSpool(tmp_path, 10**7), telemetry)
    first.start()
    for i in range(3):
        first.submit(data(telemetry, i))
    assert not first.drain(1.0)
    first.close()
    keys = [first.spool.oldest().key]  # type: ignore[union-attr]
    first.spool.close()
    assert len(list(tmp_path.glob("*.batch"))) >= 1

    stub = CollectorStub(port)
    second = exporter(stub.url, DiskSpool(tmp_path, 10**7), telemetry)
    second.start()
    try:
        second.submit(data(telemetry, 3))  # the new run's batch goes after the old run's
        assert second.drain(15)
    finally:
        second.close()
        stub.stop()
    assert cycles(stub) == [0, 1, 2, 3]
    assert stub.delivered[0].key == keys[0]  # the old run's batch, under the key it was spooled with
    assert stub.delivered[-1].key.startswith(f"vigil-agent-{second.run_id}-")


def test_batches_older_than_the_collector_accepts_are_dropped_at_replay(
    stub: CollectorStub, telemetry: Telemetry
) -> None:
    stub.script = [(503, {})]
    e = exporter(stub.url, MemorySpool(10**7), telemetry, max_age_s=0.0)
    e.start()
    e.submit(data(telemetry, 0))
    assert e.drain(15)
    e.close()
    assert cycles(stub) == []
    assert e.stats.dropped == {"expired": 1}


def test_a_slow_collector_never_blocks_submit_and_order_holds(stub: CollectorStub, telemetry: Telemetry) -> None:
    stub.delay_s = 0.2
    e = exporter(stub.url, MemorySpool(10**7), telemetry, max_queue=1)
    e.start()
    for i in range(6):
        e.submit(data(telemetry, i))  # returns at once: a full queue spills to the spool
    assert e.drain(20)
    e.close()
    assert cycles(stub) == [0, 1, 2, 3, 4, 5]


def test_a_full_spool_drops_the_oldest_and_counts_them(telemetry: Telemetry) -> None:
    port = free_port()
    e = exporter(f"http://127.0.0.1:{port}", MemorySpool(10**7), telemetry)
    e.submit(data(telemetry, 0))
    e.start()
    assert wait_for(lambda: len(e.spool) == 1)
    e.spool.max_bytes = int(e.spool.bytes * 2.5)  # room for about two batches
    for i in range(1, 6):
        e.submit(data(telemetry, i))
        assert wait_for(e._queue.empty)  # spooled as its own batch at the next retry
    assert wait_for(lambda: e.stats.dropped["spool_full"] >= 3)
    stub = CollectorStub(port)
    try:
        assert e.drain(15)
    finally:
        e.close()
        stub.stop()
    kept = cycles(stub)
    dropped = e.stats.dropped["spool_full"]
    assert kept == list(range(6 - len(kept), 6))  # the newest survive, in order
    assert dropped + len(kept) == 6 and e.stats.dropped_points >= dropped
