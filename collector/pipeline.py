"""From converted requests to durable rows: queue → batch → dedup → WAL → insert → ledger → ack.

Each stage is one method of `IngestPipeline`, run by one writer thread:

- `submit` (request threads): drop known retries, join an identical in-flight request, refuse
  with `QueueFull` when the bounded queue is at capacity, else enqueue with a future;
- `_take`: wait until `batch_rows` rows are queued or the oldest has waited `batch_wait_s`;
- `_drop_committed`: ask the ledger, in one query, which keys were already stored;
- `_commit`: write the batch to the WAL, insert each table's columns with the dedup token
  `<batch>:<table>`, record the keys in the ledger, delete the WAL file, resolve the futures.

A request is acknowledged only when its future resolves, i.e. after its rows and its ledger row
are in ClickHouse. A batch whose insert fails stays in the WAL and is retried with the same tokens;
its requests get 503 and, until the retry lands, so do their retries.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.arrow import to_arrow
from collector.convert import Conversion, TableColumns
from collector.errors import QueueFull, StoreUnavailable
from collector.metrics import CollectorMetrics
from collector.wal import WalEntry, WriteAheadLog
from vigil.logs import event
from vigil.store import Store
from vigil.store.schema import INGEST_LEDGER, METRIC_TABLES

log = logging.getLogger(__name__)

LEDGER_COLUMNS = ("Key", "BatchId", "Points", "CommittedAt")


@dataclass(frozen=True)
class Outcome:
    stored: int
    duplicate: bool = False


@dataclass
class _Item:
    entry: WalEntry
    conversion: Conversion
    future: Future[Outcome]
    enqueued_at: float

    @property
    def rows(self) -> int:
        return self.conversion.accepted


def new_batch_id() -> str:
    # Sortable by creation time, so WAL replay keeps the original order.
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def merge(conversions: Iterable[Conversion]) -> dict[str, TableColumns]:
    tables: dict[str, TableColumns] = {}
    for conversion in conversions:
        for table, cols in conversion.tables.items():
            if not cols.rows:
                continue
            if table not in tables:
                tables[table] = TableColumns(table)
            tables[table].extend(cols)
    return tables


class IngestPipeline:
    def __init__(
        self,
        store: Store,
        convert: Callable[[WalEntry], Conversion],
        wal: WriteAheadLog,
        metrics: CollectorMetrics,
        *,
        batch_rows: int,
        batch_wait_s: float,
        queue_rows: int,
        writers: int = 2,
        remembered_keys: int = 200_000,
        retry_interval_s: float = 2.0,
    ) -> None:
        self.store = store
        self.convert = convert
        self.wal = wal
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.batch_wait_s = batch_wait_s
        self.queue_rows = queue_rows
        self.retry_interval_s = retry_interval_s
        self._remembered_keys = remembered_keys
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._inflight: dict[str, Future[Outcome]] = {}
        self._committed: OrderedDict[str, None] = OrderedDict()
        self._unstored: dict[str, list[str]] = {}  # batch id in the WAL → its keys, insert not yet done
        self._next_retry = 0.0
        self._stopping = False
        self.writers = writers
        self._threads: list[threading.Thread] = []
        self._retry_lock = threading.Lock()  # one writer at a time replays the WAL
        metrics.queue_capacity.set(queue_rows)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.wal.discard_torn()
        for batch_id in self.wal.batch_ids():
            entries = self.wal.read(batch_id)
            if entries is None:  # never acknowledged: its clients resend those requests
                self.wal.quarantine(batch_id)
                event(log, "wal_unreadable", level=logging.ERROR, batch=batch_id)
                continue
            self._unstored[batch_id] = [e.key for e in entries]
        self._retry_unstored()
        self._threads = [
            threading.Thread(target=self._run, name=f"collector-writer-{i}", daemon=True) for i in range(self.writers)
        ]
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 8.0) -> None:
        """Stop taking requests, store everything queued, then return."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            event(log, "writer_stop_timeout", level=logging.WARNING, queued_rows=self._queued_rows)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # -- submit (request threads) --------------------------------------------------------

    def submit(self, entry: WalEntry, conversion: Conversion) -> Future[Outcome]:
        key = entry.key
        with self._cond:
            if self._stopping:
                raise StoreUnavailable("the collector is shutting down; retry against another instance or later")
            if key in self._committed:
                self.metrics.duplicate_requests.inc()
                return _done(Outcome(0, duplicate=True))
            if any(key in keys for keys in self._unstored.values()):
                raise StoreUnavailable("an earlier copy of this request is waiting to be stored; retry later")
            inflight = self._inflight.get(key)
            if inflight is not None:
                return inflight
            rows = conversion.accepted
            if self._queued_rows and self._queued_rows + rows > self.queue_rows:
                raise QueueFull(
                    f"ingest queue is full ({self._queued_rows} of {self.queue_rows} rows waiting); retry later"
                )
            future: Future[Outcome] = Future()
            self._inflight[key] = future
            self._queue.append(_Item(entry, conversion, future, time.monotonic()))
            self._queued_rows += rows
            self.metrics.queue_rows.set(self._queued_rows)
            if len(self._queue) == 1 or self._queued_rows >= self.batch_rows:
                self._cond.notify_all()  # the writer learns the batch's due time, or that it is full
            return future

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            try:
                if items:
                    self._commit(items)
                if self._unstored and time.monotonic() >= self._next_retry:
                    self._retry_unstored()
            except Exception as exc:  # a writer that dies would leave its requests waiting forever
                event(log, "writer_error", level=logging.ERROR, error=exc)
                self._fail([it for it in items if not it.future.done()], exc, batch_id=None)

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._queue:
                    due = self._queue[0].enqueued_at + self.batch_wait_s
                    if self._queued_rows >= self.batch_rows or self._stopping or now >= due:
                        break
                    self._cond.wait(due - now)
                elif self._stopping:
                    return None
                elif self._unstored and now >= self._next_retry:
                    return []
                else:
                    self._cond.wait(self.retry_interval_s)
            items: list[_Item] = []
            rows = 0
            while self._queue and (not items or rows + self._queue[0].rows <= self.batch_rows):
                item = self._queue.popleft()
                items.append(item)
                rows += item.rows
            self._queued_rows -= rows
            self.metrics.queue_rows.set(self._queued_rows)
            return items

    def _drop_committed(self, items: list[_Item]) -> list[_Item]:
        """Resolve the requests the ledger already holds (a retry after a lost answer)."""
        keys = [it.entry.key for it in items]
        rows = self.store.query_rows(
            f"SELECT DISTINCT Key FROM {INGEST_LEDGER} WHERE Key IN {{keys:Array(String)}}", {"keys": keys}
        )
        known = {r[0] for r in rows}
        fresh = []
        for it in items:
            if it.entry.key in known:
                self.metrics.duplicate_requests.inc()
                self._resolve(it, Outcome(0, duplicate=True))
            else:
                fresh.append(it)
        return fresh

    def _commit(self, items: list[_Item]) -> None:
        batch_id = new_batch_id()
        try:
            items = self._drop_committed(items)
            if not items:
                return
            self.wal.write(batch_id, [it.entry for it in items])
        except Exception as exc:
            self._fail(items, exc, batch_id=None)
            return
        try:
            stored = self._insert(batch_id, [it.conversion for it in items], [it.entry.key for it in items])
        except Exception as exc:
            self._fail(items, exc, batch_id=batch_id)
            return
        self.wal.remove(batch_id)
        self.metrics.points_accepted.inc(stored)
        for it in items:
            self._resolve(it, Outcome(it.rows))

    def _insert(self, batch_id: str, conversions: list[Conversion], keys: list[str]) -> int:
        tables = merge(conversions)
        stored = 0
        for table in METRIC_TABLES:
            cols = tables.get(table)
            if cols is None:
                continue
            started = time.perf_counter()
            self.store.insert_arrow(table, to_arrow(cols), dedup_token=f"{batch_id}:{table}")
            self.metrics.insert_seconds.labels(table).observe(time.perf_counter() - started)
            self.metrics.insert_rows.labels(table).observe(cols.rows)
            stored += cols.rows
        now = datetime.now(UTC)
        ledger = [keys, [batch_id] * len(keys), [c.accepted for c in conversions], [now] * len(keys)]
        self.store.insert_columns(INGEST_LEDGER, ledger, LEDGER_COLUMNS, dedup_token=f"{batch_id}:ledger")
        return stored

    def _fail(self, items: list[_Item], exc: Exception, batch_id: str | None) -> None:
        self.metrics.insert_failures.inc()
        event(log, "batch_failed", level=logging.ERROR, batch=batch_id or "-", requests=len(items), error=exc)
        with self._cond:
            if batch_id is not None:
                self._unstored[batch_id] = [it.entry.key for it in items]
                self._next_retry = time.monotonic() + self.retry_interval_s
        error = StoreUnavailable(f"the store did not take the batch ({type(exc).__name__}); retry later")
        for it in items:
            with self._cond:
                self._inflight.pop(it.entry.key, None)
            _settle(it.future, error=error)

    def _retry_unstored(self) -> None:
        """Store the batches left in the WAL, with their original tokens, oldest first."""
        if not self._retry_lock.acquire(blocking=False):
            return
        try:
            self._replay_pending()
        finally:
            self._retry_lock.release()

    def _replay_pending(self) -> None:
        for batch_id in sorted(self._unstored):
            entries = self.wal.read(batch_id)
            if entries is None:  # unreadable: its requests were answered 503, so clients resend them
                self.wal.quarantine(batch_id)
                with self._cond:
                    self._unstored.pop(batch_id, None)
                event(log, "wal_unreadable", level=logging.ERROR, batch=batch_id)
                continue
            try:
                conversions = [self.convert(e) for e in entries]
                stored = self._insert(batch_id, conversions, [e.key for e in entries])
            except Exception as exc:
                self.metrics.insert_failures.inc()
                event(log, "wal_replay_failed", level=logging.WARNING, batch=batch_id, error=exc)
                self._next_retry = time.monotonic() + self.retry_interval_s
                return
            self.wal.remove(batch_id)
            self.metrics.wal_replayed.inc()
            self.metrics.points_accepted.inc(stored)
            with self._cond:
                for key in self._unstored.pop(batch_id, []):
                    self._remember(key)
            event(log, "wal_replayed", batch=batch_id, requests=len(entries), rows=stored)

    def _resolve(self, item: _Item, outcome: Outcome) -> None:
        with self._cond:
            self._inflight.pop(item.entry.key, None)
            self._remember(item.entry.key)
        _settle(item.future, outcome=outcome)

    def _remember(self, key: str) -> None:
        self._committed[key] = None
        if len(self._committed) > self._remembered_keys:
            self._committed.popitem(last=False)


def _settle(future: Future[Outcome], outcome: Outcome | None = None, error: Exception | None = None) -> None:
    """Resolve a request's future unless its waiter already gave up (a cancelled future)."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]
    except InvalidStateError:
        pass  # cancelled between the check and the set


def _done(outcome: Outcome) -> Future[Outcome]:
    future: Future[Outcome] = Future()
    future.set_result(outcome)
    return future
