"""Stage 8, record: a delivered notification goes into the notification log the dedup stage reads."""

from __future__ import annotations

import logging

from alerting.notify.dedup import NotificationLog
from alerting.notify.send import Outgoing
from vigil.logs import event

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, nflog: NotificationLog) -> None:
        self.nflog = nflog

    def __call__(self, out: Outgoing) -> None:
        n = out.notification
        self.nflog.record(n.integration, n.group_key, out.entry)
        event(
            log,
            "notification_sent",
            receiver=n.integration,
            group=n.group_key,
            status=n.status,
            firing=len(out.entry.firing),
            resolved=len(out.entry.resolved),
        )
