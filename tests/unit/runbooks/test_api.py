"""The runbook API over FastAPI's test client: who may read and act, the statuses of refusals, and
automatic starts from alerts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import vigil.access
from runbooks.service import RunbooksService
from tests.unit.runbooks.fakes import APPROVAL, SIMPLE, FakeActuators, FakeCheck, MemoryAudit, runbook
from vigil.access import Principal, Role
from vigil.kernel import RunPlan, ServiceContext, WorkloadPlan
from vigil.runbook_view import runbooks_view
from vigil.settings import Settings

WORKLOAD = WorkloadPlan(port=9, url="http://127.0.0.1:9", control_token="t")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunbooksService]:
    books = {b.name: b for b in (runbook(tmp_path, SIMPLE), runbook(tmp_path, APPROVAL, "gated.yaml"))}
    plan = RunPlan(host="127.0.0.1", port=8080, url="http://127.0.0.1:8080", data=tmp_path, workload=WORKLOAD)
    settings = Settings(data=tmp_path, runbook_auto_max_per_hour=2, runbook_auto_min_interval_s=600)
    ctx = ServiceContext(settings=settings, store=None, registry=None, plan=plan)  # type: ignore[arg-type]
    svc = RunbooksService(ctx, runbooks=books, audit=MemoryAudit(), check=FakeCheck(True), actuators=FakeActuators())  # type: ignore[arg-type]
    svc.start()
    yield svc
    svc.close(1.0)


def client(service: RunbooksService, who: Principal | None) -> TestClient:
    app = FastAPI()
    for router in service.routers:
        app.include_router(router)
    app.dependency_overrides.update(service.providers)
    app.dependency_overrides[vigil.access.authenticate] = lambda: who
    return TestClient(app)


OPERATOR = Principal("olga", Role.OPERATOR, "token")
VIEWER = Principal("vic", Role.VIEWER, "token")


def wait_state(c: TestClient, run_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = c.get(f"/api/v1/runs/{run_id}").json()
        if body["state"] == state:
            return body
        time.sleep(0.02)
    raise AssertionError(f"never {state}: {body}")


def test_viewers_read_operators_act(service: RunbooksService) -> None:
    viewer, operator = client(service, VIEWER), client(service, OPERATOR)
    names = [b["name"] for b in viewer.get("/api/v1/runbooks").json()["runbooks"]]
    assert names == ["gated", "simple"]
    assert viewer.get("/api/v1/runbooks/simple").json()["params"][0]["default"] == 0.5
    refused = viewer.post("/api/v1/runbooks/simple/runs", json={})
    assert refused.status_code == 403 and "operator role is required" in refused.json()["detail"]
    assert client(service, None).get("/api/v1/runs").status_code == 401
    started = operator.post("/api/v1/runbooks/gated/runs", json={})
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["target"] == WORKLOAD.metrics_url and run["started_by"] == "olga"  # the plan's workload by default
    wait_state(viewer, run["id"], "waiting_approval")
    assert viewer.post(f"/api/v1/runs/{run['id']}/approve").status_code == 403
    assert viewer.post(f"/api/v1/runs/{run['id']}/cancel").status_code == 403
    assert operator.post(f"/api/v1/runs/{run['id']}/approve").status_code == 200
    done = wait_state(viewer, run["id"], "succeeded")
    assert done["approvals"] == [{"step": 1, "by": "olga", "at": done["approvals"][0]["at"]}]
    assert [s["status"] for s in done["steps"]] == ["succeeded", "approved", "succeeded", "succeeded"]
    assert [r["id"] for r in viewer.get("/api/v1/runs").json()["runs"]] == [run["id"]]


def test_refusals_have_their_statuses(service: RunbooksService) -> None:
    c = client(service, OPERATOR)
    assert c.post("/api/v1/runbooks/nope/runs", json={}).status_code == 404
    assert c.get("/api/v1/runs/nope").status_code == 404
    bad = c.post("/api/v1/runbooks/simple/runs", json={"params": {"fraction": 7}})
    assert bad.status_code == 400 and "above its maximum" in bad.json()["detail"]
    assert c.post("/api/v1/runbooks/simple/runs", json={"params": {}, "extra": 1}).status_code == 422
    first = c.post("/api/v1/runbooks/gated/runs", json={}).json()
    second = c.post("/api/v1/runbooks/gated/runs", json={})
    assert second.status_code == 409 and first["id"] in second.json()["detail"]
    assert c.post(f"/api/v1/runs/{first['id']}/retry").status_code == 409
    assert c.post(f"/api/v1/runs/{first['id']}/cancel").status_code == 200
    wait_state(c, first["id"], "cancelled")
    assert c.post(f"/api/v1/runs/{first['id']}/cancel").status_code == 409


def test_a_dry_run_answers_the_plan(service: RunbooksService) -> None:
    c = client(service, OPERATOR)
    body = c.post("/api/v1/runbooks/simple/runs", json={"dry_run": True, "params": {"fraction": 0.1}}).json()
    assert body["dry_run"] and body["state"] == "succeeded"
    assert [e["message"] for e in body["log"]][:2] == ["would shed(fraction=0.1)", "would restart()"]
    assert service.actuators.performed == []  # type: ignore[attr-defined]


def test_alerts_start_runbooks_only_where_the_rule_allows_and_the_guard_admits(service: RunbooksService) -> None:
    opened: list[int] = []
    service.on_breaker_open(lambda limit, at: opened.append(limit))
    labels = {"alertname": "EngineStalled", "llm.endpoint": WORKLOAD.metrics_url}
    assert service.on_alert(labels, {"runbook": "simple"}) is None  # the rule does not allow it
    assert service.on_alert(labels, {"runbook": "nope", "runbook_auto": "true"}) is None
    run_id = service.on_alert(labels, {"runbook": "gated", "runbook_auto": "true"})
    assert run_id is not None
    record = service.audit.run(run_id)
    assert record is not None and record.auto and record.started_by == "alert:EngineStalled"
    assert service.on_alert(labels, {"runbook": "gated", "runbook_auto": "true"}) is None  # rate limited
    other = {**labels, "llm.endpoint": "http://other:1/metrics"}
    assert service.on_alert(other, {"runbook": "gated", "runbook_auto": "true"}) is not None
    third = {**labels, "llm.endpoint": "http://third:1/metrics"}
    assert service.on_alert(third, {"runbook": "gated", "runbook_auto": "true"}) is None  # 2 an hour: open
    assert opened == [2] and service.health()[1]["auto_breaker_open"]
    c = client(service, OPERATOR)
    assert wait_state(c, run_id, "waiting_approval")["auto"]  # an automatic run still waits for a person


def test_the_view_is_bound_for_the_dashboard(service: RunbooksService) -> None:
    assert service.providers[runbooks_view]() is service
