"""Receiver integrations: each turns a Notification into one HTTP request (`render`) for the send stage."""

from __future__ import annotations

from collections.abc import Callable

from alerting.config import IntegrationConfig
from alerting.notify.message import Notification, Request
from alerting.notify.receivers import alertmanager, pagerduty, slack, webhook

Render = Callable[[IntegrationConfig, Notification], Request]

RENDERERS: dict[str, Render] = {
    "webhook": webhook.render,
    "slack": slack.render,
    "pagerduty": pagerduty.render,
    "alertmanager": alertmanager.render,
}
