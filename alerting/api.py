"""The alerting HTTP API under `/api/v1`: alerts, rules, silences (Alertmanager v2 shapes), SLOs.

This module is the one place alerting's errors become HTTP statuses. Who may call what is
declared through `vigil.access.require`: viewers read, operators create and expire silences
(with the session's CSRF token when they come with the login cookie).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from alerting.evaluator import Evaluator
from alerting.matchers import MatcherError, compile_pattern
from alerting.model import Alert, AlertState, Silence
from alerting.state import Transition
from vigil.access import Principal, Role, require

MAX_BODY_BYTES = 64 * 1024
MAX_MATCHERS = 64
MAX_COMMENT = 4096
MAX_CREATED_BY = 256
MAX_SILENCE_S = 366 * 86400  # a year: a longer mute is a rule to delete, not a silence
MAX_HISTORY = 1000
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


class ApiError(HTTPException):
    """Answered as `{"detail": message}` with its status, as FastAPI answers its own errors."""

    def __init__(self, status: int, message: str) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        super().__init__(status, message, headers=headers)


class Alerting(Protocol):
    """What the routes need from the service."""

    evaluator: Evaluator

    def silence_store(self) -> Any: ...

    def slo_statuses(self, now: float) -> list[dict[str, Any]]: ...

    def history(self, limit: int) -> list[Transition]: ...

    def now(self) -> float: ...


def get_alerting() -> Alerting:
    """A placeholder: `AlertingService` binds the real one through the app's dependency overrides."""
    raise RuntimeError("no alerting bound: mount this router through alerting.service.AlertingService")


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: str, name: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name}: {value!r} is not an RFC 3339 time such as 2025-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise ApiError(400, f"{name}: give a time zone (Z or +hh:mm)")
    return parsed.timestamp()


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


_OPS = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}


def silence_json(s: Silence, now: float) -> dict[str, Any]:
    state = "active" if s.active(now) else ("pending" if now < s.starts_at else "expired")
    inverse = {op: key for key, op in _OPS.items()}
    return {
        "id": s.id,
        "matchers": [
            {"name": n, "value": v, "isRegex": inverse[op][0], "isEqual": inverse[op][1]} for n, op, v in s.matchers
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
    createdBy: str | None = Field(None, min_length=1, max_length=MAX_CREATED_BY)  # default: who is asking
    comment: str = Field(min_length=1, max_length=MAX_COMMENT)


def parse_silence(
    raw: bytes, now: float, who: str = ""
) -> tuple[tuple[tuple[str, str, str], ...], float, float, str, str]:
    """A silence request → (matchers, starts_at, ends_at, created_by, comment); ApiError(400) says what is wrong.

    `createdBy` defaults to `who`, the caller's name.
    """
    try:
        body = SilenceIn.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body: not JSON ({exc.msg} at position {exc.pos})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}") from None
    matchers = []
    for i, m in enumerate(body.matchers):
        if not _LABEL.match(m.name):
            raise ApiError(400, f"matchers.{i}.name: {m.name!r} is not a label name")
        if m.isRegex:
            try:
                compile_pattern(m.value)
            except MatcherError as exc:
                raise ApiError(400, f"matchers.{i}.value: {exc}") from None
        matchers.append((m.name, _OPS[(m.isRegex, m.isEqual)], m.value))
    if all(_matches_empty(op, value) for _, op, value in matchers):
        raise ApiError(400, "matchers: at least one must not match the empty string, or the silence mutes everything")
    starts = _parse_time(body.startsAt, "startsAt") if body.startsAt else now
    if (body.endsAt is None) == (body.duration_s is None):
        raise ApiError(400, "give exactly one of endsAt and duration_s")
    ends = _parse_time(body.endsAt, "endsAt") if body.endsAt else starts + float(body.duration_s or 0)
    if ends <= starts:
        raise ApiError(400, "endsAt must be after startsAt")
    if ends <= now:
        raise ApiError(400, "endsAt is in the past: the silence would never apply")
    if ends - starts > MAX_SILENCE_S:
        raise ApiError(400, f"a silence lasts at most {MAX_SILENCE_S // 86400} days")
    created_by = body.createdBy or who
    if not created_by:
        raise ApiError(400, "createdBy: required")
    return tuple(matchers), starts, ends, created_by, body.comment


def _matches_empty(op: str, value: str) -> bool:
    if op == "=":
        return value == ""
    if op == "!=":
        return value != ""
    hit = compile_pattern(value).fullmatch("") is not None
    return hit if op == "=~" else not hit


router = APIRouter(prefix="/api/v1", tags=["alerting"])
Bound = Depends(get_alerting)
Reader = Depends(require(Role.VIEWER))
Operator = Depends(require(Role.OPERATOR, write=True))


@router.get("/alerts", summary="Alerts held (pending, firing), and with history=1 the newest transitions")
def list_alerts(
    state: str | None = None,
    history: bool = False,
    limit: int = 100,
    alerting: Alerting = Bound,
    who: Principal = Reader,
) -> dict[str, Any]:
    if state not in (None, AlertState.FIRING, AlertState.PENDING):
        raise ApiError(400, f"state: {state!r}; use firing or pending")
    if not 1 <= limit <= MAX_HISTORY:
        raise ApiError(400, f"limit: between 1 and {MAX_HISTORY}")
    alerts = [a for a in alerting.evaluator.alerts() if state is None or a.state == state]
    alerts.sort(key=lambda a: (a.active_at, a.fingerprint))
    body: dict[str, Any] = {"alerts": [alert_json(a) for a in alerts]}
    if history:
        try:
            body["history"] = [transition_json(t) for t in alerting.history(limit)]
        except Exception as exc:
            raise ApiError(503, f"alert history unavailable: the store failed ({exc})") from None
    return body


@router.get("/rules", summary="Rule groups, each rule's health, last error and last evaluation")
def list_rules(alerting: Alerting = Bound, who: Principal = Reader) -> dict[str, Any]:
    groups = []
    for group, statuses in alerting.evaluator.statuses():
        rules = []
        for status in statuses:
            rule = status.rule
            kind = "slo" if getattr(rule, "slo", None) is not None else getattr(rule, "type", "threshold")
            rules.append(
                {
                    "name": rule.name,
                    "type": kind,
                    "labels": dict(rule.labels),
                    "annotations": dict(rule.annotations),
                    "for_s": rule.for_s,
                    "health": status.health,
                    "lastError": status.last_error,
                    "lastEvaluation": rfc3339(status.last_evaluation),
                    "evaluationTime": status.evaluation_time_s,
                }
            )
        groups.append({"name": group.name, "interval_s": group.interval_s, "rules": rules})
    return {"groups": groups}


def _silences(alerting: Alerting) -> Any:
    store = alerting.silence_store()
    if store is None:
        raise ApiError(503, "silences are unavailable: the notification pipeline is not running")
    return store


@router.get("/silences", summary="Silences, Alertmanager v2 shape (expired ones with include_expired=1)")
def list_silences(
    include_expired: bool = False, alerting: Alerting = Bound, who: Principal = Reader
) -> list[dict[str, Any]]:
    now = alerting.now()
    return [silence_json(s, now) for s in _silences(alerting).list(now, include_expired=include_expired)]


@router.post("/silences", summary="Create a silence; answers its silenceID")
async def create_silence(request: Request, alerting: Alerting = Bound, who: Principal = Operator) -> JSONResponse:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"body over {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"body over {MAX_BODY_BYTES} bytes")
    now = alerting.now()
    matchers, starts, ends, created_by, comment = parse_silence(raw, now, who.name)
    silence = await run_in_threadpool(_silences(alerting).create, matchers, starts, ends, created_by, comment)
    return JSONResponse({"silenceID": silence.id})


@router.delete("/silence/{silence_id}", summary="Expire a silence now")
def expire_silence(silence_id: str, alerting: Alerting = Bound, who: Principal = Operator) -> dict[str, Any]:
    if len(silence_id) > 128:
        raise ApiError(400, "silence id too long")
    if not _silences(alerting).expire(silence_id, alerting.now()):
        raise ApiError(404, f"no silence {silence_id!r} (or it has expired already)")
    return {}


@router.get("/slos", summary="Each SLO's error budget remaining and burn rate per window")
def list_slos(alerting: Alerting = Bound, who: Principal = Reader) -> dict[str, Any]:
    try:
        return {"slos": alerting.slo_statuses(alerting.now())}
    except Exception as exc:
        raise ApiError(503, f"SLO status unavailable: the store failed ({exc})") from None
