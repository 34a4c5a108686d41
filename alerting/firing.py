"""Listeners told once when an alert starts firing: how a rule's runbook starts by itself.

The composition root hands alerting the runbook engine's `on_alert` through `AlertingService.on_firing`
(feature packages never import one another). The evaluator hands the notifier every firing alert on
every round; this keeps, per fingerprint, the firing start it already told, so a listener hears of a
firing once, and again only after the alert resolved and fired anew. Bounded by the alerts held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from alerting.model import Alert, AlertState
from vigil.logs import event

log = logging.getLogger(__name__)

FiringListener = Callable[[Mapping[str, str], Mapping[str, str]], object]
"""`listener(labels, annotations)`; the rule's runbook is in `annotations["runbook"]`."""


class FiringHooks:
    def __init__(self) -> None:
        self._listeners: list[FiringListener] = []
        self._told: dict[str, float] = {}  # fingerprint → the fired_at already told
        self._lock = threading.Lock()

    def add(self, listener: FiringListener) -> None:
        self._listeners.append(listener)

    def observe(self, alerts: Sequence[Alert], now: float) -> None:
        new: list[Alert] = []
        with self._lock:
            for alert in alerts:
                fp = alert.fingerprint
                if alert.resolved:
                    self._told.pop(fp, None)
                elif alert.state == AlertState.FIRING and self._told.get(fp) != alert.fired_at:
                    self._told[fp] = alert.fired_at or now
                    new.append(alert)
        for alert in new:
            annotations = dict(alert.annotations)
            if alert.runbook:
                annotations["runbook"] = alert.runbook
            for listener in self._listeners:
                try:
                    listener(dict(alert.labels), annotations)
                except Exception as exc:  # a listener's fault never costs the evaluator its round
                    event(log, "alert_listener_failed", level=logging.ERROR, error=repr(exc))
