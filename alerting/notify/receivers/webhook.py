"""The generic webhook: Alertmanager's version-4 payload, so anything that reads Alertmanager's reads ours."""

from __future__ import annotations

import json
from typing import Any

from alerting.config import IntegrationConfig
from alerting.model import Alert
from alerting.notify.message import ZERO_TIME, Notification, Request, common, generator_url, rfc3339, starts_at


def alert_json(alert: Alert, external_url: str) -> dict[str, Any]:
    return {
        "status": "resolved" if alert.resolved else "firing",
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(starts_at(alert)),
        "endsAt": rfc3339(alert.resolved_at) if alert.resolved_at is not None else ZERO_TIME,
        "generatorURL": generator_url(external_url, alert),
        "fingerprint": alert.fingerprint,
    }


def payload(config: IntegrationConfig, n: Notification) -> dict[str, Any]:
    alerts = list(n.alerts)
    truncated = 0
    if config.max_alerts and len(alerts) > config.max_alerts:
        truncated = len(alerts) - config.max_alerts
        alerts = alerts[: config.max_alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common([a.labels for a in n.alerts]),
        "commonAnnotations": common([a.annotations for a in n.alerts]),
        "externalURL": n.external_url,
        "alerts": [alert_json(a, n.external_url) for a in alerts],
    }


def render(config: IntegrationConfig, n: Notification) -> Request:
    body = json.dumps(payload(config, n), separators=(",", ":")).encode()
    return Request(config.url, body, (("Content-Type", "application/json"), *config.headers))
