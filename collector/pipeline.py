"""From converted requests to durable rows: queue → batch → dedup → WAL → insert → ledger → ack.

Each stage is one method of `IngestPipeline`, run by one writer thread:

- `submit` (request threads): drop known retries, join an identical in-flight request, refuse
  a reused Idempotency-Key whose body differs (`IdempotencyConflict`), refuse with `QueueFull`
  when the bounded queue is at capacity, else enqueue with a future;
- `_take`: wait until `batch_rows` rows are queued or the oldest has waited `batch_wait_s`;
- `_drop_committed`: ask the ledger, in one query, which keys were already stored;
- `_commit`: write the batch to the WAL, store it (`collector.storing.BatchWriter`: every table,
  then the ledger, split on a data error), delete the WAL file, resolve the futures.

A request is acknowledged only when its future resolves, i.e. after its rows and its ledger row
are in ClickHouse. A batch whose insert fails because the store is unavailable stays in the WAL
and is retried with the same tokens; its requests get 503 and, until the retry lands, so do their
retries. A request whose rows the store refuses is answered 400 and set aside (`.refused` beside
the WAL); the rest of its batch is stored, so no request can hold the queue.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from collector.convert import Conversion
from collector.errors import IdempotencyConflict, QueueFull, RequestRefusedByStore, StoreUnavailable
from collector.metrics import CollectorMetrics
from collector.storing import LEDGER_COLUMNS, BatchWriter, Refusal, merge
from collector.wal import WalEntry, WriteAheadLog
from vigil.logs import event
from vigil.store import Store
from vigil.store.schema import INGEST_LEDGER

log = logging.getLogger(__name__)

__all__ = ["LEDGER_COLUMNS", "IngestPipeline", "Outcome", "merge", "new_batch_id"]

# Rough CPython cost of one remembered key beyond its text (OrderedDict node, two str headers).
_PER_KEY_BYTES = 200
_CONFLICT = "this Idempotency-Key was already used for a different body; send new data under a new key"


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


@dataclass
class _Unstored:
    """A batch in the WAL whose insert has not yet landed."""

    digests: dict[str, str]  # key → body digest
    created_ns: int
    failures: int = 0
    errors: list[str] = field(default_factory=list)


def new_batch_id() -> str:
    # Sortable by creation time, so WAL replay keeps the original order.
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def _created_ns(batch_id: str) -> int:
    try:
        return int(batch_id.split("-", 1)[0])
    except ValueError:
        return time.time_ns()


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
        remembered_keys_bytes: int = 16 * 1024 * 1024,
        retry_interval_s: float = 2.0,
        stuck_after_s: float = 60.0,
    ) -> None:
        self.store = store
        self.convert = convert
        self.wal = wal
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.batch_wait_s = batch_wait_s
        self.queue_rows = queue_rows
        self.retry_interval_s = retry_interval_s
        self.stuck_after_s = stuck_after_s
        self.writer = BatchWriter(store, metrics)
        self._remembered_keys_bytes = remembered_keys_bytes
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._inflight: dict[str, tuple[Future[Outcome], str]] = {}  # key → (future, body digest)
        self._committed: OrderedDict[str, str] = OrderedDict()  # key → body digest, oldest first
        self._committed_bytes = 0
        self._unstored: dict[str, _Unstored] = {}  # batch id in the WAL → its keys, insert not yet done
        self._next_retry = 0.0
        self._replay_failures = 0  # consecutive failed replays; reset when one lands
        self._last_error = ""
        self._set_aside = 0
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
            self._unstored[batch_id] = _Unstored({e.key: e.digest for e in entries}, _created_ns(batch_id))
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

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the WAL drains: False when a batch has waited past `stuck_after_s` or replays keep failing.

        Reads counters only (no store query, no lock), so a busy or stuck writer cannot delay it.
        """
        pending = list(self._unstored.values())
        oldest_s = (time.time_ns() - min(p.created_ns for p in pending)) / 1e9 if pending else 0.0
        stuck = bool(pending) and (oldest_s > self.stuck_after_s or self._replay_failures >= 3)
        return not stuck, {
            "queue_rows": self._queued_rows,
            "wal_batches": len(pending),
            "oldest_wal_age_s": round(oldest_s, 3),
            "replay_failures": self._replay_failures,
            "requests_set_aside": self._set_aside,
            "last_error": self._last_error,
        }

    # -- submit (request threads) --------------------------------------------------------

    def submit(self, entry: WalEntry, conversion: Conversion) -> Future[Outcome]:
        key, digest = entry.key, entry.digest
        with self._cond:
            if self._stopping:
                raise StoreUnavailable("the collector is shutting down; retry against another instance or later")
            known = self._committed.get(key)
            if known is not None:
                _check_same_body(known, digest)
                self.metrics.duplicate_requests.inc()
                return _done(Outcome(0, duplicate=True))
            for pending in self._unstored.values():
                waiting = pending.digests.get(key)
                if waiting is not None:
                    _check_same_body(waiting, digest)
                    raise StoreUnavailable("an earlier copy of this request is waiting to be stored; retry later")
            inflight = self._inflight.get(key)
            if inflight is not None:
                _check_same_body(inflight[1], digest)
                self.metrics.duplicate_requests.inc()
                return inflight[0]
            rows = conversion.accepted
            if self._queued_rows and self._queued_rows + rows > self.queue_rows:
                raise QueueFull(
                    f"ingest queue is full ({self._queued_rows} of {self.queue_rows} rows waiting); retry later"
                )
            future: Future[Outcome] = Future()
            self._inflight[key] = (future, digest)
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
            f"SELECT Key, any(BodySha256) FROM {INGEST_LEDGER} WHERE Key IN {{keys:Array(String)}} GROUP BY Key",
            {"keys": keys},
        )
        known = dict(rows)
        fresh = []
        for it in items:
            stored_digest = known.get(it.entry.key)
            if stored_digest is None:
                fresh.append(it)
            elif stored_digest and it.entry.digest and stored_digest != it.entry.digest:
                self._refuse(it, IdempotencyConflict(_CONFLICT))
            else:
                self.metrics.duplicate_requests.inc()
                self._resolve(it, Outcome(0, duplicate=True))
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
            refused = self.writer.write(batch_id, [it.entry for it in items], [it.conversion for it in items])
        except Exception as exc:
            self._fail(items, exc, batch_id=batch_id)
            return
        bad = {r.index: r.error for r in refused}
        self._set_aside_refused(batch_id, [items[i].entry for i in sorted(bad)], bad.values())
        self.wal.remove(batch_id)
        self.metrics.points_accepted.inc(sum(it.rows for i, it in enumerate(items) if i not in bad))
        for i, it in enumerate(items):
            if i in bad:
                self._refuse(it, RequestRefusedByStore(_refusal_message(bad[i])))
            else:
                self._resolve(it, Outcome(it.rows))

    def _set_aside_refused(self, batch_id: str, entries: list[WalEntry], errors: Any) -> None:
        if not entries:
            return
        self.wal.set_aside(batch_id, entries)
        self._set_aside += len(entries)
        self.metrics.requests_set_aside.inc(len(entries))
        first = next(iter(errors))
        self._last_error = f"{type(first).__name__}: {str(first)[:200]}"
        event(log, "requests_set_aside", level=logging.ERROR, batch=batch_id, requests=len(entries), error=first)

    def _fail(self, items: list[_Item], exc: Exception, batch_id: str | None) -> None:
        self.metrics.insert_failures.inc()
        self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        event(log, "batch_failed", level=logging.ERROR, batch=batch_id or "-", requests=len(items), error=exc)
        with self._cond:
            if batch_id is not None:
                digests = {it.entry.key: it.entry.digest for it in items}
                self._unstored[batch_id] = _Unstored(digests, _created_ns(batch_id))
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
            good: list[WalEntry] = []
            conversions: list[Conversion] = []
            refused: list[Refusal] = []
            for i, entry in enumerate(entries):
                try:
                    conversions.append(self.convert(entry))
                    good.append(entry)
                except Exception as exc:  # it converted once; a failure now is about this body alone
                    refused.append(Refusal(i, exc))
            try:
                refused_now = self.writer.write(batch_id, good, conversions)
            except Exception as exc:
                self.metrics.insert_failures.inc()
                self._replay_failures += 1
                self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                event(log, "wal_replay_failed", level=logging.WARNING, batch=batch_id, error=exc)
                self._next_retry = time.monotonic() + self.retry_interval_s
                return
            bad_entries = {good[r.index].key for r in refused_now} | {entries[r.index].key for r in refused}
            errors = [r.error for r in refused + refused_now]
            self._set_aside_refused(batch_id, [e for e in entries if e.key in bad_entries], errors)
            self.wal.remove(batch_id)
            self._replay_failures = 0
            stored = sum(c.accepted for e, c in zip(good, conversions, strict=True) if e.key not in bad_entries)
            self.metrics.wal_replayed.inc()
            self.metrics.points_accepted.inc(stored)
            with self._cond:
                pending = self._unstored.pop(batch_id, None)
                for key, digest in (pending.digests if pending else {}).items():
                    if key not in bad_entries:
                        self._remember(key, digest)
            event(log, "wal_replayed", batch=batch_id, requests=len(entries), rows=stored, set_aside=len(bad_entries))

    def _resolve(self, item: _Item, outcome: Outcome) -> None:
        with self._cond:
            self._inflight.pop(item.entry.key, None)
            self._remember(item.entry.key, item.entry.digest)
        _settle(item.future, outcome=outcome)

    def _refuse(self, item: _Item, error: Exception) -> None:
        with self._cond:
            self._inflight.pop(item.entry.key, None)
        _settle(item.future, error=error)

    def _remember(self, key: str, digest: str) -> None:
        if key in self._committed:
            return
        self._committed[key] = digest
        self._committed_bytes += len(key) + len(digest) + _PER_KEY_BYTES
        while self._committed_bytes > self._remembered_keys_bytes and self._committed:
            old_key, old_digest = self._committed.popitem(last=False)
            self._committed_bytes -= len(old_key) + len(old_digest) + _PER_KEY_BYTES


def _check_same_body(known: str, digest: str) -> None:
    if known and digest and known != digest:
        raise IdempotencyConflict(_CONFLICT)


def _refusal_message(error: Exception) -> str:
    return (
        f"the store refused this request's data ({type(error).__name__}: {str(error)[:300]}); "
        "it was set aside and will not be retried"
    )


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
