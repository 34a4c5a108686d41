"""The run engine with in-memory edges: dry runs, retries, timeouts, re-runs, the lock, the audit rows,
approvals, cancels, and runs cut off by a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooks.engine import Engine
from runbooks.model import Runbook
from runbooks.steps import StepRunner
from tests.unit.runbooks.fakes import APPROVAL, SIMPLE, FakeActuators, FakeCheck, MemoryAudit, runbook
from vigil.runbook_view import BadRunRequest, RunConflict, UnknownName

TARGET = "http://127.0.0.1:9/metrics"


def make(books: list[Runbook], audit: MemoryAudit | None = None, check: FakeCheck | None = None):
    audit = audit or MemoryAudit()
    actuators = FakeActuators()
    steps = StepRunner(actuators, check or FakeCheck(True))  # type: ignore[arg-type]
    engine = Engine({b.name: b for b in books}, audit, steps, time.time)
    engines.append(engine)
    return engine, audit, actuators


@pytest.fixture
def simple(tmp_path: Path) -> Runbook:
    return runbook(tmp_path, SIMPLE)


@pytest.fixture
def gated(tmp_path: Path) -> Runbook:
    return runbook(tmp_path, APPROVAL, "gated.yaml")


engines: list[Engine] = []  # closed after each test


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while engines:
        engines.pop().close(1.0)


def finish(engine: Engine, run_id: str, audit: MemoryAudit) -> str:
    assert engine.wait(run_id, 10), "the run did not end"
    record = audit.run(run_id)
    assert record is not None
    return record.state


def until_state(audit: MemoryAudit, run_id: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = audit.run(run_id)
        if record is not None and record.state == state:
            return
        time.sleep(0.01)
    raise AssertionError(f"run never reached {state}: {audit.run(run_id)}")


def test_a_run_walks_every_step_and_records_who_did_what(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    run = engine.start("simple", "alice", {"fraction": "0.25"}, TARGET)
    assert finish(engine, run.id, audit) == "succeeded"
    assert actuators.performed == [("shed", TARGET, {"fraction": 0.25}), ("restart", TARGET, {})]
    versions = audit.versions(run.id)
    assert versions[0].started_by == "alice" and versions[0].params == {"fraction": 0.25}
    assert [v.seq for v in versions] == list(range(len(versions)))  # append-only: every version kept
    events = audit.events(run.id)
    assert [(e.step_name, e.event) for e in events] == [
        ("shed", "started"), ("shed", "succeeded"),
        ("restart", "started"), ("restart", "succeeded"),
        ("verify", "started"), ("verify", "succeeded"),
    ]  # fmt: skip
    assert all(e.actor == "alice" for e in events)
    assert events[1].output["args"] == {"fraction": 0.25}


def test_a_dry_run_changes_nothing_and_shows_each_step(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    actuators.refuse_preflight["restart"] = "the workload is not ours"
    run = engine.start("simple", "bob", {}, TARGET, dry_run=True)
    assert actuators.performed == []
    record = audit.run(run.id)
    assert record is not None and record.dry_run and record.state == "failed"
    assert "step 2 (restart): would be refused: the workload is not ours" in record.reason
    events = audit.events(run.id)
    assert [e.event for e in events] == ["planned", "refused", "planned"]
    assert events[0].message == "would shed(fraction=0.5)"
    assert "now true" in events[2].message  # a check is read, once; nothing waits
    # a dry run holds no lock: a real run may start beside it
    engine.start("simple", "bob", {}, TARGET)


def test_a_failed_attempt_is_retried_until_it_succeeds(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    actuators.script["shed"] = ["fail", "fail", "ok"]
    run = engine.start("simple", "alice", {}, TARGET)
    assert finish(engine, run.id, audit) == "succeeded"
    shed = [(e.attempt, e.event) for e in audit.events(run.id) if e.step_name == "shed"]
    assert shed == [(1, "started"), (1, "failed"), (2, "started"), (2, "failed"), (3, "started"), (3, "succeeded")]


def test_retries_run_out_and_the_run_fails_at_that_step(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    actuators.script["shed"] = ["fail", "fail", "fail"]
    run = engine.start("simple", "alice", {}, TARGET)
    assert finish(engine, run.id, audit) == "failed"
    record = audit.run(run.id)
    assert record is not None and record.step == 0 and "shed failed" in record.reason
    assert [p[0] for p in actuators.performed] == ["shed"] * 3


def test_a_refused_action_is_not_retried(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    actuators.script["shed"] = ["refuse"]
    run = engine.start("simple", "alice", {}, TARGET)
    assert finish(engine, run.id, audit) == "failed"
    assert [e.event for e in audit.events(run.id)] == ["started", "refused"]


def test_an_action_past_its_timeout_is_timed_out(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    actuators.script["restart"] = ["hang"]
    run = engine.start("simple", "alice", {}, TARGET)
    assert finish(engine, run.id, audit) == "failed"
    last = audit.events(run.id)[-1]
    assert (last.step_name, last.event) == ("restart", "timed_out")
    actuators.release.set()


def test_a_wait_for_that_never_holds_times_out(simple: Runbook) -> None:
    check = FakeCheck(False)
    engine, audit, _ = make([simple], check=check)
    run = engine.start("simple", "alice", {}, TARGET)
    assert finish(engine, run.id, audit) == "failed"
    last = audit.events(run.id)[-1]
    assert last.event == "timed_out" and last.output["reads"] >= 2
    assert all(c.matchers[0].value == TARGET for c in check.asked)  # ${target} filled in


def test_a_failed_run_is_rerun_from_the_step_that_failed(simple: Runbook) -> None:
    engine, audit, actuators = make([simple])
    actuators.script["restart"] = ["fail"]
    run = engine.start("simple", "alice", {}, TARGET)
    assert finish(engine, run.id, audit) == "failed"
    assert [p[0] for p in actuators.performed] == ["shed", "restart"]
    engine.retry(run.id, "carol")
    assert finish(engine, run.id, audit) == "succeeded"
    assert [p[0] for p in actuators.performed] == ["shed", "restart", "restart"]  # shed was not done again
    retried = [v for v in audit.versions(run.id) if v.actor == "carol"]
    assert retried and retried[0].reason == "retried from step 2 by carol"
    seqs = [e.seq for e in audit.events(run.id)]
    assert seqs == sorted(set(seqs))
    with pytest.raises(RunConflict):
        engine.retry(run.id, "carol")  # succeeded: nothing to re-run


def test_one_run_at_a_time_per_runbook_and_target(gated: Runbook) -> None:
    engine, audit, _ = make([gated])
    first = engine.start("gated", "alice", {}, TARGET)
    until_state(audit, first.id, "waiting_approval")
    with pytest.raises(RunConflict, match="one run per runbook and target"):
        engine.start("gated", "bob", {}, TARGET)
    other = engine.start("gated", "bob", {}, "http://other/metrics")  # another target is free
    engine.cancel(other.id, "bob")
    engine.approve(first.id, "dave")
    assert finish(engine, first.id, audit) == "succeeded"
    again = engine.start("gated", "bob", {}, TARGET)  # released when the run ended
    engine.cancel(again.id, "bob")


def test_an_approval_step_waits_for_a_person_and_records_the_approver(gated: Runbook) -> None:
    engine, audit, actuators = make([gated])
    run = engine.start("gated", "alert:EngineStalled", {}, TARGET, auto=True)
    until_state(audit, run.id, "waiting_approval")
    assert actuators.performed == []
    engine.approve(run.id, "dave")
    assert finish(engine, run.id, audit) == "succeeded"
    approved = [e for e in audit.events(run.id) if e.event == "approved"]
    assert [(e.step_name, e.actor) for e in approved] == [("ok to go", "dave")]
    assert actuators.performed == [("restart", TARGET, {})]
    with pytest.raises(RunConflict):
        engine.approve(run.id, "dave")


def test_cancel_stops_a_run_waiting_for_approval(gated: Runbook) -> None:
    engine, audit, actuators = make([gated])
    run = engine.start("gated", "alice", {}, TARGET)
    until_state(audit, run.id, "waiting_approval")
    engine.cancel(run.id, "erin")
    assert finish(engine, run.id, audit) == "cancelled"
    record = audit.run(run.id)
    assert record is not None and record.actor == "erin" and actuators.performed == []


def test_a_run_cut_off_by_a_restart_is_interrupted_and_can_go_on(gated: Runbook) -> None:
    audit = MemoryAudit()
    before, _, _ = make([gated], audit)
    run = before.start("gated", "alice", {}, TARGET)
    until_state(audit, run.id, "waiting_approval")
    # vigil up is killed: the first engine is never closed; a new one starts on the same store
    after, _, actuators = make([gated], audit)
    assert after.recover() == [run.id]
    record = audit.run(run.id)
    assert record is not None and record.state == "interrupted" and record.actor == "vigil"
    assert "waiting_approval at step 2" in record.reason
    assert after.recover() == []  # recorded once
    after.retry(run.id, "alice")
    until_state(audit, run.id, "waiting_approval")  # the approval step is asked again
    after.approve(run.id, "dave")
    assert finish(after, run.id, audit) == "succeeded"
    assert actuators.performed == [("restart", TARGET, {})]
    before.cancel(run.id, "test")  # let the first engine's thread end


def test_bad_requests_are_refused_with_the_reason(simple: Runbook) -> None:
    engine, _, _ = make([simple])
    with pytest.raises(UnknownName, match="no runbook 'nope'"):
        engine.start("nope", "alice", {}, TARGET)
    with pytest.raises(BadRunRequest, match="unknown parameter"):
        engine.start("simple", "alice", {"fractoin": 1}, TARGET)
    with pytest.raises(BadRunRequest, match="above its maximum"):
        engine.start("simple", "alice", {"fraction": 2}, TARGET)
    with pytest.raises(BadRunRequest, match="give its target"):
        engine.start("simple", "alice", {}, None)
    with pytest.raises(UnknownName):
        engine.retry("no-such-run", "alice")
