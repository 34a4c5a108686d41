"""Stage 8, record: a delivered notification goes into the notification log the dedup stage reads,
and into a short list of what was sent, newest last, that `GET /api/v1/notifications` answers (a drill
counts its pages there)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from alerting.model import ALERTNAME, SEVERITY
from alerting.notify.dedup import NotificationLog
from alerting.notify.send import Outgoing
from vigil.logs import event

log = logging.getLogger(__name__)

MAX_SENT = 1000  # notifications remembered for the API
MAX_ALERTS_LISTED = 50  # alerts of one notification it lists; a larger group is counted, not listed


class Recorder:
    def __init__(self, nflog: NotificationLog, clock: Any = time.time) -> None:
        self.nflog = nflog
        self._clock = clock
        self._sent: deque[dict[str, Any]] = deque(maxlen=MAX_SENT)
        self._lock = threading.Lock()

    def __call__(self, out: Outgoing) -> None:
        n = out.notification
        self.nflog.record(n.integration, n.group_key, out.entry)
        entry = {
            "at": self._clock(),
            "receiver": n.integration,
            "groupKey": n.group_key,
            "status": n.status,
            "firing": [_brief(a) for a in n.firing[:MAX_ALERTS_LISTED]],
            "resolved": [_brief(a) for a in n.resolved[:MAX_ALERTS_LISTED]],
            "alerts": len(n.firing) + len(n.resolved),
        }
        with self._lock:
            self._sent.append(entry)
        event(
            log,
            "notification_sent",
            receiver=n.integration,
            group=n.group_key,
            status=n.status,
            firing=len(out.entry.firing),
            resolved=len(out.entry.resolved),
        )

    def sent(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Notifications delivered at or after `since` (unix seconds), oldest first; the newest `MAX_SENT` only."""
        with self._lock:
            return [dict(e) for e in self._sent if e["at"] >= since]


def _brief(alert: Any) -> dict[str, str]:
    return {
        "alertname": alert.labels.get(ALERTNAME, ""),
        "fingerprint": alert.fingerprint,
        "severity": alert.labels.get(SEVERITY, ""),
    }
