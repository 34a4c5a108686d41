"""Automatic starts from alerts, guarded: a rate limit per runbook and target, and a fleet-wide
circuit breaker of at most N automatic runs per hour, which opens once (telling on-call through a
callback) and closes again as the hour's starts age out.

Both are counted from the audit trail (`AutoHistory`, the store), so a restart of `vigil up` forgets
neither: each check reads at most N start rows of the last hour and one row of the last interval.
The starts this process made are kept beside those reads (bounded, for the hour), so a start whose
row a cluster has not yet made visible still counts. A start is checked and made under one lock, so
two alerts at once are counted one after the other. The clock is handed in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

HOUR_S = 3600.0
MAX_REMEMBERED = 10_000  # this process's own starts kept beside the store's rows; the oldest go first


class AutoHistory(Protocol):
    """The automatic runs the audit trail holds (dry runs and starts refused for their parameters aside)."""

    def auto_starts(self, since: float, limit: int) -> list[tuple[str, float]]:
        """(run id, unix start) of automatic runs started at or after `since`, newest first, at most `limit`."""
        ...

    def last_auto_start(self, runbook: str, target: str, since: float) -> float | None:
        """When `runbook` last started by itself on `target`, at or after `since`; None if it did not."""
        ...


class AutoRefused(Exception):
    """The guard did not let an automatic start go ahead; the message says which limit and why."""


class AutoGuard:
    def __init__(
        self,
        max_per_hour: int,
        min_interval_s: float,
        clock: Callable[[], float],
        history: AutoHistory,
        on_open: Callable[[int, float], None] | None = None,
    ) -> None:
        self.max_per_hour = max_per_hour
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._history = history
        self._on_open = on_open
        self._mine: deque[tuple[float, str, str, str]] = deque()  # (at, run id, runbook, target), oldest first
        self._open_until = 0.0  # the breaker is open until the start that filled it ages out
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        """Whether the last check found the breaker open and that hour has not passed (no store read)."""
        return self._clock() < self._open_until

    def start(self, runbook: str, target: str, begin: Callable[[], str]) -> str:
        """Start an automatic run through `begin` (it answers the run's id) if the guard admits it.

        Raises AutoRefused with the reason when a limit holds it back; whatever `begin` raises passes
        through, and a start that did not happen does not count.
        """
        opened, reason = False, ""
        with self._lock:
            now = self._clock()
            self._age(now)
            last = self._last_start(runbook, target, now)
            if last is not None and now - last < self.min_interval_s:
                ago, every = now - last, self.min_interval_s
                reason = f"rate limited: {runbook} started on {target} {ago:.0f}s ago (at most one per {every:g}s)"
            else:
                starts = self._hour_starts(now)
                if len(starts) >= self.max_per_hour:
                    opened = now >= self._open_until
                    # it closes when the oldest of the newest N starts is an hour old
                    self._open_until = sorted(starts, reverse=True)[self.max_per_hour - 1] + HOUR_S
                    reason = (
                        f"circuit breaker open: {len(starts)} automatic runs in the last hour "
                        f"(at most {self.max_per_hour})"
                    )
                else:
                    run_id = begin()
                    self._mine.append((now, run_id, runbook, target))
                    if len(self._mine) > MAX_REMEMBERED:
                        self._mine.popleft()
                    return run_id
        if opened and self._on_open is not None:
            self._on_open(self.max_per_hour, now)
        raise AutoRefused(reason)

    def _age(self, now: float) -> None:
        keep = max(HOUR_S, self.min_interval_s)
        while self._mine and now - self._mine[0][0] >= keep:
            self._mine.popleft()

    def _last_start(self, runbook: str, target: str, now: float) -> float | None:
        since = now - self.min_interval_s
        found = [at for at, _, rb, t in self._mine if (rb, t) == (runbook, target) and at >= since]
        stored = self._history.last_auto_start(runbook, target, since)
        if stored is not None:
            found.append(stored)
        return max(found, default=None)

    def _hour_starts(self, now: float) -> list[float]:
        since = now - HOUR_S
        starts = dict(self._history.auto_starts(since, self.max_per_hour))
        starts.update((run_id, at) for at, run_id, _, _ in self._mine if at > since)
        return [at for at in starts.values() if now - at < HOUR_S]
