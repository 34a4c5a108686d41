"""AlertingService on the real embedded store, and inside a real `vigil up` on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alerting.model import AlertState
from alerting.service import AlertingService
from tests.integration.conftest import VigilServer
from tests.unit.alerting.fakes import ERRORS, FakeQuery, FakeRule, RecordingNotifier
from vigil.kernel import RunPlan, ServiceContext
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.schema import ALERT_HISTORY, ALERTS


def service(store: Store, query: FakeQuery, notifier: RecordingNotifier, tmp_path: Path) -> AlertingService:
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=tmp_path)
    ctx = ServiceContext(settings=Settings(data=tmp_path), store=store, registry=CollectorRegistry(), plan=plan)
    rule = FakeRule(for_s=1, interval_s=3600)  # the scheduler's first round only; the test drives the rest
    return AlertingService(ctx, rules=[rule], slos=[], notifier=notifier, query=query)


def wait_for_first_round(svc: AlertingService) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(s.last_evaluation is not None for _, ss in svc.evaluator.statuses() for s in ss):
            return
        time.sleep(0.05)
    raise AssertionError("the scheduler never ran the group")


def test_a_restart_keeps_firing_alerts_firing_and_sends_the_resolve(store: Store, tmp_path: Path) -> None:
    for table in (ALERTS, ALERT_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    query, first = FakeQuery(), RecordingNotifier()
    query.set(ERRORS, a=0.9)
    svc = service(store, query, first, tmp_path)
    svc.start()
    wait_for_first_round(svc)  # pending
    t0 = time.time() + 5
    svc.evaluator.evaluate_group("g", now=t0)  # firing
    (fired,) = svc.evaluator.alerts()
    assert fired.state == AlertState.FIRING
    svc.close(5)
    assert svc.health()[0] is False  # the scheduler stopped

    second = RecordingNotifier()
    again = service(store, query, second, tmp_path)
    again.start()
    try:
        wait_for_first_round(again)
        (kept,) = again.evaluator.alerts()
        ms = pytest.approx(0, abs=1e-3)  # times are stored to the millisecond
        assert kept.state == AlertState.FIRING
        assert (kept.active_at - fired.active_at, kept.fired_at - t0) == (ms, ms)
        assert again.health() == (True, {"rules": 1, "notify": {"receivers": "recorded by the test"}})
        query.set(ERRORS)
        again.evaluator.evaluate_group("g", now=t0 + 10)
        (last, _) = second.calls[-1]
        (resolved,) = last
        assert (resolved.state, resolved.resolved_at, resolved.fired_at - t0) == (AlertState.INACTIVE, t0 + 10, ms)
        assert again.evaluator.alerts() == []
        moves = [(t.from_state, t.to_state) for t in again.history(10)]
        assert moves == [("firing", "resolved"), ("pending", "firing"), ("inactive", "pending")]
    finally:
        again.close(5)


def test_the_api_inside_vigil_up(make_server: Any) -> None:
    server: VigilServer = make_server({"VIGIL_API_TOKENS": "tok-1,tok-2", "VIGIL_DEFAULT_RULES": "0"}).start()
    url = f"{server.url}/api/v1"
    r = httpx.get(f"{url}/rules", timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"  # VIGIL_API_TOKENS act as admin
    auth = {"Authorization": "Bearer tok-2"}
    assert httpx.get(f"{url}/rules", headers=auth, timeout=10).json() == {"groups": []}
    assert httpx.get(f"{url}/alerts", headers=auth, timeout=10).json() == {"alerts": []}
    assert httpx.get(f"{url}/alerts?history=1", headers=auth, timeout=10).json() == {"alerts": [], "history": []}
    health = httpx.get(f"{server.url}/healthz", timeout=10).json()
    assert "alerting" in str(health)
    assert server.metric_value("vigil_alerting_rules") == 0
