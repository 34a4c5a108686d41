"""The alerting HTTP API under `/api/v1`: alerts, rules, silences (Alertmanager v2 shapes), SLOs.

This module is the one place alerting's errors become HTTP statuses. Who may call what is
declared through `vigil.access.require`: viewers read, operators create and expire silences
(with the session's CSRF token when they come with the login cookie).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from alerting.evaluator import Evaluator
from alerting.model import AlertState
from alerting.notify.silence import SilenceError
from alerting.shapes import (
    InvalidSilence,
    SilenceRequest,
    alert_json,
    rfc3339,
    silence_json,
    silence_request,
    transition_json,
)
from alerting.state import Transition
from vigil.access import Principal, Role, require
from vigil.http import read_body
from vigil.providers import provided, unbound

MAX_BODY_BYTES = 64 * 1024
MAX_HISTORY = 1000


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

    def notifications(self, since: float) -> list[dict[str, Any]]: ...

    def receivers(self) -> list[str]: ...


async def get_alerting(request: Request) -> Alerting:
    """A placeholder: `AlertingService` binds the real one (`vigil.providers`)."""
    return await provided(
        request, get_alerting, unbound("no alerting bound: mount this router through alerting.service.AlertingService")
    )


def parse_silence(raw: bytes, now: float, who: str = "") -> SilenceRequest:
    """A silence request body → the checked request; ApiError(400) says what is wrong.

    `createdBy` defaults to `who`, the caller's name.
    """
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body: not JSON ({exc.msg} at position {exc.pos})") from None
    if isinstance(body, dict) and who and body.get("createdBy") is None:
        body["createdBy"] = who
    try:
        return silence_request(body, now)
    except InvalidSilence as exc:
        raise ApiError(400, str(exc)) from None


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
    raw = await read_body(request, MAX_BODY_BYTES)
    now = alerting.now()
    req = parse_silence(raw, now, who.name)
    store = _silences(alerting)
    try:
        silence = await run_in_threadpool(
            store.create, req.matchers, req.starts_at, req.ends_at, req.created_by, req.comment
        )
    except SilenceError as exc:  # the store's own limits (how many silences it holds)
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"silenceID": silence.id})


@router.delete("/silence/{silence_id}", summary="Expire a silence now")
def expire_silence(silence_id: str, alerting: Alerting = Bound, who: Principal = Operator) -> dict[str, Any]:
    if len(silence_id) > 128:
        raise ApiError(400, "silence id too long")
    if not _silences(alerting).expire(silence_id, alerting.now()):
        raise ApiError(404, f"no silence {silence_id!r} (or it has expired already)")
    return {}


@router.get("/notifications", summary="Notifications delivered since a time (unix seconds), oldest first")
def list_notifications(since: float = 0.0, alerting: Alerting = Bound, who: Principal = Reader) -> dict[str, Any]:
    if since != since or since < 0:
        raise ApiError(400, "since: unix seconds, 0 or more")
    sent = alerting.notifications(since)
    return {
        "notifications": [{**n, "at": rfc3339(n["at"]), "atUnix": n["at"]} for n in sent],
        "receivers": alerting.receivers(),  # those with an integration: none means nobody can be paged
    }


@router.get("/slos", summary="Each SLO's error budget remaining and burn rate per window")
def list_slos(alerting: Alerting = Bound, who: Principal = Reader) -> dict[str, Any]:
    try:
        return {"slos": alerting.slo_statuses(alerting.now())}
    except Exception as exc:
        raise ApiError(503, f"SLO status unavailable: the store failed ({exc})") from None
