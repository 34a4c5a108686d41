"""Failed logins per key (a client address, a user name) in a sliding window, in bounded memory.

Each key keeps at most `max_failures` timestamps and at most `max_keys` keys are tracked, the
least recently failed evicted first: about max_keys * (key <= 256 B + max_failures * 8 B), 2.6 MB
for each of the two limiters at the defaults. An attacker spraying addresses can evict only
address entries: user names are tracked apart, and spraying those needs many addresses first.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

MAX_KEY_CHARS = 256


class FailureWindow:
    def __init__(self, max_failures: int, window_s: float, max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str, now: float) -> int:
        """0 when `key` may try; else whole seconds until its oldest failure in the window leaves it."""
        with self._lock:
            times = self._failures.get(key[:MAX_KEY_CHARS])
            if times is None or len(times) < self.max_failures:
                return 0
            wait = times[0] + self.window_s - now
            return max(1, math.ceil(wait)) if wait > 0 else 0

    def fail(self, key: str, now: float) -> None:
        key = key[:MAX_KEY_CHARS]
        with self._lock:
            times = self._failures.pop(key, None)
            if times is None:
                times = deque(maxlen=self.max_failures)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            times.append(now)
            self._failures[key] = times  # most recent last
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key[:MAX_KEY_CHARS], None)

    def __len__(self) -> int:
        return len(self._failures)
