"""Forward to an existing Alertmanager: POST {url}/api/v2/alerts with the group's alerts.

Alertmanager resolves an alert whose endsAt passes without a re-send, so firing alerts carry an
endsAt a few resend intervals ahead (as Prometheus does) and are re-sent every `resend_interval`
(the dedup stage uses it as this integration's repeat interval); a resolved alert carries its end.

Alertmanager accepts only Prometheus label names (`[a-zA-Z_][a-zA-Z0-9_]*`) and refuses the whole
POST with a 400 otherwise, so Vigil's OTel names (`host.name`, `llm.endpoint`) are translated as
Prometheus translates OTel attributes: every other character becomes `_`, a leading digit gets
`key_`, and values of names that collide are joined with `;` in the order of the original names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from alerting.config import IntegrationConfig
from alerting.model import Alert
from alerting.notify.message import Notification, Request, generator_url, rfc3339, starts_at

RESENDS_VALID = 4  # endsAt of a firing alert: this many resend intervals ahead
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(name: str) -> str:
    """A label name as Prometheus writes an OTel attribute's: `host.name` → `host_name`."""
    out = _INVALID.sub("_", name)
    return f"key_{out}" if not out or out[0].isdigit() else out


def prometheus_labels(labels: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in sorted(labels):
        key = prometheus_name(name)
        out[key] = f"{out[key]};{labels[name]}" if key in out else labels[name]
    return out


def alert_json(config: IntegrationConfig, alert: Alert, n: Notification) -> dict[str, Any]:
    ends = alert.resolved_at if alert.resolved_at is not None else n.now + RESENDS_VALID * config.resend_interval_s
    return {
        "labels": prometheus_labels(alert.labels),
        "annotations": prometheus_labels(alert.annotations),
        "startsAt": rfc3339(starts_at(alert)),
        "endsAt": rfc3339(ends),
        "generatorURL": generator_url(n.external_url, alert),
    }


def render(config: IntegrationConfig, n: Notification) -> Request:
    body = json.dumps([alert_json(config, a, n) for a in n.alerts], separators=(",", ":")).encode()
    return Request(config.url.rstrip("/") + "/api/v2/alerts", body, (("Content-Type", "application/json"),))
