"""Forward to an existing Alertmanager: POST {url}/api/v2/alerts with the group's alerts.

Alertmanager resolves an alert whose endsAt passes without a re-send, so firing alerts carry an
endsAt a few resend intervals ahead (as Prometheus does) and are re-sent every `resend_interval`
(the dedup stage uses it as this integration's repeat interval); a resolved alert carries its end.
"""

from __future__ import annotations

import json
from typing import Any

from alerting.config import IntegrationConfig
from alerting.model import Alert
from alerting.notify.message import Notification, Request, generator_url, rfc3339, starts_at

RESENDS_VALID = 4  # endsAt of a firing alert: this many resend intervals ahead


def alert_json(config: IntegrationConfig, alert: Alert, n: Notification) -> dict[str, Any]:
    ends = alert.resolved_at if alert.resolved_at is not None else n.now + RESENDS_VALID * config.resend_interval_s
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(starts_at(alert)),
        "endsAt": rfc3339(ends),
        "generatorURL": generator_url(n.external_url, alert),
    }


def render(config: IntegrationConfig, n: Notification) -> Request:
    body = json.dumps([alert_json(config, a, n) for a in n.alerts], separators=(",", ":")).encode()
    return Request(config.url.rstrip("/") + "/api/v2/alerts", body, (("Content-Type", "application/json"),))
