"""Stage 7, send: one worker thread per receiver integration, each with its own bounded queue and timeout,
so a slow or failing receiver never delays another, and handing a notification over never blocks.

Retries as Alertmanager's RetryStage: exponential backoff with jitter on 5xx and network errors
(timeouts included), `Retry-After` honoured on 429 (seconds or an HTTP date, bounded), any other
4xx final. The same request bytes are re-sent, so one attempt succeeds and nothing is doubled.
The queue holds at most one notification per group (a newer one replaces the waiting one: it
says everything the older said) and is bounded in notifications and bytes; when full the oldest
is dropped and counted. A notification given up on is not recorded, so the group's next flush
tries again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from alerting.config import IntegrationConfig
from alerting.notify.dedup import Entry
from alerting.notify.message import Notification, Request
from alerting.notify.metrics import NotifyMetrics
from vigil.logs import event

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 300.0  # a receiver cannot park us longer than this per attempt


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    retry_for_s: float = 3600.0  # then give up; the group's next flush sends again

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.initial_s * (2**attempt))
        return base * random.uniform(0.5, 1.0)  # jitter: receivers recovering are not hit in lockstep


@dataclass(frozen=True)
class Outgoing:
    notification: Notification
    request: Request
    entry: Entry  # what the record stage writes once it is delivered
    queued_at: float  # monotonic


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a 429's Retry-After asks for (a number or an HTTP date), bounded; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, min(MAX_RETRY_AFTER_S, seconds))


class Sender:
    """The worker of one receiver integration."""

    def __init__(
        self,
        name: str,
        config: IntegrationConfig,
        metrics: NotifyMetrics,
        on_sent: Callable[[Outgoing], None],
        backoff: Backoff | None = None,
        max_items: int = 1000,
        max_bytes: int = 8 * 1024 * 1024,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.on_sent = on_sent
        self.backoff = backoff or Backoff()
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._client = client or httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        self._queue: OrderedDict[str, Outgoing] = OrderedDict()
        self._bytes = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"notify-{name}", daemon=True)
        self.last_error = ""
        self.busy_since: float | None = None
        self._current: Outgoing | None = None

    # -- the evaluator's side: never blocks
    def submit(self, out: Outgoing) -> None:
        size = len(out.request.body)
        with self._cond:
            old = self._queue.pop(out.notification.group_key, None)
            if old is not None:
                self._bytes -= len(old.request.body)
            self._queue[out.notification.group_key] = out
            self._bytes += size
            while len(self._queue) > 1 and (len(self._queue) > self.max_items or self._bytes > self.max_bytes):
                _, dropped = self._queue.popitem(last=False)
                self._bytes -= len(dropped.request.body)
                self.metrics.dropped.labels(stage="send_queue").inc()
                event(
                    log,
                    "notification_dropped",
                    level=logging.WARNING,
                    stage="send_queue",
                    reason="queue full",
                    receiver=self.name,
                    group=dropped.notification.group_key,
                )
            self._cond.notify()

    def pending(self, group_key: str) -> Entry | None:
        """What the receiver will have been told of a group once the waiting or in-flight notification lands."""
        with self._cond:
            waiting = self._queue.get(group_key)
            if waiting is not None:
                return waiting.entry
            current = self._current
        if current is not None and current.notification.group_key == group_key:
            return current.entry
        return None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        self._client.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the worker's side
    def _take(self) -> Outgoing | None:
        with self._cond:
            while not self._queue and not self._stop.is_set():
                self._cond.wait(1.0)
            if self._stop.is_set():
                return None
            _, out = self._queue.popitem(last=False)
            self._bytes -= len(out.request.body)
            self._current = out
            return out

    def _superseded(self, out: Outgoing) -> bool:
        with self._cond:
            return out.notification.group_key in self._queue

    def _run(self) -> None:
        while (out := self._take()) is not None:
            self.busy_since = time.monotonic()
            try:
                self._deliver(out)
            except Exception as exc:  # a bug in one notification must not end the worker
                event(log, "notification_send_crashed", level=logging.ERROR, receiver=self.name, error=repr(exc))
            finally:
                self.busy_since = None
                self._current = None

    def _deliver(self, out: Outgoing) -> None:
        labels = {"receiver": self.name}
        started = time.monotonic()
        attempt = 0
        while not self._stop.is_set():
            wait, reason = self._attempt(out.request, attempt)
            if wait is None and not reason:
                self.metrics.notifications.labels(status="sent", **labels).inc()
                self.metrics.latency.labels(**labels).observe(time.monotonic() - out.queued_at)
                self.on_sent(out)
                return
            self.last_error = reason
            if wait is None:
                self.metrics.notifications.labels(status="failed", **labels).inc()
                event(log, "notification_failed", level=logging.WARNING, receiver=self.name, reason=reason)
                return
            if time.monotonic() - started + wait > self.backoff.retry_for_s:
                self.metrics.notifications.labels(status="gave_up", **labels).inc()
                event(log, "notification_gave_up", level=logging.WARNING, receiver=self.name, reason=reason)
                return
            self.metrics.notifications.labels(status="retried", **labels).inc()
            event(log, "notification_retry", receiver=self.name, reason=reason, wait_s=round(wait, 2), attempt=attempt)
            if self._stop.wait(wait):
                return
            if self._superseded(out):
                return  # a newer notification of this group waits in the queue and says more
            attempt += 1

    def _attempt(self, request: Request, attempt: int) -> tuple[float | None, str]:
        """(None, "") sent; (None, reason) final; (seconds, reason) retry after that long."""
        try:
            response = self._client.post(request.url, content=request.body, headers=dict(request.headers))
        except httpx.HTTPError as exc:
            return self.backoff.delay(attempt), f"{type(exc).__name__}: {exc}"[:300]
        if response.is_success:
            return None, ""
        detail = f"HTTP {response.status_code}: {response.text[:200]}"
        if response.status_code == 429:
            after = retry_after(response.headers.get("Retry-After"), time.time())
            return (after if after is not None else self.backoff.delay(attempt)), detail
        if response.status_code >= 500:
            return self.backoff.delay(attempt), detail
        return None, detail
