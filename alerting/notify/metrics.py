"""The notification pipeline's own metrics, in the registry `vigil up` serves on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.notifications = Counter(
            "vigil_alerting_notifications",
            "Notification attempts by receiver and outcome (sent, retried, failed, gave_up).",
            ["receiver", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "vigil_alerting_notification_latency_seconds",
            "Seconds from a notification leaving its group to its receiver accepting it, retries included.",
            ["receiver"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.dropped = Counter(
            "vigil_alerting_notifications_dropped",
            "Alerts or notifications a stage held back, by stage (route, group, inhibit, silence, mute, "
            "dedup, send_queue).",
            ["stage"],
            registry=registry,
        )
