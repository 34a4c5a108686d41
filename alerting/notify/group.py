"""Stage 2, group: aggregation groups and their timers, as Alertmanager's dispatch.go.

Each routed alert joins the group of its route and its `group_by` labels. A new group flushes
`group_wait` after its first alert (at once when that alert started longer ago than `group_wait`,
as after a restart); after a flush the next one comes `group_interval` later, every time: whether
anything goes out is the dedup stage's call (new alerts, resolved ones, or `repeat_interval`
passed). A resolved alert is in the next flush once, then leaves the group; an empty group is gone.

One departure from Alertmanager: a firing alert that joins a group with nothing firing (its alerts all
resolved, their resolve not yet sent) is a new failure, as the incident book sees it (a new incident):
it goes out `group_wait` after it came, with the resolve, not up to `group_interval` later.

Pure: time is handed in, so tests drive the timers with a fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alerting.model import Alert
from alerting.notify.route import Route


@dataclass(frozen=True)
class Flush:
    """One group's alerts at one flush: what the later stages filter and send."""

    route: Route
    group_key: str
    group_labels: dict[str, str]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    now: float


def group_key(route: Route, labels: dict[str, str]) -> str:
    return f"{route.key}:{json.dumps(sorted(labels.items()), separators=(',', ':'))}"


class AggregationGroup:
    def __init__(self, route: Route, key: str, labels: dict[str, str], now: float) -> None:
        self.route = route
        self.key = key
        self.labels = labels
        self.alerts: dict[str, Alert] = {}
        self.next_flush = now + route.group_wait_s
        self.flushed = False

    def insert(self, alert: Alert, now: float) -> None:
        fresh = not alert.resolved and alert.fingerprint not in self.alerts
        if fresh and self.flushed and all(a.resolved for a in self.alerts.values()):
            self.next_flush = min(self.next_flush, now + self.route.group_wait_s)
        self.alerts[alert.fingerprint] = alert
        started = alert.fired_at if alert.fired_at is not None else alert.active_at
        if not self.flushed and started + self.route.group_wait_s <= now:
            self.next_flush = min(self.next_flush, now)

    def flush(self, now: float) -> Flush:
        firing = tuple(a for a in self.alerts.values() if not a.resolved)
        resolved = tuple(a for a in self.alerts.values() if a.resolved)
        for alert in resolved:
            del self.alerts[alert.fingerprint]
        self.flushed = True
        self.next_flush = now + self.route.group_interval_s
        return Flush(self.route, self.key, dict(self.labels), firing, resolved, now)


class Dispatcher:
    """Routes alerts into aggregation groups and says which groups are due to flush."""

    def __init__(
        self,
        root: Route,
        max_alerts: int = 100_000,
        on_drop: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.root = root
        self.max_alerts = max_alerts  # bounds memory: alerts held across all groups
        self.groups: dict[str, AggregationGroup] = {}
        self._on_drop = on_drop or (lambda stage, reason, count: None)

    @property
    def alert_count(self) -> int:
        return sum(len(g.alerts) for g in self.groups.values())

    def insert(self, alerts: Sequence[Alert], now: float) -> None:
        held = self.alert_count
        for alert in alerts:
            for route in self.root.match(alert.labels):
                if route.receiver is None:
                    self._on_drop("route", "no receiver on the matching route", 1)
                    continue
                labels = route.group_labels(alert.labels)
                key = group_key(route, labels)
                group = self.groups.get(key)
                if group is None:
                    group = self.groups[key] = AggregationGroup(route, key, labels, now)
                if alert.fingerprint not in group.alerts:
                    if held >= self.max_alerts:
                        self._on_drop("group", f"more than {self.max_alerts} alerts held", 1)
                        continue
                    held += 1
                group.insert(alert, now)

    def due(self, now: float) -> list[Flush]:
        flushes = []
        for key, group in list(self.groups.items()):
            if group.next_flush <= now:
                flushes.append(group.flush(now))
                if not group.alerts:
                    del self.groups[key]
        return flushes

    def next_due(self) -> float | None:
        return min((g.next_flush for g in self.groups.values()), default=None)
