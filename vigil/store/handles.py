"""The history reads' own handles on an embedded store: a small pool, and reads run side by side on it.

chdb runs one query at a time per handle, so a read on the shared handle waits behind every rule
evaluation and insert in flight (measured: 150-450 ms per history request with the evaluator's 2 s
groups running). Handles of their own run beside those in the same engine. Two of them let one
question run its two independent reads at once (a series lookup beside the hourly totals: GPU-hours
in 14.2 ms against 22.0 one after the other, medians on the 256-GPU, 30-day store), each read still on
one thread of the engine, so an answer does not depend on which finished first.

Nobody holds a handle while waiting for another (each read takes one, runs one query and gives it
back), so requests sharing the pool queue but cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

T = TypeVar("T")
_on_worker = threading.local()
HANDLES = 2  # one question's reads at once; more would only share the same cores


class HistoryHandles:
    """At most `size` clients opened by `open_client`, each running one read at a time."""

    def __init__(
        self, open_client: Callable[[], Client], close_client: Callable[[Client], None], size: int = HANDLES
    ) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one handle, got {size}")
        self.size = size
        self._open_client = open_client
        self._close_client = close_client
        self._idle: list[Client] = []
        self._opened = 0
        self._closed = False
        self._free = threading.Condition()
        self._opening = threading.Lock()
        self._workers: ThreadPoolExecutor | None = None

    def _take(self) -> Client:
        with self._free:
            while True:
                if self._closed:
                    raise RuntimeError("the store is closed")
                if self._idle:
                    return self._idle.pop()
                if self._opened < self.size:
                    self._opened += 1
                    break
                self._free.wait()
        try:
            with self._opening:  # not under `_free`, which readers giving back need; one engine connect at a time
                return self._open_client()
        except BaseException:
            self._forget()
            raise

    def _give_back(self, client: Client) -> None:
        with self._free:
            if self._closed:
                self._close_client(client)
                return
            self._idle.append(client)
            self._free.notify()

    def _forget(self) -> None:
        with self._free:
            self._opened -= 1
            self._free.notify()

    def query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any] | None) -> list[tuple[Any, ...]]:
        client = self._take()
        try:
            rows = client.query(sql, parameters=parameters, settings=settings).result_rows
        except BaseException:
            # a failed query may leave the handle's session settings changed: the next read opens a clean one
            self._close_client(client)
            self._forget()
            raise
        self._give_back(client)
        return rows

    def together(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Each call's answer, in order; the first runs on this thread, the others on workers. Every call
        has ended when this returns (or raises the first failure in call order)."""
        if len(calls) < 2 or self.size < 2 or getattr(_on_worker, "yes", False):
            # on a worker already: waiting there for another worker could wait for itself
            return [call() for call in calls]
        workers = self._pool()
        others: list[Future[T]] = [workers.submit(_as_worker, call) for call in calls[1:]]
        try:
            answers = [calls[0]()]
        finally:
            wait(others)  # no read outlives the question that asked it
        return [*answers, *(f.result() for f in others)]

    def _pool(self) -> ThreadPoolExecutor:
        with self._free:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(self.size - 1, thread_name_prefix="vigil-history")
            return self._workers

    def close(self) -> None:
        with self._free:
            self._closed = True
            idle, self._idle = self._idle, []
            workers, self._workers = self._workers, None
            self._free.notify_all()
        if workers is not None:
            workers.shutdown(wait=True)
        for client in idle:
            self._close_client(client)


def _as_worker(call: Callable[[], T]) -> T:
    _on_worker.yes = True
    return call()
