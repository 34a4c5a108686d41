"""PagerDuty Events API v2: `trigger` while any alert of the group fires, `resolve` when none does.

The dedup_key is a hash of the receiver and the group key, stable across restarts, so PagerDuty
folds every notification of a group into one incident and the resolve closes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alerting.config import IntegrationConfig
from alerting.model import ALERTNAME
from alerting.notify.message import Notification, Request, rfc3339
from alerting.notify.receivers.webhook import alert_json

MAX_SUMMARY = 1024  # PagerDuty's limit on payload.summary


def dedup_key(receiver: str, group_key: str) -> str:
    return hashlib.sha256(f"{receiver}\x00{group_key}".encode()).hexdigest()


def payload(config: IntegrationConfig, n: Notification) -> dict[str, Any]:
    name = n.group_labels.get(ALERTNAME) or ", ".join(f"{k}={v}" for k, v in n.group_labels.items()) or "alerts"
    summary = f"[{n.status.upper()}:{len(n.firing) or len(n.resolved)}] {name}"
    first = n.firing[0] if n.firing else None
    if first is not None and first.annotations.get("summary"):
        summary += f": {first.annotations['summary']}"
    body: dict[str, Any] = {
        "routing_key": config.routing_key,
        "event_action": "trigger" if n.firing else "resolve",
        "dedup_key": dedup_key(n.receiver, n.group_key),
    }
    if n.firing:
        body["payload"] = {
            "summary": summary[:MAX_SUMMARY],
            "source": n.group_labels.get("host.name", "vigil"),
            "severity": config.severity,
            "timestamp": rfc3339(n.now),
            "custom_details": {
                "firing": [alert_json(a, n.external_url) for a in n.firing],
                "resolved": [alert_json(a, n.external_url) for a in n.resolved],
            },
        }
        body["client"] = "Vigil"
        if n.external_url:
            body["client_url"] = n.external_url
    return body


def render(config: IntegrationConfig, n: Notification) -> Request:
    body = json.dumps(payload(config, n), separators=(",", ":")).encode()
    return Request(config.url, body, (("Content-Type", "application/json"),))
