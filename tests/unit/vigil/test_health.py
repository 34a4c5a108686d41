"""/healthz: each service's and each child's health from cached state, 503 naming what is unhealthy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.testclient import TestClient

from vigil.app import create_app
from vigil.health import HealthMonitor
from vigil.kernel import Health, RunPlan, ServiceContext
from vigil.providers import provided, unbound
from vigil.settings import Settings
from vigil.supervisor import ChildHealth


@dataclass
class FakeStore:
    embedded: bool = True
    reachable: bool = True

    def ping(self) -> bool:
        return self.reachable


async def needs_thing(request: Request) -> str:
    return await provided(request, needs_thing, unbound("the service's provider answers this placeholder"))


thing_router = APIRouter()


@thing_router.get("/thing")
async def thing(value: str = Depends(needs_thing)) -> dict[str, str]:
    return {"thing": value}


class ThingService:
    """A service as the kernel describes one; records what the app did with it."""

    name = "thing"
    log: list[str] = []
    healthy = True

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.routers: Sequence[APIRouter] = (thing_router,)
        self.providers: Mapping[Callable[..., Any], Callable[..., Any]] = {needs_thing: lambda: f"port {ctx.plan.port}"}

    def start(self) -> None:
        ThingService.log.append("start")

    def close(self, timeout_s: float) -> None:
        ThingService.log.append(f"close {timeout_s > 0}")

    def health(self) -> Health:
        return ThingService.healthy, {"widgets": 3}


def child(status: str) -> ChildHealth:
    return ChildHealth(
        "workload",
        status,
        pid=42,
        restarts=1,
        last_error=None if status == "ok" else "HTTP 503: dead",
        checked_age_s=0.5,
    )


def test_healthz_reports_services_and_children_and_503_names_the_unhealthy(tmp_path: Path) -> None:
    children = {"workload": child("ok")}
    plan = RunPlan(host="127.0.0.1", port=9123, url="http://127.0.0.1:9123", data=tmp_path)
    store = FakeStore()
    ThingService.log = []
    app = create_app(Settings(data=tmp_path), store, plan, children=lambda: children, services=(ThingService,))  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert ThingService.log == ["start"]
        assert client.get("/thing").json() == {"thing": "port 9123"}  # the dependency came from the service
        answer = client.get("/healthz")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ok" and body["unhealthy"] == []
        assert body["services"] == {"thing": {"ok": True, "widgets": 3}}
        assert body["children"]["workload"] == {
            "ok": True,
            "status": "ok",
            "pid": 42,
            "restarts": 1,
            "last_error": None,
            "checked_age_s": 0.5,
        }
        assert body["store"]["reachable"] is True and body["store_kind"] == "embedded"

        children["workload"] = child("unhealthy")  # the supervisor's cache is read on each request
        answer = client.get("/healthz")
        assert answer.status_code == 503
        assert answer.json()["unhealthy"] == ["child:workload"]
        assert answer.json()["children"]["workload"]["last_error"] == "HTTP 503: dead"
    assert ThingService.log == ["start", "close True"]


def test_an_unhealthy_service_or_store_is_named(tmp_path: Path) -> None:
    class Broken(ThingService):
        name = "broken"

        def health(self) -> Health:
            raise RuntimeError("boom")

    store = FakeStore(reachable=False)
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=tmp_path)
    app = create_app(Settings(data=tmp_path), store, plan, services=(ThingService, Broken))  # type: ignore[arg-type]
    with TestClient(app) as client:
        answer = client.get("/healthz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["unhealthy"] == ["store", "service:broken"]
    assert body["services"]["broken"] == {"ok": False, "error": "RuntimeError('boom')"}
    assert body["children"] == {}


def test_a_hung_store_ping_is_reported_without_holding_up_the_answer() -> None:
    release = threading.Event()
    calls: list[int] = []

    def ping() -> bool:
        calls.append(1)
        release.wait(10)
        return True

    monitor = HealthMonitor(ping, [], interval_s=0.05, ping_timeout_s=0.1)
    try:
        monitor.refresh()
        ok, body = monitor.snapshot(ready=True)
        assert not ok and body["unhealthy"] == ["store"]
        assert body["store"]["error"].startswith("store ping unanswered for")
        monitor.refresh()
        assert len(calls) == 1  # a hung ping is waited on, never piled up
    finally:
        release.set()
    monitor.refresh()
    assert monitor.snapshot(ready=True)[0]


def test_not_ready_is_unhealthy() -> None:
    monitor = HealthMonitor(lambda: True, [])
    monitor.refresh()
    assert monitor.snapshot(ready=True)[0]
    ok, body = monitor.snapshot(ready=False)
    assert not ok and body["unhealthy"] == ["vigil (starting or stopping)"]
