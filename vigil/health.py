"""What `/healthz` answers: the store, each service and each child, from state cached off the request path.

A probe thread pings the store and asks every service for its health once a second; `/healthz`
only reads the last snapshot. So a flood of ingest work (which holds the request threadpool and
the store) can make the answer older, never late: the snapshot says how old it is, and a store
ping that has not returned within its timeout counts as the store being unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from vigil.kernel import Health, Service
from vigil.logs import event

log = logging.getLogger(__name__)


class ChildState(Protocol):
    """One child's cached state, as the supervisor's `health()` gives it."""

    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


class HealthMonitor:
    def __init__(
        self,
        ping: Callable[[], bool],
        services: Sequence[Service],
        children: Callable[[], Mapping[str, ChildState]] | None = None,
        interval_s: float = 1.0,
        ping_timeout_s: float = 2.0,
    ) -> None:
        """`children`: the supervisor's `health()`; `ping`: the store's, run on a thread of its own."""
        self._ping = ping
        self._services = list(services)
        self._children = children or (lambda: {})
        self.interval_s = interval_s
        self.ping_timeout_s = ping_timeout_s
        # its own thread: a ping must never queue behind ingest work in the request threadpool
        self._pinger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-ping")
        self._ping_future: Future[bool] | None = None
        self._ping_since = 0.0
        self._store: dict[str, Any] = {"reachable": False, "error": "not checked yet"}
        self._services_health: dict[str, dict[str, Any]] = {}
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._pinger.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception as exc:  # the probe thread must outlive any one bad check
                event(log, "health_check_failed", level=logging.WARNING, error=repr(exc))

    def refresh(self) -> None:
        store = self._check_store()
        services = {}
        for service in self._services:
            services[service.name] = _run_check(service.health)
        with self._lock:
            self._store = store
            self._services_health = services
            self._checked_at = time.monotonic()

    def _check_store(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._ping_future is None or self._ping_future.done():  # a hung ping is waited on, never doubled
            self._ping_future = self._pinger.submit(self._ping)
            self._ping_since = now
        try:
            reachable = self._ping_future.result(timeout=self.ping_timeout_s)
        except TimeoutError:
            waited = time.monotonic() - self._ping_since
            return {"reachable": False, "error": f"store ping unanswered for {waited:.1f} s"}
        except Exception as exc:
            return {"reachable": False, "error": repr(exc)[:200]}
        return {"reachable": bool(reachable), "error": None if reachable else "store ping failed"}

    def snapshot(self, ready: bool) -> tuple[bool, dict[str, Any]]:
        """`(ok, body)` of `/healthz`: ok only when ready and nothing is unhealthy; `unhealthy` names what is not."""
        with self._lock:
            store = dict(self._store)
            services = dict(self._services_health)
            checked_at = self._checked_at
        children = {name: state.as_dict() for name, state in self._children().items()}
        unhealthy = [] if ready else ["vigil (starting or stopping)"]
        if not store["reachable"]:
            unhealthy.append("store")
        unhealthy += [f"service:{name}" for name, h in services.items() if not h["ok"]]
        unhealthy += [f"child:{name}" for name, h in children.items() if not h["ok"]]
        age = None if checked_at is None else round(time.monotonic() - checked_at, 3)
        return not unhealthy, {
            "status": "ok" if not unhealthy else "unavailable",
            "unhealthy": unhealthy,
            "store": store,
            "services": services,
            "children": children,
            "checked_age_s": age,
        }


def _run_check(check: Callable[[], Health]) -> dict[str, Any]:
    try:
        ok, details = check()
    except Exception as exc:  # a broken health() is an unhealthy service, not a broken /healthz
        return {"ok": False, "error": repr(exc)[:200]}
    return {"ok": bool(ok), **details}
