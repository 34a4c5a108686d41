"""Automatic starts from alerts, guarded: a rate limit per runbook and target, and a fleet-wide
circuit breaker of at most N automatic runs per hour, which opens once (telling on-call through a
callback) and closes again as the hour's starts age out. Pure: the clock is handed in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

HOUR_S = 3600.0
MAX_TRACKED = 10_000  # (runbook, target) pairs remembered for the rate limit; the oldest are forgotten


class AutoGuard:
    def __init__(
        self,
        max_per_hour: int,
        min_interval_s: float,
        clock: Callable[[], float],
        on_open: Callable[[int, float], None] | None = None,
    ) -> None:
        self.max_per_hour = max_per_hour
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._on_open = on_open
        self._starts: deque[float] = deque()
        self._last: dict[tuple[str, str], float] = {}
        self._open = False
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        with self._lock:
            self._expire(self._clock())
            return self._open

    def _expire(self, now: float) -> None:
        while self._starts and now - self._starts[0] >= HOUR_S:
            self._starts.popleft()
        if self._open and len(self._starts) < self.max_per_hour:
            self._open = False

    def admit(self, runbook: str, target: str) -> str | None:
        """None when an automatic start may go ahead (and counts it), else why not."""
        opened = False
        with self._lock:
            now = self._clock()
            self._expire(now)
            last = self._last.get((runbook, target))
            if last is not None and now - last < self.min_interval_s:
                ago, every = now - last, self.min_interval_s
                return f"rate limited: {runbook} started on {target} {ago:.0f}s ago (at most one per {every:g}s)"
            if len(self._starts) >= self.max_per_hour:
                opened, self._open = not self._open, True
                reason = (
                    f"circuit breaker open: {len(self._starts)} automatic runs in the last hour "
                    f"(at most {self.max_per_hour})"
                )
            else:
                self._starts.append(now)
                self._last[(runbook, target)] = now
                if len(self._last) > MAX_TRACKED:
                    self._last.pop(next(iter(self._last)))
                return None
        if opened and self._on_open is not None:
            self._on_open(self.max_per_hour, now)
        return reason

    def forget(self, runbook: str, target: str) -> None:
        """An admitted start that did not happen (a run already held the target) does not count."""
        with self._lock:
            self._last.pop((runbook, target), None)
            if self._starts:
                self._starts.pop()
