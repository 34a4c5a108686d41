"""What a receiver integration is handed: one group's alerts at one flush, after the filtering stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from alerting.model import Alert

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert


@dataclass(frozen=True)
class Notification:
    receiver: str
    integration: str  # "<receiver>/<kind>/<index>": the notification log's and the metrics' name for it
    group_key: str
    group_labels: dict[str, str]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    external_url: str
    now: float

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return (*self.firing, *self.resolved)

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def starts_at(alert: Alert) -> float:
    return alert.fired_at if alert.fired_at is not None else alert.active_at


def common(items: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The label (or annotation) pairs every alert shares, as Alertmanager's commonLabels."""
    if not items:
        return {}
    shared = dict(items[0])
    for other in items[1:]:
        shared = {k: v for k, v in shared.items() if other.get(k) == v}
    return shared


def generator_url(external_url: str, alert: Alert) -> str:
    return f"{external_url.rstrip('/')}/api/v1/alerts?fingerprint={alert.fingerprint}" if external_url else ""
