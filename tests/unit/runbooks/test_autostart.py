"""Automatic starts: a rate limit per runbook and target, and the fleet-wide circuit breaker, both counted
from the audit trail so that a restart forgets neither; and an alert's labels as the run's parameters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooks.audit import RunRecord
from runbooks.autostart import AutoGuard, AutoRefused
from runbooks.service import RunbooksService
from tests.unit.runbooks.fakes import FakeActuators, FakeCheck, MemoryAudit, runbook
from vigil.kernel import RunPlan, ServiceContext
from vigil.runbook_view import RunConflict
from vigil.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def started(audit: MemoryAudit, clock: Clock, runbook: str, target: str) -> str:
    """What the engine writes first for an automatic run."""
    run = RunRecord(
        uuid.uuid4().hex, 0, clock(), runbook, "gpu", target, {}, False, "alert:X", True, "X {}", "running", -1, "",
        "alert:X",
    )  # fmt: skip
    audit.record_run(run)
    return run.id


def admit(guard: AutoGuard, audit: MemoryAudit, clock: Clock, runbook: str, target: str) -> str | None:
    """None when the guard let the start go ahead (and the start was recorded), else why not."""
    try:
        guard.start(runbook, target, lambda: started(audit, clock, runbook, target))
    except AutoRefused as exc:
        return str(exc)
    return None


def test_the_breaker_opens_past_n_runs_an_hour_tells_once_and_closes_as_they_age() -> None:
    clock, audit, opened = Clock(), MemoryAudit(), []
    guard = AutoGuard(3, 0, clock, audit, lambda limit, at: opened.append((limit, at)))
    for i in range(3):
        assert admit(guard, audit, clock, "rb", f"t{i}") is None
        clock.now += 60
    reason = admit(guard, audit, clock, "rb", "t9")
    assert reason is not None and reason.startswith("circuit breaker open: 3 automatic runs in the last hour")
    assert admit(guard, audit, clock, "other", "t10") is not None  # fleet-wide: every runbook and target
    assert opened == [(3, clock.now)] and guard.open  # told once, not once per refusal
    clock.now += 3600 - 3 * 60 + 1  # the first start ages out
    assert not guard.open
    assert admit(guard, audit, clock, "rb", "t9") is None


def test_one_runbook_on_one_target_is_rate_limited() -> None:
    clock, audit = Clock(), MemoryAudit()
    guard = AutoGuard(100, 600, clock, audit)
    assert admit(guard, audit, clock, "rb", "a") is None
    clock.now += 599
    assert (admit(guard, audit, clock, "rb", "a") or "").startswith("rate limited: rb started on a 599s ago")
    assert admit(guard, audit, clock, "rb", "b") is None and admit(guard, audit, clock, "other", "a") is None
    clock.now += 1
    assert admit(guard, audit, clock, "rb", "a") is None


def test_a_start_that_did_not_happen_does_not_count() -> None:
    clock, audit = Clock(), MemoryAudit()
    guard = AutoGuard(1, 600, clock, audit)

    def held() -> str:
        raise RunConflict("a run holds the target")

    with pytest.raises(RunConflict):
        guard.start("rb", "a", held)
    assert admit(guard, audit, clock, "rb", "a") is None


def test_a_restart_keeps_the_rate_limit_and_the_breaker_from_the_audit_trail() -> None:
    clock, audit, opened = Clock(), MemoryAudit(), []
    before = AutoGuard(2, 600, clock, audit)
    assert admit(before, audit, clock, "rb", "a") is None
    clock.now += 10
    assert admit(before, audit, clock, "rb", "b") is None
    # vigil up restarts: a new guard, nothing in memory, the same store
    after = AutoGuard(2, 600, clock, audit, lambda limit, at: opened.append(limit))
    clock.now += 10
    assert (admit(after, audit, clock, "rb", "a") or "").startswith("rate limited: rb started on a 20s ago")
    assert (admit(after, audit, clock, "rb", "c") or "").startswith("circuit breaker open: 2 automatic runs")
    assert opened == [2]


def test_starts_this_process_made_count_before_the_store_shows_them() -> None:
    clock = Clock()
    blind = MemoryAudit()  # a store whose reads do not show the writes yet (a cluster's async insert)
    guard = AutoGuard(2, 600, clock, blind)
    assert admit(guard, MemoryAudit(), clock, "rb", "a") is None
    assert admit(guard, MemoryAudit(), clock, "rb", "a") is not None
    assert admit(guard, MemoryAudit(), clock, "rb", "b") is None
    assert (admit(guard, MemoryAudit(), clock, "rb", "c") or "").startswith("circuit breaker open")


# -- through the service: labels → parameters and target, refusals in the audit, a restart --------

GPU_BOOK = """
name: cap
target: gpu
params:
  watts: {type: float, default: 300, min: 50, max: 700}
  node: {type: str, default: "", label: host.name}
  xid: {type: int, default: 0}
steps:
  - note: "cap ${target} on ${node} at ${watts} W (xid ${xid})"
"""


def make_service(tmp_path: Path, audit: MemoryAudit, clock: Clock) -> RunbooksService:
    plan = RunPlan(host="127.0.0.1", port=8080, url="http://127.0.0.1:8080", data=tmp_path)
    settings = Settings(data=tmp_path, runbook_auto_max_per_hour=2, runbook_auto_min_interval_s=600)
    ctx = ServiceContext(settings=settings, store=None, registry=None, plan=plan, clock=lambda: int(clock() * 1e9))  # type: ignore[arg-type]
    books = {"cap": runbook(tmp_path, GPU_BOOK)}
    svc = RunbooksService(ctx, runbooks=books, audit=audit, check=FakeCheck(True), actuators=FakeActuators())  # type: ignore[arg-type]
    svc.start()
    services.append(svc)
    return svc


services: list[RunbooksService] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while services:
        services.pop().close(1.0)


AUTO = {"runbook": "cap", "runbook_auto": "true"}


def test_an_alerts_labels_fill_the_parameters_of_their_name_and_its_target(tmp_path: Path) -> None:
    audit, clock = MemoryAudit(), Clock()
    svc = make_service(tmp_path, audit, clock)
    labels = {"alertname": "GpuHot", "gpu.uuid": "GPU-1", "host.name": "node-7", "xid": "79", "severity": "page"}
    run_id = svc.on_alert(labels, AUTO)
    assert run_id is not None and svc.engine.wait(run_id, 10)
    record = audit.run(run_id)
    assert record is not None and record.state == "succeeded"
    assert record.target == "GPU-1"  # the lock and the audit row are the alert's GPU
    assert record.params == {"watts": 300.0, "node": "node-7", "xid": 79}  # by name, by `label:`, else default
    assert audit.events(run_id)[0].message == "cap GPU-1 on node-7 at 300.0 W (xid 79)"


def test_an_alerts_bad_values_are_refused_with_the_reason_in_the_audit(tmp_path: Path) -> None:
    audit, clock = MemoryAudit(), Clock()
    svc = make_service(tmp_path, audit, clock)
    assert svc.on_alert({"alertname": "GpuHot", "gpu.uuid": "GPU-1", "xid": "seventy-nine"}, AUTO) is None
    assert svc.on_alert({"alertname": "GpuHot", "host.name": "node-7"}, AUTO) is None  # no gpu.uuid: no target
    refused = audit.runs(10)
    assert [(r.state, r.auto, r.step) for r in refused] == [("failed", True, -1)] * 2
    reasons = sorted(r.reason for r in refused)
    assert reasons == [
        "refused at start: cap acts on a gpu: give its target",
        "refused at start: parameter xid: expected int, got 'seventy-nine'",
    ]
    assert all(r.origin.startswith("GpuHot {") for r in refused)
    with pytest.raises(Exception, match="expected int"):  # retrying it checks the values again
        svc.retry(next(r.id for r in refused if "xid" in r.reason), "olga")
    # refusals are not runs: neither the rate limit nor the breaker counts them
    assert svc.on_alert({"alertname": "GpuHot", "gpu.uuid": "GPU-1"}, AUTO) is not None


def test_a_restart_of_the_service_keeps_its_automatic_start_limits(tmp_path: Path) -> None:
    audit, clock = MemoryAudit(), Clock()
    first = make_service(tmp_path, audit, clock)
    assert first.on_alert({"alertname": "GpuHot", "gpu.uuid": "GPU-1"}, AUTO) is not None
    assert first.on_alert({"alertname": "GpuHot", "gpu.uuid": "GPU-2"}, AUTO) is not None
    first.close(1.0)
    clock.now += 30
    second = make_service(tmp_path, audit, clock)  # `vigil up` restarted on the same store
    assert second.on_alert({"alertname": "GpuHot", "gpu.uuid": "GPU-1"}, AUTO) is None  # rate limited
    assert second.on_alert({"alertname": "GpuHot", "gpu.uuid": "GPU-3"}, AUTO) is None  # breaker: 2 an hour
    assert second.guard.open
    assert len([r for r in audit.runs(10) if r.state != "failed"]) == 2
