"""Runbooks against the real things: the reference workload's control API over loopback HTTP (with its
bearer token) and the audit trail in embedded ClickHouse."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runbooks.actions import Actuators, KubeConfig
from runbooks.audit import StoreAudit
from runbooks.checks import StoreCheck
from runbooks.engine import Engine
from runbooks.loader import load_file
from runbooks.model import Runbook
from runbooks.steps import CheckFn, StepRunner
from tests.integration.workload_server import WorkloadServer
from vigil.kernel import RunPlan, WorkloadPlan
from vigil.store import Store
from vigil.store.schema import RUNBOOK_EVENTS, RUNBOOK_RUNS, SchemaContext

TOKEN = "runbook-test-token"

ACTIONS = """
name: {name}
target: workload
params:
  seqs: {{type: int, default: 3, min: 1, max: 64}}
steps:
  - action: set_config
    with: {{max_num_seqs: "${{seqs}}"}}
    timeout: 10s
  - action: shed
    with: {{fraction: 0.25}}
    timeout: 10s
  - action: clear_faults
    timeout: 10s
  - action: restart
    with: {{drain_timeout_s: 1}}
    timeout: 30s
  - name: approve
    approve: "go on?"
    timeout: 30s
  - check: {{metric: llm.tokens.generated, function: rate, window: 10s, matchers: {{llm.endpoint: "${{target}}"}},
             op: ">", value: 0, empty: pass}}
"""


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkloadServer]:
    log = tmp_path_factory.mktemp("workload") / "workload.log"
    server = WorkloadServer(log, "--num-blocks", "64", env={"VIGIL_CONTROL_TOKEN": TOKEN}).start()
    yield server
    server.stop()


def book(tmp_path: Path, name: str) -> Runbook:
    path = tmp_path / f"{name}.yaml"
    path.write_text(ACTIONS.format(name=name))
    return load_file(path)


def engine_for(
    store: Store, workload: WorkloadServer, books: list[Runbook], check: CheckFn
) -> tuple[Engine, Actuators]:
    plan = RunPlan(
        host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=Path("."),
        workload=WorkloadPlan(port=workload.port, url=workload.url, control_token=TOKEN),
    )  # fmt: skip
    actuators = Actuators(plan, KubeConfig())
    engine = Engine({b.name: b for b in books}, StoreAudit(store), StepRunner(actuators, check), time.time)
    return engine, actuators


def until(audit: StoreAudit, run_id: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = audit.run(run_id)
        if record and record.state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never {state}: {audit.run(run_id)}")


def test_a_run_drives_the_real_workload_and_the_store_keeps_its_audit_trail(
    store: Store, workload: WorkloadServer, tmp_path: Path
) -> None:
    assert workload.control("POST", "fault", TOKEN, json={"kind": "latency", "delay_ms": 5}).status_code == 200
    engine, actuators = engine_for(
        store, workload, [book(tmp_path, "real-actions")], StoreCheck(store, SchemaContext(), time.time)
    )
    audit = StoreAudit(store)
    run = engine.start("real-actions", "alice", {"seqs": 3}, f"{workload.url}/metrics")
    until(audit, run.id, "waiting_approval")
    config = workload.control("GET", "config", TOKEN).json()
    assert config["max_num_seqs"] == 3 and config["shed_fraction"] == 0.25  # kept across the restart
    assert workload.control("GET", "fault", TOKEN).json()["faults"] == []
    engine.approve(run.id, "dave")
    assert engine.wait(run.id, 30)
    record = audit.run(run.id)
    assert record is not None and record.state == "succeeded", record
    assert record.started_by == "alice" and record.params == {"seqs": 3}
    events = audit.events(run.id)
    assert [e.event for e in events if e.step_name == "restart"] == ["started", "succeeded"]
    assert events[[e.step_name for e in events].index("restart") + 1].output["answer"]["config"]["max_num_seqs"] == 3
    assert [(e.event, e.actor) for e in events if e.step_name == "approve"] == [
        ("waiting", "alice"),
        ("approved", "dave"),
    ]
    # append-only: every version of the run is a row of its own
    versions = store.query_rows(
        f"SELECT Seq, State FROM {RUNBOOK_RUNS} WHERE RunId = {{id:String}} ORDER BY Seq", {"id": run.id}
    )
    states = [state for _, state in versions]
    assert states[0] == "running" and states[-1] == "succeeded" and states.count("succeeded") == 1
    assert states.index("waiting_approval") < len(states) - 1
    assert [int(v[0]) for v in versions] == list(range(len(versions)))
    count = store.query_rows(f"SELECT count() FROM {RUNBOOK_EVENTS} WHERE RunId = {{id:String}}", {"id": run.id})
    assert count[0][0] == len(events)
    workload.control("POST", "shed", TOKEN, json={"fraction": 0})
    actuators.close()


def test_targets_and_actions_the_environment_does_not_allow_are_refused(
    store: Store, workload: WorkloadServer, tmp_path: Path
) -> None:
    engine, actuators = engine_for(store, workload, [book(tmp_path, "elsewhere")], lambda c: (True, []))
    audit = StoreAudit(store)
    dry = engine.start("elsewhere", "alice", {}, "http://10.0.0.9:8000/metrics", dry_run=True)
    record = audit.run(dry.id)
    assert record is not None and record.state == "failed" and "not the reference workload" in record.reason
    run = engine.start("elsewhere", "alice", {}, "http://10.0.0.9:8000/metrics")
    assert engine.wait(run.id, 30)
    record = audit.run(run.id)
    assert record is not None and record.state == "failed" and record.step == 0
    assert audit.events(run.id)[-1].event == "refused"
    refusal = actuators.preflight(*_node_cordon())
    assert refusal is not None and "no Kubernetes API is configured" in refusal
    actuators.close()


def _node_cordon():  # type: ignore[no-untyped-def]
    from runbooks.model import TargetKind

    return TargetKind.NODE, "node-1", "cordon", {}


def test_a_run_cut_off_by_a_stop_is_interrupted_in_the_store(
    store: Store, workload: WorkloadServer, tmp_path: Path
) -> None:
    books = [book(tmp_path, "cut-off")]
    before, a1 = engine_for(store, workload, books, lambda c: (True, []))
    audit = StoreAudit(store)
    run = before.start("cut-off", "alice", {}, f"{workload.url}/metrics")
    until(audit, run.id, "waiting_approval")
    after, a2 = engine_for(store, workload, books, lambda c: (True, []))
    assert run.id in after.recover()
    record = audit.run(run.id)
    assert record is not None and record.state == "interrupted" and record.step == 4
    assert run.id not in {r.id for r in audit.unfinished()}
    before.cancel(run.id, "test")
    before.close(5)
    for a in (a1, a2):
        a.close()
    workload.control("POST", "shed", TOKEN, json={"fraction": 0})


def test_a_check_on_no_data_fails(store: Store) -> None:
    from runbooks.model import CheckExpr
    from vigil.store.window import Matcher

    check = CheckExpr("llm.tokens.generated", "sum", "rate", 10, (Matcher("llm.endpoint", "=", "nowhere"),), (), ">", 0)
    assert StoreCheck(store, SchemaContext(), time.time)(check) == (False, [])


def test_the_workload_refuses_an_action_without_the_token(workload: WorkloadServer) -> None:
    assert httpx.patch(f"{workload.url}/control/config", json={"max_num_seqs": 2}, timeout=10).status_code == 401
