"""One attempt's time and its stop signal, shared by the engine and the step it runs.

A thread cannot be killed, so a step past its timeout stops only if its work looks at the clock: an
action sizes each HTTP timeout from `left()` and checks `over` between requests and while reading an
answer; a `wait_for` sleeps in `wait()`, which a cancel wakes. The engine starts a retry only once
the attempt before it has returned, so two attempts at one step never overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Deadline:
    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._end = monotonic() + seconds
        self._stop = threading.Event()

    def left(self) -> float:
        """Seconds until the deadline, 0 once past it or stopped."""
        if self._stop.is_set():
            return 0.0
        return max(0.0, self._end - self._monotonic())

    def stop(self) -> None:
        """Ask the work to end now (the run was cancelled, or the engine gave up on it)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def over(self) -> bool:
        return self.left() <= 0

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (never past the deadline); True when stopped meanwhile."""
        return self._stop.wait(max(0.0, min(seconds, self.left())))
