from __future__ import annotations

from alerting.model import Alert, AlertState


def alert(name: str = "HighErrors", resolved_at: float | None = None, at: float = 1000.0, **labels: str) -> Alert:
    state = AlertState.INACTIVE if resolved_at is not None else AlertState.FIRING
    return Alert(
        labels={"alertname": name, "severity": "page", **labels},
        annotations={"summary": f"{name} on {labels}"},
        state=state,
        value=1.0,
        active_at=at,
        fired_at=at,
        resolved_at=resolved_at,
    )
