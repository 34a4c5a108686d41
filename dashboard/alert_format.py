"""What the alert and SLO pages show, from alerting's JSON shapes: pure functions, no HTTP, no store.

Everything here returns plain text; the templates escape it (labels and annotations are whatever a
series or a rule file carried, HTML included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from vigil.views import ViewError

DURATIONS: dict[str, int] = {"1h": 3600, "4h": 4 * 3600, "24h": 86400}
_CUSTOM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
_RUNBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALERTNAME = "alertname"
# Chart ranges offered on /slos: label → seconds.
RANGES: dict[str, int] = {"1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def unix(rfc3339: str | None) -> float | None:
    if not rfc3339:
        return None
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def age(seconds: float) -> str:
    """`3d 4h`, `2h 5m`, `7m 3s`, `42s`: the two largest units, as an on-call reads it at a glance."""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def number(value: Any) -> str:
    """A value as the API gives it: a float, or "NaN"/"+Inf"/"-Inf" as Prometheus prints them."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.4g}"


def percent(fraction: Any) -> str:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return str(fraction)
    return f"{fraction * 100:.1f} %"


def sorted_labels(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """`alertname` first, then by name: the order an on-call scans."""
    return sorted(labels.items(), key=lambda kv: (kv[0] != ALERTNAME, kv[0]))


def runbook_link(alert: Mapping[str, Any]) -> str | None:
    """Where the alert's runbook is: a `runbook_url` or `runbook` annotation holding an http(s) URL or a
    local path, else the rule's runbook (or an annotation holding a bare name) on Vigil's runbook page.
    Anything else (`javascript:`, `//host`) is not linked."""
    annotations = alert.get("annotations") or {}
    for key in ("runbook_url", "runbook"):
        value = str(annotations.get(key) or "").strip()
        if not value:
            continue
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
        if not parts.scheme and not parts.netloc and value.startswith("/") and not value.startswith("//"):
            return value
        if _RUNBOOK_NAME.match(value):
            return f"/runbooks/{quote(value, safe='')}"
    name = alert.get("runbook")
    if isinstance(name, str) and _RUNBOOK_NAME.match(name):
        return f"/runbooks/{quote(name, safe='')}"
    return None


def alert_row(alert: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One row of `table#alerts`."""
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    since = unix(alert.get("firedAt") if alert.get("state") == "firing" else None) or unix(alert.get("activeAt"))
    return {
        "fingerprint": alert.get("fingerprint", ""),
        "name": labels.get(ALERTNAME, ""),
        "state": alert.get("state", ""),
        "labels": sorted_labels(labels),
        "summary": annotations.get("summary", ""),
        "value": number(alert.get("value")),
        "age": age(now - since) if since is not None else "",
        "active_at": alert.get("activeAt") or "",
        "runbook": runbook_link(alert),
    }


def silence_duration(choice: str, custom: str) -> float:
    """The form's duration select (1h, 4h, 24h, custom) in seconds; ViewError naming the field."""
    if choice in DURATIONS:
        return float(DURATIONS[choice])
    if choice != "custom":
        raise ViewError(f"duration: {choice!r}; choose one of {', '.join(DURATIONS)} or custom")
    found = _CUSTOM.match(custom)
    if found is None:
        raise ViewError(f"custom: {custom!r} is not a duration such as 90m, 6h or 2d")
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds <= 0:
        raise ViewError("custom: the duration must be longer than zero")
    return seconds


def silence_body(matchers: list[str], choice: str, custom: str, comment: str, created_by: str) -> dict[str, Any]:
    """The silence form → an Alertmanager v2 silence body (equality matchers, one per checked label)."""
    parsed = []
    for i, text in enumerate(matchers):
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise ViewError(f"matcher.{i}: {text!r} is not name=value")
        parsed.append({"name": name, "value": value, "isRegex": False, "isEqual": True})
    if not parsed:
        raise ViewError("matcher: tick at least one label, or the silence would mute everything")
    return {
        "matchers": parsed,
        "duration_s": silence_duration(choice, custom),
        "createdBy": created_by,
        "comment": comment.strip(),
    }


def silence_row(silence: Mapping[str, Any]) -> dict[str, Any]:
    ops = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
    silence_id = str(silence.get("id", ""))
    return {
        "id": silence_id,
        "expire_url": f"/alerts/silences/{quote(silence_id, safe='')}/expire",
        "matchers": [
            f'{m["name"]}{ops[(bool(m.get("isRegex")), bool(m.get("isEqual", True)))]}"{m["value"]}"'
            for m in silence.get("matchers", [])
        ],
        "starts_at": silence.get("startsAt") or "",
        "ends_at": silence.get("endsAt") or "",
        "created_by": silence.get("createdBy", ""),
        "comment": silence.get("comment", ""),
        "state": (silence.get("status") or {}).get("state", ""),
    }


def history_row(transition: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": transition.get("at") or "",
        "rule": transition.get("rule", ""),
        "labels": sorted_labels(transition.get("labels") or {}),
        "from": transition.get("from", ""),
        "to": transition.get("to", ""),
        "value": number(transition.get("value")),
    }


def slo_card(status: Mapping[str, Any], chart_range_s: int) -> dict[str, Any]:
    """One SLO on /slos, with its budget-burn chart's data source (relative, so a refresh moves it on)."""
    service, name = str(status.get("service", "")), str(status.get("slo", ""))
    key = f"{service}:{name}"
    return {
        "key": key,
        "service": service,
        "slo": name,
        "objective": number(status.get("objective")),
        "period_days": number((status.get("period_s") or 0) / 86400),
        "remaining": percent(status.get("error_budget_remaining")),
        "overspent": isinstance(status.get("error_budget_remaining"), int | float)
        and status["error_budget_remaining"] < 0,
        "burn_rates": [(window, number(rate)) for window, rate in (status.get("burn_rates") or {}).items()],
        "chart_src": f"/api/v1/slos/{quote(key, safe='')}/budget?range={chart_range_s}",
    }
