"""Structured logs: one line per event, `key=value` pairs after the event name."""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_quote(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None) or {}
        parts.extend(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx: one line per HTTP request; apscheduler: two per job run (every 2 s per rule group). Noise, not events;
    # their warnings (a failed request, a missed run) still show.
    for chatty in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


class RepeatFilter(logging.Filter):
    """Let the same warning or error through at most `limit` times per `interval_s`; count the rest.

    An attack repeats one message (asyncio's "socket.accept() out of system resource", uvicorn's
    "Invalid HTTP request received.") thousands of times a second; one line per occurrence fills
    the disk and hides everything else. When a message's window ends with some held back, the
    next occurrence is preceded by one `log_suppressed` line saying how many. The messages
    tracked are bounded, so unique messages cannot grow this without limit.
    """

    def __init__(
        self,
        limit: int = 10,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 1024,
    ) -> None:
        super().__init__()
        self.limit = limit
        self.interval_s = interval_s
        self.clock = clock
        self.max_tracked = max_tracked
        self._windows: OrderedDict[tuple[str, int, str], list[float | int]] = OrderedDict()
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "repeat_report", False):
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval_s:
            if window is not None and window[2]:
                self._report(record, key, int(window[2]))
            self._windows[key] = [now, 1, 0]
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_tracked:
                self._windows.popitem(last=False)
            return True
        if window[1] < self.limit:
            window[1] += 1
            return True
        window[2] += 1
        self.suppressed_total += 1
        return False

    def _report(self, record: logging.LogRecord, key: tuple[str, int, str], suppressed: int) -> None:
        report = logging.LogRecord(
            record.name, record.levelno, record.pathname, record.lineno, "log_suppressed", (), None
        )
        report.fields = {"message": key[2], "suppressed": suppressed, "interval_s": self.interval_s}  # type: ignore[attr-defined]
        report.repeat_report = True  # type: ignore[attr-defined]
        logging.getLogger(record.name).handle(report)


def limit_repeats(limit: int, interval_s: float) -> RepeatFilter:
    """Rate-limit repeated warnings and errors on every handler of the root logger."""
    repeat = RepeatFilter(limit, interval_s)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RepeatFilter)]:
            handler.removeFilter(old)
        handler.addFilter(repeat)
    return repeat


def event(logger: logging.Logger, what: str, /, *, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, what, extra={"fields": fields})
