"""Stage 6, dedup: the notification log, and Alertmanager's rule for whether a flush goes out.

The log remembers, per receiver integration and group, the firing and resolved fingerprints last
sent and when. It lives in the store (`vigil_notification_log`, newest `SentAt` wins) so a restart
of `vigil up` does not page twice; memory holds a bounded copy (least recently used dropped first).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from vigil.logs import event
from vigil.store import Store
from vigil.store.schema import NOTIFICATION_LOG

log = logging.getLogger(__name__)

RETENTION_S = 5 * 86400.0  # as Alertmanager's nflog retention (120 h): longer than any sane repeat_interval
MAX_BYTES = 16 * 1024 * 1024
_COLUMNS = ("Receiver", "GroupKey", "Firing", "Resolved", "SentAt", "ExpiresAt")


@dataclass(frozen=True)
class Entry:
    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: float

    @property
    def size(self) -> int:
        return 64 + 24 * (len(self.firing) + len(self.resolved))


def needs_update(
    entry: Entry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    send_resolved: bool,
    repeat_interval_s: float,
    now: float,
) -> bool:
    """Alertmanager's DedupStage.needsUpdate: does this flush tell the receiver anything new?"""
    if entry is None:
        return bool(firing)  # never notified: only firing alerts are news
    if not firing <= entry.firing:
        return True  # a firing alert the receiver has not heard of
    if not firing:
        # Everything resolved: go out (even without send_resolved) to clear the log, unless the
        # receiver never heard of any of these alerts firing.
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.sent_at <= now - repeat_interval_s


class NotificationLog:
    def __init__(self, store: Store | None, max_bytes: int = MAX_BYTES) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.store_failures = 0

    def load(self, now: float) -> int:
        if self._store is None:
            return 0
        rows = self._store.query_rows(
            f"SELECT Receiver, GroupKey, argMax(Firing, SentAt), argMax(Resolved, SentAt), toFloat64(max(SentAt))"
            f" FROM {NOTIFICATION_LOG} WHERE ExpiresAt > {{now:Float64}} GROUP BY Receiver, GroupKey",
            {"now": now},
        )
        for receiver, key, firing, resolved, sent_at in rows:
            self._put((receiver, key), Entry(frozenset(firing), frozenset(resolved), float(sent_at)))
        return len(rows)

    def get(self, receiver: str, group_key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get((receiver, group_key))
            if entry is not None:
                self._entries.move_to_end((receiver, group_key))
            return entry

    def _put(self, key: tuple[str, str], entry: Entry) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = entry
            self._bytes += entry.size
            while self._bytes > self._max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size

    def record(self, receiver: str, group_key: str, entry: Entry) -> None:
        """Remember a sent notification: in memory always, in the store when it answers (else logged)."""
        self._put((receiver, group_key), entry)
        if self._store is None:
            return
        expires = entry.sent_at + RETENTION_S
        row = (
            receiver,
            group_key,
            sorted(entry.firing),
            sorted(entry.resolved),
            datetime.fromtimestamp(entry.sent_at, UTC),
            datetime.fromtimestamp(expires, UTC),
        )
        try:
            self._store.insert_columns(NOTIFICATION_LOG, [[v] for v in row], _COLUMNS)
        except Exception as exc:
            # Sent is sent: memory still dedups in this process; only a restart might repeat it.
            self.store_failures += 1
            event(log, "notification_log_write_failed", level=logging.WARNING, receiver=receiver, error=str(exc))
