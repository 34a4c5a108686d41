"""OTLP/HTTP export on its own thread: in order, never twice, nothing lost while the collector is away.

The sampling loop hands each cycle's `MetricsData` to `submit()`, which never blocks: it numbers the
batch (sequence and idempotency key, fixed for life) and queues it. The export thread encodes it
with the SDK's OTLP encoder, gzips it and posts it with `Authorization: Bearer` and
`Idempotency-Key`. What cannot be delivered now goes to the spool:

- a connection error, a timeout, 429 or 5xx (and 401/403: a token is fixed by an operator, and
  the spool gives them time) → the batch is spooled; the spool is replayed oldest first with
  exponential backoff (Retry-After honoured). While the spool holds anything, new batches join it
  behind the older ones, so the collector receives batches in sequence order;
- any other 4xx is final (the batch would fail the same way forever): it is dropped, counted and
  logged once per status;
- a batch older than `max_age_s` is dropped at replay, counted, since the collector would refuse
  its points anyway.

A replayed batch carries the key it was first sent with, so a batch the collector stored but whose
answer was lost is acknowledged again and stored nothing.

Cycles the collector has never seen are merged into one request where several wait (a backlog
behind a slow collector, or an outage: up to `SPILL_AT` cycles are merged before they are spooled),
so replaying an hour of outage takes seconds and the collector gets few large inserts, not many
small ones. A batch, once sent, keeps its contents and key for life.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import queue
import random
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.sdk.metrics.export import MetricsData

import vigil
from gpu_agent.spool import Batch, Spool, SpoolError
from gpu_agent.telemetry import Telemetry, count_points
from vigil.logs import event

log = logging.getLogger(__name__)

USER_AGENT = f"vigil-gpu-agent/{vigil.__version__}"
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_AUTH_STATUS = {401, 403}


class Verdict(StrEnum):
    OK = "ok"
    RETRY = "retry"
    UNAUTHORIZED = "unauthorized"  # retried: an operator fixes the token, the spool bridges the gap
    FINAL = "final"


@dataclass
class Outcome:
    verdict: Verdict
    status: int = 0
    message: str = ""
    retry_after_s: float | None = None
    rejected_points: int = 0


class Poster:
    """POST /v1/metrics over one kept-alive connection (http.client: the leanest client there is)."""

    def __init__(self, url: str, token: str | None, timeout_s: float, ca_file: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url
        self._host, self._port = parts.hostname, parts.port
        self._https = parts.scheme == "https"
        base = parts.path.rstrip("/")
        self._path = base if base.endswith("/v1/metrics") else f"{base}/v1/metrics"
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context(cafile=ca_file) if self._https else None
        self._conn: http.client.HTTPConnection | None = None
        self._used = False  # whether the current connection has carried a request already

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout_s, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
            self._used = False
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, body: bytes, key: str) -> Outcome:
        for attempt in (1, 2):
            reused = self._conn is not None and self._used
            conn = self._connection()
            try:
                conn.request("POST", self._path, body=body, headers={**self._headers, "Idempotency-Key": key})
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed while idle fails on first use: try once more
                # on a fresh one before calling it an outage.
                if attempt == 1 and reused and isinstance(exc, (http.client.RemoteDisconnected, ConnectionError)):
                    continue
                return Outcome(Verdict.RETRY, message=f"{type(exc).__name__}: {exc}")
            self._used = True
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return self._outcome(response, payload)
        return Outcome(Verdict.RETRY, message="connection closed")  # pragma: no cover - the loop returns

    @staticmethod
    def _outcome(response: http.client.HTTPResponse, payload: bytes) -> Outcome:
        status = response.status
        if 200 <= status < 300:
            rejected, message = 0, ""
            if payload and "protobuf" in response.getheader("Content-Type", ""):
                answer = ExportMetricsServiceResponse()
                try:
                    answer.ParseFromString(payload)
                    rejected = answer.partial_success.rejected_data_points
                    message = answer.partial_success.error_message
                except Exception:  # an answer we cannot read still means delivered
                    pass
            return Outcome(Verdict.OK, status, message, rejected_points=rejected)
        message = _status_message(payload, response.getheader("Content-Type", ""))
        retry_after = _retry_after(response.getheader("Retry-After"))
        if status in _RETRY_STATUS or status >= 500:
            return Outcome(Verdict.RETRY, status, message, retry_after)
        if status in _AUTH_STATUS:
            return Outcome(Verdict.UNAUTHORIZED, status, message, retry_after)
        return Outcome(Verdict.FINAL, status, message)


def _status_message(payload: bytes, content_type: str) -> str:
    if "protobuf" in content_type:
        status = status_pb2.Status()
        try:
            status.ParseFromString(payload)
            return status.message
        except Exception:
            pass
    return payload[:300].decode(errors="replace")


def _retry_after(value: str | None) -> float | None:
    try:
        return min(300.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None  # an HTTP date: rare from a collector, the backoff covers it


def encode(data: MetricsData) -> tuple[bytes, int]:
    """(gzipped OTLP protobuf, points)."""
    return gzip.compress(encode_metrics(data).SerializeToString(), 6), count_points(data)


Item = tuple[int, str, int, MetricsData]  # (sequence, idempotency key, created ns, data) of one cycle
MAX_BATCH_RAW_BYTES = 4 * 1024 * 1024  # a merged request stays well under the collector's 16 MiB limit
MAX_MERGE = 120  # cycles in one request at most
SPILL_AT = 10  # during an outage, cycles held in memory before they are merged into one spooled batch


@dataclass
class ExportStats:
    batches_sent: int = 0
    points_sent: int = 0
    batches_replayed: int = 0
    failures: int = 0
    points_rejected: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_points: int = 0
    last_error: str = ""
    last_success: float = 0.0  # time.time()


class Exporter:
    """The export thread, its queue and the spool."""

    def __init__(
        self,
        poster: Poster,
        spool: Spool,
        telemetry: Telemetry | None = None,
        max_queue: int = 32,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_age_s: float = 13 * 86400.0,
    ) -> None:
        self.poster = poster
        self.spool = spool
        self.telemetry = telemetry
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_age_s = max_age_s
        self.run_id = uuid.uuid4().hex
        self.stats = ExportStats()
        self._queue: queue.Queue[Item] = queue.Queue(max_queue)
        self._seq = spool.next_seq()
        self._seq_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._idle = threading.Event()
        self._backoff = min_backoff_s
        self._retry_at = 0.0
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        self._final_logged: set[int] = set()
        self._spill_warned = False
        self._full_warned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)

    # -- the sampling side

    def submit(self, data: MetricsData) -> None:
        """Queue one cycle's data; never blocks. A full queue (the collector is slow, not down)
        spills the batch to the spool from this thread: later than waiting, never lost."""
        with self._seq_lock:
            seq = self._seq
            self._seq += 1
        item = (seq, f"vigil-agent-{self.run_id}-{seq}", time.time_ns(), data)
        self._idle.clear()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if not self._spill_warned:
                self._spill_warned = True
                event(log, "export_queue_full", level=logging.WARNING, queued=self._queue.qsize(), action="spooling")
            for batch in self._encode([item]):
                self._to_spool(batch)
        self._wake.set()

    # -- the export thread

    def start(self) -> None:
        self._thread.start()

    def _encode(self, items: list[Item]) -> list[Batch]:
        """Cycles the collector has never seen, as few batches as the size bound allows.

        Serialized OTLP requests concatenate into one valid request, so consecutive cycles become one
        request with the first cycle's sequence and key (the others' keys were never used). A batch
        that has been sent once is never merged again: its key must keep meaning the same points.
        """
        batches: list[Batch] = []
        parts: list[bytes] = []
        size = points = 0
        head: Item | None = None

        def close() -> None:
            if head is not None and parts:
                body = gzip.compress(b"".join(parts), 6)
                batches.append(Batch(head[0], head[1], head[2], points, body))

        for item in items:
            try:
                raw = encode_metrics(item[3]).SerializeToString()
            except Exception as exc:  # the SDK's encoder refused a point: that cycle can never be sent
                self.stats.dropped["unencodable"] += 1
                event(log, "batch_unencodable", level=logging.ERROR, seq=item[0], error=str(exc))
                continue
            if parts and (size + len(raw) > MAX_BATCH_RAW_BYTES or len(parts) >= MAX_MERGE):
                close()
                parts, size, points, head = [], 0, 0, None
            if head is None:
                head = item
            parts.append(raw)
            size += len(raw)
            points += count_points(item[3])
        close()
        return batches

    def _queued(self, limit: int = MAX_MERGE) -> list[Item]:
        items: list[Item] = []
        while len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the export thread must outlive any one bad moment; it logs and goes on
                log.exception("export_step_failed")
                self._stop.wait(1.0)

    def _step(self) -> None:
        if len(self.spool):
            now = time.monotonic()
            due = now >= self._retry_at
            if due or self._queue.qsize() >= SPILL_AT or self._draining.is_set():
                self._spill_queue()
            if not due:
                self._wake.wait(min(self._retry_at - now, 0.5))
                self._wake.clear()
                return
            batch = self.spool.oldest()
            if batch is not None:
                self._deliver(batch, spooled=True)
            return
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            self._idle.set()
            return
        # a backlog (a slow collector) leaves as one request: the exporter keeps up with any interval
        for batch in self._encode([first, *self._queued()]):
            if len(self.spool):  # a failure, or the sampler spilled a later cycle: keep the order
                self._to_spool(batch)
            else:
                self._deliver(batch, spooled=False)

    def _spill_queue(self) -> None:
        while items := self._queued():
            for batch in self._encode(items):
                self._to_spool(batch)

    def _to_spool(self, batch: Batch) -> None:
        try:
            dropped = self.spool.append(batch)
        except SpoolError as exc:
            dropped = [batch]
            event(log, "spool_write_failed", level=logging.ERROR, error=str(exc))
        if dropped:
            self._count_dropped("spool_full", dropped)
            now = time.monotonic()
            if now - self._full_warned_at > 60:
                self._full_warned_at = now
                event(
                    log,
                    "spool_full",
                    level=logging.WARNING,
                    dropped_batches=self.stats.dropped["spool_full"],
                    max_bytes=self.spool.max_bytes,
                    action="oldest batches dropped",
                )

    def _count_dropped(self, reason: str, batches: list[Batch]) -> None:
        self.stats.dropped[reason] += len(batches)
        self.stats.dropped_points += sum(b.points for b in batches)
        if self.telemetry is not None:
            self.telemetry.dropped.add(len(batches), {"reason": reason})

    def _deliver(self, batch: Batch, spooled: bool) -> None:
        if spooled and time.time_ns() - batch.created_ns > self.max_age_s * 1e9:
            self.spool.remove(batch.seq)
            self._count_dropped("expired", [batch])
            event(log, "batch_expired", level=logging.WARNING, seq=batch.seq, points=batch.points)
            return
        outcome = self.poster.post(batch.body, batch.key)
        if outcome.verdict is Verdict.OK:
            if spooled:
                self.spool.remove(batch.seq)
                self.stats.batches_replayed += 1
            self._succeeded(batch, outcome)
            return
        if outcome.verdict is Verdict.FINAL:
            if spooled:
                self.spool.remove(batch.seq)
            self._count_dropped("rejected", [batch])
            if outcome.status not in self._final_logged:  # once per status: the next ones would say the same
                self._final_logged.add(outcome.status)
                event(
                    log,
                    "batch_rejected",
                    level=logging.ERROR,
                    status=outcome.status,
                    error=outcome.message,
                    action="dropped; the collector refuses this batch for good",
                )
            return
        if not spooled:
            self._to_spool(batch)
        self._failed(outcome)

    def _succeeded(self, batch: Batch, outcome: Outcome) -> None:
        stats = self.stats
        stats.batches_sent += 1
        stats.points_sent += batch.points
        stats.last_success = time.time()
        self._backoff = self.min_backoff_s
        self._retry_at = 0.0
        if outcome.rejected_points:
            stats.points_rejected += outcome.rejected_points
            if self.telemetry is not None:
                self.telemetry.points_rejected.add(outcome.rejected_points)
            if stats.points_rejected == outcome.rejected_points:  # first partial success: say why, once
                event(log, "points_rejected", level=logging.WARNING, error=outcome.message)
        if self._failing_since is not None:
            event(
                log,
                "export_recovered",
                down_s=round(time.monotonic() - self._failing_since, 1),
                spooled_batches=len(self.spool),
            )
            self._failing_since = None

    def _failed(self, outcome: Outcome) -> None:
        stats = self.stats
        stats.failures += 1
        error = f"HTTP {outcome.status}: {outcome.message}" if outcome.status else outcome.message
        stats.last_error = error
        if self.telemetry is not None:
            self.telemetry.export_failures.add(1)
        if outcome.retry_after_s is not None:
            delay = outcome.retry_after_s
        else:  # while draining at exit there is nothing else to do: retry at least every second
            delay = min(self._backoff, 1.0 if self._draining.is_set() else self.max_backoff_s)
        self._retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, self.max_backoff_s)
        now = time.monotonic()
        if self._failing_since is None or now - self._last_failure_log > 60:
            first = self._failing_since is None
            if first:
                self._failing_since = now
            self._last_failure_log = now
            hint = ""
            if outcome.verdict is Verdict.UNAUTHORIZED:
                hint = "the collector refused the bearer token: check --token (or VIGIL_AGENT_TOKEN)"
            event(
                log,
                "export_failing" if first else "export_still_failing",
                level=logging.WARNING if outcome.verdict is Verdict.RETRY else logging.ERROR,
                collector=self.poster.url,
                error=error,
                spooled_batches=len(self.spool),
                spooled_bytes=self.spool.bytes,
                **({"hint": hint} if hint else {}),
            )

    # -- shutting down

    @property
    def pending(self) -> int:
        """Batches not yet acknowledged: queued plus spooled (plus one in flight, when busy)."""
        return self._queue.qsize() + len(self.spool) + (0 if self._idle.is_set() else 1)

    def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted batch is acknowledged or given up; True when nothing is left."""
        self._draining.set()
        self._backoff = min(self._backoff, 1.0)
        self._retry_at = min(self._retry_at, time.monotonic() + 1.0)
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.empty() and not len(self.spool) and self._idle.wait(0.05):
                if self._queue.empty() and not len(self.spool):
                    return True
            else:
                time.sleep(0.05)
        return self._queue.empty() and not len(self.spool) and self._idle.is_set()

    def close(self) -> None:
        """Stop the thread (after its request in flight) and keep whatever is still queued in the spool."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.poster.timeout_s + 2)
        self._spill_queue()
        self.poster.close()
