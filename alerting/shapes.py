"""The JSON shapes alerting answers in (Alertmanager v2 for silences) and the checks of a silence request.

Shared by the HTTP API (`alerting.api`) and the dashboard's view (`alerting.view`), so a script and
a page read and write the same thing. Pure: no HTTP status codes here; `InvalidSilence` names the
field at fault and each caller answers it in its own way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerting.matchers import MatcherError, compile_pattern
from alerting.model import Alert, Silence
from alerting.state import Transition
from vigil.views import ViewError

MAX_MATCHERS = 64
MAX_COMMENT = 4096
MAX_CREATED_BY = 256
MAX_SILENCE_S = 366 * 86400  # a year: a longer mute is a rule to delete, not a silence
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_OPS = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
_INVERSE = {op: key for key, op in _OPS.items()}


class InvalidSilence(ViewError):
    """A silence request refused before anything was stored; the message starts with the field at fault."""


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_value(value: float) -> float | str:
    """JSON has no infinities or NaN: those are sent as Prometheus prints them."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "state": str(alert.state),
        "value": json_value(alert.value),
        "activeAt": rfc3339(alert.active_at),
        "firedAt": rfc3339(alert.fired_at),
        "resolvedAt": rfc3339(alert.resolved_at),
        "runbook": alert.runbook,
    }


def transition_json(t: Transition) -> dict[str, Any]:
    return {
        "at": rfc3339(t.at),
        "fingerprint": t.fingerprint,
        "rule": t.rule,
        "labels": t.labels,
        "from": t.from_state,
        "to": t.to_state,
        "value": json_value(t.value),
    }


def silence_json(s: Silence, now: float) -> dict[str, Any]:
    state = "active" if s.active(now) else ("pending" if now < s.starts_at else "expired")
    return {
        "id": s.id,
        "matchers": [
            {"name": n, "value": v, "isRegex": _INVERSE[op][0], "isEqual": _INVERSE[op][1]} for n, op, v in s.matchers
        ],
        "startsAt": rfc3339(s.starts_at),
        "endsAt": rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
        "status": {"state": state},
    }


class MatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=1024)
    isRegex: bool = False
    isEqual: bool = True


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[MatcherIn] = Field(min_length=1, max_length=MAX_MATCHERS)
    startsAt: str | None = None
    endsAt: str | None = None
    duration_s: float | None = Field(None, gt=0, le=MAX_SILENCE_S)
    createdBy: str = Field(min_length=1, max_length=MAX_CREATED_BY)
    comment: str = Field(min_length=1, max_length=MAX_COMMENT)


@dataclass(frozen=True)
class SilenceRequest:
    """A checked silence request, ready for `SilenceStore.create`."""

    matchers: tuple[tuple[str, str, str], ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str


def silence_request(body: Any, now: float) -> SilenceRequest:
    """An Alertmanager v2 silence body (decoded JSON or a dict) → a request; InvalidSilence says what is wrong."""
    try:
        parsed = SilenceIn.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidSilence(f"{where}: {first['msg']}") from None
    matchers = []
    for i, m in enumerate(parsed.matchers):
        if not _LABEL.match(m.name):
            raise InvalidSilence(f"matchers.{i}.name: {m.name!r} is not a label name")
        if m.isRegex:
            try:
                compile_pattern(m.value)
            except MatcherError as exc:
                raise InvalidSilence(f"matchers.{i}.value: {exc}") from None
        matchers.append((m.name, _OPS[(m.isRegex, m.isEqual)], m.value))
    if all(_matches_empty(op, value) for _, op, value in matchers):
        raise InvalidSilence("matchers: at least one must not match the empty string, or the silence mutes everything")
    starts = _parse_time(parsed.startsAt, "startsAt") if parsed.startsAt else now
    if (parsed.endsAt is None) == (parsed.duration_s is None):
        raise InvalidSilence("endsAt: give exactly one of endsAt and duration_s")
    ends = _parse_time(parsed.endsAt, "endsAt") if parsed.endsAt else starts + float(parsed.duration_s or 0)
    if ends <= starts:
        raise InvalidSilence("endsAt must be after startsAt")
    if ends <= now:
        raise InvalidSilence("endsAt is in the past: the silence would never apply")
    if ends - starts > MAX_SILENCE_S:
        raise InvalidSilence(f"endsAt: a silence lasts at most {MAX_SILENCE_S // 86400} days")
    return SilenceRequest(tuple(matchers), starts, ends, parsed.createdBy, parsed.comment)


def _parse_time(value: str, name: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSilence(f"{name}: {value!r} is not an RFC 3339 time such as 2025-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidSilence(f"{name}: give a time zone (Z or +hh:mm)")
    return parsed.timestamp()


def _matches_empty(op: str, value: str) -> bool:
    if op == "=":
        return value == ""
    if op == "!=":
        return value != ""
    hit = compile_pattern(value).fullmatch("") is not None
    return hit if op == "=~" else not hit
