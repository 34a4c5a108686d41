"""Foreground reads first: a person's history read runs before the rule evaluator's next query.

One embedded store serves both in one process: the evaluator asks ~20 small queries a second
(every page group each 2 s), a history read asks two or three larger ones. Run side by side on two
cores they share the CPU and the interpreter lock, and the history read, the one somebody waits
for, was measured 3 to 5 times slower with the evaluator running than without it. So a history read
marks itself in flight here, and the evaluator, before each of its queries, waits until no read has
been in flight for `QUIET_S` (the gaps between one request's reads), never more than its round's
allowance: rules are late by at most that much per round, and never starved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

QUIET_S = 0.03  # a request's next read follows its last within this (measured: a few ms of Python)


class Foreground:
    """Counts the foreground reads in flight; background work waits for a quiet moment."""

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.quiet_s = quiet_s
        self._busy = 0
        self._last_end = float("-inf")
        self._changed = threading.Condition()

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._busy += 1
        try:
            yield
        finally:
            with self._changed:
                self._busy -= 1
                self._last_end = time.monotonic()
                self._changed.notify_all()

    def wait_quiet(self, deadline: float) -> float:
        """Block until no foreground read has run for `quiet_s`, or until `deadline` (monotonic);
        return the seconds waited."""
        started = now = time.monotonic()
        with self._changed:
            while now < deadline:
                if self._busy:
                    self._changed.wait(deadline - now)
                else:
                    quiet_at = self._last_end + self.quiet_s
                    if now >= quiet_at:
                        break
                    self._changed.wait(min(quiet_at, deadline) - now)
                now = time.monotonic()
        return now - started
