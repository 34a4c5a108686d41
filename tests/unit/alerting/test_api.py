"""The alerting API through FastAPI's test client: shapes, roles (viewers read, operators silence), input checks."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from prometheus_client import CollectorRegistry

from alerting import api
from alerting.evaluator import Evaluator
from alerting.model import Silence
from alerting.state import Transition
from tests.unit.alerting.fakes import ERRORS, FakeQuery, FakeRule, RecordingNotifier
from vigil.access import Principal, Role, authenticate, csrf_checker

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOW = 1_750_000_000.0
OPERATOR = Principal("oncall", Role.OPERATOR, "token")
CSRF = "the-session-token"


class FakeSilences:
    def __init__(self) -> None:
        self.items: dict[str, Silence] = {}
        self.ids = itertools.count(1)

    def create(self, matchers: Any, starts_at: float, ends_at: float, created_by: str, comment: str) -> Silence:
        s = Silence(f"s{next(self.ids)}", matchers, starts_at, ends_at, created_by, comment)
        self.items[s.id] = s
        return s

    def list(self, now: float, include_expired: bool = False) -> list[Silence]:
        return [s for s in self.items.values() if include_expired or s.ends_at > now]

    def expire(self, silence_id: str, now: float) -> bool:
        s = self.items.get(silence_id)
        if s is None or s.ends_at <= now:
            return False
        self.items[silence_id] = Silence(s.id, s.matchers, s.starts_at, now, s.created_by, s.comment)
        return True


class FakeAlerting:
    def __init__(self) -> None:
        query = FakeQuery()
        query.set(ERRORS, a=0.9, b=float("inf"))
        self.evaluator = Evaluator(
            [FakeRule(for_s=0), FakeRule("Slow", for_s=60)],
            None,
            None,
            RecordingNotifier(),
            CollectorRegistry(),
            query=query,
        )
        self.evaluator.evaluate_group("g", now=NOW)
        self.silences = FakeSilences()

    def silence_store(self) -> FakeSilences:
        return self.silences

    def slo_statuses(self, now: float) -> list[dict[str, Any]]:
        return [{"service": "llm", "slo": "availability", "error_budget_remaining": 0.5}]

    def history(self, limit: int) -> list[Transition]:
        return [Transition(NOW, "fp", "HighErrors", {"host": "a"}, "pending", "firing", 0.9)][:limit]

    def now(self) -> float:
        return NOW

    def notifications(self, since: float) -> list[dict[str, Any]]:
        return [{"receiver": "oncall/webhook/0", "at": NOW, "firing": [], "resolved": []}]

    def receivers(self) -> list[str]:
        return ["oncall"]


async def check_csrf(request: Request) -> None:
    if request.headers.get("x-csrf-token") != CSRF:
        raise HTTPException(403, "CSRF token missing or wrong")


def client(who: Principal | None = OPERATOR) -> tuple[TestClient, FakeAlerting]:
    """The API as `who` (None: anonymous), with the dashboard's auth stood in for by a fixed principal."""
    alerting = FakeAlerting()
    app = FastAPI()
    app.include_router(api.router)
    app.dependency_overrides[api.get_alerting] = lambda: alerting
    app.dependency_overrides[authenticate] = lambda: who
    app.dependency_overrides[csrf_checker] = lambda: check_csrf
    return TestClient(app), alerting


def test_alerts_shape_and_filter() -> None:
    c, _ = client()
    body = c.get("/api/v1/alerts").json()
    by = {(a["labels"]["alertname"], a["labels"]["host"]): a for a in body["alerts"]}
    assert set(by) == {("HighErrors", "a"), ("HighErrors", "b"), ("Slow", "a"), ("Slow", "b")}
    fired = by[("HighErrors", "a")]
    assert fired["state"] == "firing" and fired["value"] == 0.9 and fired["runbook"] == "restart-engine"
    assert fired["activeAt"] == "2025-06-15T15:06:40.000Z" == fired["firedAt"] and fired["resolvedAt"] is None
    assert by[("HighErrors", "b")]["value"] == "+Inf"  # JSON has no infinity
    assert {a["state"] for a in c.get("/api/v1/alerts?state=pending").json()["alerts"]} == {"pending"}
    assert "history" not in body
    (h,) = c.get("/api/v1/alerts?history=1").json()["history"]
    assert (h["from"], h["to"], h["at"]) == ("pending", "firing", "2025-06-15T15:06:40.000Z")
    assert c.get("/api/v1/alerts?state=resolved").status_code == 400


def test_rules_shape() -> None:
    c, _ = client()
    (group,) = c.get("/api/v1/rules").json()["groups"]
    assert (group["name"], group["interval_s"]) == ("g", 2.0)
    rule = group["rules"][0]
    assert {k: rule[k] for k in ("name", "type", "for_s", "health", "lastError")} == {
        "name": "HighErrors",
        "type": "threshold",
        "for_s": 0,
        "health": "ok",
        "lastError": "",
    }
    assert rule["lastEvaluation"] == "2025-06-15T15:06:40.000Z"


READS = ("/api/v1/alerts", "/api/v1/rules", "/api/v1/silences", "/api/v1/slos")


@pytest.mark.parametrize(
    ("who", "read", "write"),
    [
        (None, 401, 401),
        (Principal("v", Role.VIEWER, "token"), 200, 403),
        (Principal("o", Role.OPERATOR, "token"), 200, 400),  # allowed: 400 is the empty body's
        (Principal("a", Role.ADMIN, "token"), 200, 400),
    ],
)
def test_viewers_read_operators_silence(who: Principal | None, read: int, write: int) -> None:
    c, _ = client(who)
    for path in READS:
        r = c.get(path)
        assert r.status_code == read, path
        if read == 401:
            assert r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/api/v1/silences", json={}).status_code == write
    assert c.delete("/api/v1/silence/s1").status_code == (404 if write == 400 else write)


def test_a_login_session_needs_the_csrf_token_to_silence() -> None:
    c, alerting = client(Principal("ana", Role.OPERATOR, "session"))
    assert c.get("/api/v1/silences").status_code == 200  # reads need no token
    assert c.post("/api/v1/silences", json=silence()).status_code == 403
    assert alerting.silences.items == {}
    r = c.post("/api/v1/silences", json=silence(), headers={"X-CSRF-Token": CSRF})
    assert r.status_code == 200
    sid = r.json()["silenceID"]
    assert c.delete(f"/api/v1/silence/{sid}").status_code == 403
    assert c.delete(f"/api/v1/silence/{sid}", headers={"X-CSRF-Token": CSRF}).status_code == 200


def test_created_by_defaults_to_the_caller() -> None:
    c, alerting = client(OPERATOR)
    body = {k: v for k, v in silence().items() if k != "createdBy"}
    assert c.post("/api/v1/silences", json=body).status_code == 200
    (s,) = alerting.silences.items.values()
    assert s.created_by == "oncall"


def silence(**over: Any) -> dict[str, Any]:
    body = {
        "matchers": [{"name": "alertname", "value": "HighErrors", "isRegex": False, "isEqual": True}],
        "duration_s": 3600,
        "createdBy": "oncall",
        "comment": "deploying",
    }
    return {**body, **over}


def test_silence_create_list_expire() -> None:
    c, _ = client()
    r = c.post("/api/v1/silences", json=silence(matchers=[{"name": "host", "value": "a|b", "isRegex": True}]))
    assert r.status_code == 200
    sid = r.json()["silenceID"]
    (s,) = c.get("/api/v1/silences").json()
    assert s["id"] == sid and s["status"] == {"state": "active"}
    assert s["matchers"] == [{"name": "host", "value": "a|b", "isRegex": True, "isEqual": True}]
    assert (s["startsAt"], s["endsAt"]) == ("2025-06-15T15:06:40.000Z", "2025-06-15T16:06:40.000Z")
    assert c.delete(f"/api/v1/silence/{sid}").status_code == 200
    assert c.get("/api/v1/silences").json() == []
    assert c.get("/api/v1/silences?include_expired=1").json()[0]["status"] == {"state": "expired"}
    assert c.delete(f"/api/v1/silence/{sid}").status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (silence(matchers=[]), "matchers"),
        (silence(matchers=[{"name": "host", "value": ""}]), "empty string"),
        (silence(matchers=[{"name": "host", "value": ".*", "isRegex": True}]), "empty string"),
        (silence(matchers=[{"name": "bad name", "value": "x"}]), "label name"),
        (silence(matchers=[{"name": "host", "value": "(", "isRegex": True}]), "regular expression"),
        (silence(duration_s=None), "exactly one of endsAt and duration_s"),
        (silence(endsAt="2030-01-01T00:00:00Z"), "exactly one"),
        (silence(duration_s=None, endsAt="2020-01-01T00:00:00Z", startsAt="2019-01-01T00:00:00Z"), "past"),
        (silence(duration_s=None, startsAt="2026-01-01T00:00:00Z", endsAt="2025-12-01T00:00:00Z"), "after startsAt"),
        (silence(duration_s=None, endsAt="tomorrow"), "RFC 3339"),
        (silence(duration_s=10 * 366 * 86400), "duration_s"),
        (silence(comment="x" * 5000), "comment"),
        (silence(createdBy=""), "createdBy"),
        (silence(extra=1), "extra"),
    ],
)
def test_silence_input_is_checked(body: dict[str, Any], says: str) -> None:
    c, alerting = client()
    r = c.post("/api/v1/silences", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == 400, r.text
    assert says in r.json()["detail"]
    assert alerting.silences.items == {}


def test_silence_body_is_bounded_and_json() -> None:
    c, _ = client()
    assert c.post("/api/v1/silences", content=b"{" * (api.MAX_BODY_BYTES + 1)).status_code == 413
    r = c.post("/api/v1/silences", content=b"not json")
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]


def test_a_silence_the_store_refuses_is_a_409_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from alerting.notify.silence import SilenceError

    c, alerting = client()

    def full(*args: Any) -> Silence:
        raise SilenceError("10000 silences are held already; expire some first")

    monkeypatch.setattr(alerting.silences, "create", full)
    r = c.post("/api/v1/silences", json={k: v for k, v in silence().items() if v is not None})
    assert r.status_code == 409 and "expire some first" in r.json()["detail"]


def test_slos() -> None:
    c, _ = client()
    assert c.get("/api/v1/slos").json() == {
        "slos": [{"service": "llm", "slo": "availability", "error_budget_remaining": 0.5}]
    }


def test_notifications_name_the_receivers_that_can_deliver() -> None:
    c, _ = client()
    body = c.get("/api/v1/notifications", params={"since": NOW - 1}).json()
    assert body["receivers"] == ["oncall"]
    assert body["notifications"][0]["atUnix"] == NOW
    assert c.get("/api/v1/notifications", params={"since": -1}).status_code == 400
