"""Slack incoming webhook: a title line, and one attachment per state (red firing, green resolved)."""

from __future__ import annotations

import json
from typing import Any

from alerting.config import IntegrationConfig
from alerting.model import ALERTNAME, Alert
from alerting.notify.message import Notification, Request

MAX_LINES = 20  # Slack truncates long attachments; the count is in the title anyway


def _line(alert: Alert) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != ALERTNAME)
    text = f"*{alert.labels.get(ALERTNAME, '')}* {summary}".strip()
    runbook = f" (runbook: {alert.runbook})" if alert.runbook else ""
    return f"• {text} `{labels}`{runbook}"


def _attachment(alerts: tuple[Alert, ...], state: str, color: str) -> dict[str, Any]:
    lines = [_line(a) for a in alerts[:MAX_LINES]]
    if len(alerts) > MAX_LINES:
        lines.append(f"… and {len(alerts) - MAX_LINES} more")
    return {"color": color, "title": f"{state} ({len(alerts)})", "text": "\n".join(lines), "mrkdwn_in": ["text"]}


def payload(config: IntegrationConfig, n: Notification) -> dict[str, Any]:
    name = n.group_labels.get(ALERTNAME) or ", ".join(f"{k}={v}" for k, v in n.group_labels.items())
    title = f"[{n.status.upper()}:{len(n.firing) or len(n.resolved)}] {name}"
    attachments = []
    if n.firing:
        attachments.append(_attachment(n.firing, "Firing", "danger"))
    if n.resolved:
        attachments.append(_attachment(n.resolved, "Resolved", "good"))
    body: dict[str, Any] = {"text": title, "attachments": attachments}
    if config.channel:
        body["channel"] = config.channel
    return body


def render(config: IntegrationConfig, n: Notification) -> Request:
    body = json.dumps(payload(config, n), separators=(",", ":")).encode()
    return Request(config.url, body, (("Content-Type", "application/json"),))
