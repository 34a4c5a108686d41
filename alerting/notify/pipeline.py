"""The notification pipeline: route → group → inhibit → silence → mute → dedup → send → record.

`notify()` (the evaluator's call) routes the alerts into their groups and returns at once; a
ticker thread flushes the groups that are due and runs each flush through the filtering stages,
then hands one notification per receiver integration to that integration's sender. Each stage that
holds something back logs `notification_dropped stage=... reason=...` and counts it, so a reader
can point at the stage that dropped a notification.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry

from alerting.config import AlertingConfig, IntegrationConfig
from alerting.model import Alert
from alerting.notify.dedup import Entry, NotificationLog, needs_update
from alerting.notify.group import Dispatcher, Flush
from alerting.notify.inhibit import Inhibitor
from alerting.notify.message import Notification
from alerting.notify.metrics import NotifyMetrics
from alerting.notify.mute import muted
from alerting.notify.receivers import RENDERERS
from alerting.notify.record import Recorder
from alerting.notify.route import Route
from alerting.notify.send import Backoff, Outgoing, Sender
from alerting.notify.silence import SilenceStore
from vigil.logs import event
from vigil.store import Store

log = logging.getLogger(__name__)

TICK_S = 0.2  # longest the ticker sleeps: a due group leaves at most this late


@dataclass(frozen=True)
class Integration:
    name: str  # "<receiver>/<kind>/<index>"
    receiver: str
    config: IntegrationConfig
    sender: Sender


class Pipeline:
    """Implements `alerting.model.Notifier`; `silences` is the SilenceStore the API and CLI use."""

    def __init__(
        self,
        config: AlertingConfig,
        store: Store | None,
        registry: CollectorRegistry | None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = NotifyMetrics(registry)
        self.route = Route.build(config.route)
        self.dispatcher = Dispatcher(self.route, on_drop=self._dropped_alerts)
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self.silences = SilenceStore(store)
        self.nflog = NotificationLog(store)
        self.record = Recorder(self.nflog, clock)
        self.integrations: dict[str, list[Integration]] = {}
        for receiver in config.receivers.values():
            for i, integration in enumerate(receiver.integrations):
                name = f"{receiver.name}/{integration.kind}/{i}"
                sender = Sender(name, integration, self.metrics, self.record, backoff)
                self.integrations.setdefault(receiver.name, []).append(
                    Integration(name, receiver.name, integration, sender)
                )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-ticker", daemon=True)
        self.load_errors: list[str] = []

    # -- lifecycle
    def start(self) -> None:
        now = self.clock()
        for what, load in (("silences", self.silences.load), ("notification_log", self.nflog.load)):
            try:
                count = load(now)
                event(log, "notify_state_loaded", what=what, count=count)
            except Exception as exc:
                # The store is down: start anyway (pages matter more); dedup and silences from memory.
                self.load_errors.append(f"{what}: {exc}")
                event(log, "notify_state_load_failed", level=logging.ERROR, what=what, error=str(exc))
        for integration in self._all_integrations():
            integration.sender.start()
        self._thread.start()

    def close(self, timeout_s: float) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        for integration in self._all_integrations():
            integration.sender.close(max(0.0, deadline - time.monotonic()))

    def health(self) -> tuple[bool, dict[str, Any]]:
        senders = {
            i.name: {"alive": i.sender.alive, "queued": i.sender.queued, "last_error": i.sender.last_error}
            for i in self._all_integrations()
        }
        started = self._thread.is_alive() or not self._thread.ident
        ok = started and all(s["alive"] or not self._thread.ident for s in senders.values())
        details = {
            "groups": len(self.dispatcher.groups),
            "receivers": senders,
            "notification_log_store_failures": self.nflog.store_failures,
        }
        if self.load_errors:
            details["load_errors"] = self.load_errors
        return ok, details

    def _all_integrations(self) -> list[Integration]:
        return [i for group in self.integrations.values() for i in group]

    # -- stage 1 and 2: route and group, on the evaluator's thread, never blocking it on I/O
    def notify(self, alerts: Sequence[Alert], now: float) -> None:
        with self._lock:
            self.inhibitor.observe(alerts)
            self.dispatcher.insert(alerts, now)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick(self.clock())
            except Exception as exc:  # one bad flush must not stop every page after it
                event(log, "notify_tick_failed", level=logging.ERROR, error=repr(exc))
            with self._lock:
                due = self.dispatcher.next_due()
            wait = TICK_S if due is None else max(0.0, min(TICK_S, due - self.clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def tick(self, now: float) -> list[Outgoing]:
        """Flush the groups due at `now` through the stages; returns what was handed to senders."""
        with self._lock:
            flushes = self.dispatcher.due(now)
        handed: list[Outgoing] = []
        for flush in flushes:
            handed.extend(self.process(flush))
        return handed

    # -- stages 3 to 7 for one flush
    def process(self, flush: Flush) -> list[Outgoing]:
        firing = self.inhibit(flush, flush.firing)
        firing = self.silence(flush, firing)
        if self.mute(flush):
            return []
        handed = []
        for integration in self.integrations.get(flush.route.receiver or "", []):
            out = self.dedup(flush, integration, firing)
            if out is not None:
                integration.sender.submit(out)
                handed.append(out)
        return handed

    def inhibit(self, flush: Flush, firing: Sequence[Alert]) -> tuple[Alert, ...]:
        with self._lock:
            kept = tuple(a for a in firing if not self.inhibitor.mutes(a))
        self._dropped(flush, "inhibit", "an inhibit rule's source alert fires", len(firing) - len(kept))
        return kept

    def silence(self, flush: Flush, firing: Sequence[Alert]) -> tuple[Alert, ...]:
        kept = tuple(a for a in firing if not self.silences.matching(a.labels, flush.now))
        self._dropped(flush, "silence", "a silence matches", len(firing) - len(kept))
        return kept

    def mute(self, flush: Flush) -> bool:
        route = flush.route
        reason = muted(self.config.time_intervals, route.mute_time_intervals, route.active_time_intervals, flush.now)
        if reason:
            self._dropped(flush, "mute", reason, len(flush.firing) + len(flush.resolved))
        return reason is not None

    def dedup(self, flush: Flush, integration: Integration, firing: tuple[Alert, ...]) -> Outgoing | None:
        config = integration.config
        entry = integration.sender.pending(flush.group_key) or self.nflog.get(integration.name, flush.group_key)
        told = entry.firing if entry else frozenset()
        # A resolved message only for an alert the receiver was told fires (never for a silenced one).
        resolved = tuple(a for a in flush.resolved if a.fingerprint in told)
        firing_fps = frozenset(a.fingerprint for a in firing)
        resolved_fps = frozenset(a.fingerprint for a in resolved)
        repeat = flush.route.repeat_interval_s
        if config.kind == "alertmanager":
            repeat = min(repeat, config.resend_interval_s)  # Alertmanager expires alerts that are not re-sent
        if not needs_update(entry, firing_fps, resolved_fps, config.send_resolved, repeat, flush.now):
            told_again = len(firing) + len(resolved)
            self._dropped(flush, "dedup", "the receiver was told this already", told_again, integration.name)
            return None
        new_entry = Entry(firing_fps, resolved_fps, flush.now)
        sent_resolved = resolved if config.send_resolved else ()
        if not firing and not sent_resolved:
            self.nflog.record(integration.name, flush.group_key, new_entry)  # nothing to say: clear the log only
            return None
        notification = Notification(
            receiver=integration.receiver,
            integration=integration.name,
            group_key=flush.group_key,
            group_labels=flush.group_labels,
            firing=firing,
            resolved=sent_resolved,
            external_url=self.config.external_url,
            now=flush.now,
        )
        if config.kind == "alertmanager":
            # a group flushes only every group_interval, so a re-send comes no sooner than that: endsAt
            # must reach past the later of the two, or Alertmanager resolves the alert between flushes
            config = replace(config, resend_interval_s=max(config.resend_interval_s, flush.route.group_interval_s))
        request = RENDERERS[config.kind](config, notification)
        return Outgoing(notification, request, new_entry, time.monotonic())

    # -- accounting for whatever a stage holds back
    def _dropped(self, flush: Flush, stage: str, reason: str, count: int, receiver: str = "") -> None:
        if count <= 0:
            return
        self.metrics.dropped.labels(stage=stage).inc(max(count, 1))
        event(
            log,
            "notification_dropped",
            level=logging.DEBUG if stage == "dedup" else logging.INFO,
            stage=stage,
            reason=reason,
            group=flush.group_key,
            receiver=receiver or flush.route.receiver,
            alerts=count,
        )

    def _dropped_alerts(self, stage: str, reason: str, count: int) -> None:
        self.metrics.dropped.labels(stage=stage).inc(count)
        event(log, "notification_dropped", level=logging.DEBUG, stage=stage, reason=reason, alerts=count)


def build_notifier(
    config: AlertingConfig,
    store: Store | None,
    registry: CollectorRegistry | None,
    clock: Callable[[], float] = time.time,
) -> Pipeline:
    """The pipeline for a config; `clock` gives unix seconds. Call `start()` before the first `notify`."""
    return Pipeline(config, store, registry, clock)
