"""A step that times out stops doing work at its timeout, and a retry never overlaps the attempt before it:
actions size their HTTP timeouts from the step's time left (a slow loopback server is cut), and an
attempt that ignores its deadline is not retried while the run keeps its lock until it ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runbooks import engine as engine_module
from runbooks.actions import ActionRefused, Actuators, KubeConfig
from runbooks.deadline import Deadline
from runbooks.engine import Engine
from runbooks.model import TargetKind
from runbooks.steps import StepRunner
from tests.unit.runbooks.fakes import FakeActuators, FakeCheck, MemoryAudit, runbook
from vigil.kernel import RunPlan, WorkloadPlan
from vigil.runbook_view import RunConflict

SLOW = """
name: slow
target: workload
steps:
  - name: shed
    action: shed
    with: {fraction: 0.5}
    timeout: 500ms
    retries: 1
    retry_delay: 10ms
"""


class Journal:
    """What happened, in order, on both sides of the wire."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)


class SlowServer:
    """A loopback control API whose every answer waits for `gate` (opened only when the test ends)."""

    def __init__(self, journal: Journal) -> None:
        self.gate = threading.Event()
        gate, count = self.gate, iter(range(1, 100))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = next(count)
                journal.add(f"arrived {n}")
                gate.wait(30)
                journal.add(f"answered {n}")
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the client gave up long ago

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


class JournalledActuators(Actuators):
    def __init__(self, plan: RunPlan, journal: Journal) -> None:
        super().__init__(plan, KubeConfig())
        self.journal, self.n = journal, 0

    def perform(
        self, kind: TargetKind, target: str, verb: str, args: Mapping[str, Any], deadline: Deadline
    ) -> dict[str, Any]:
        self.n += 1
        n = self.n
        self.journal.add(f"begin {n}")
        try:
            return super().perform(kind, target, verb, args, deadline)
        finally:
            self.journal.add(f"end {n}")


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def slow_server(journal: Journal) -> Iterator[SlowServer]:
    server = SlowServer(journal)
    yield server
    server.close()


def plan_for(url: str) -> RunPlan:
    workload = WorkloadPlan(port=int(url.rsplit(":", 1)[1]), url=url, control_token="t")
    return RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=Path("."), workload=workload)


def test_a_slow_action_is_cut_at_the_step_timeout_and_the_retry_starts_after_it_stopped(
    tmp_path: Path, slow_server: SlowServer, journal: Journal
) -> None:
    actuators = JournalledActuators(plan_for(slow_server.url), journal)
    audit = MemoryAudit()
    engine = Engine({"slow": runbook(tmp_path, SLOW)}, audit, StepRunner(actuators, FakeCheck(True)), time.time)
    try:
        run = engine.start("slow", "alice", {}, slow_server.url)
        assert engine.wait(run.id, 20), "the run did not end"
        events = [(e.attempt, e.event) for e in audit.events(run.id)]
        assert events == [(1, "started"), (1, "timed_out"), (2, "started"), (2, "timed_out")]
        assert all("no answer within the step's" in e.message for e in audit.events(run.id) if e.event == "timed_out")
        record = audit.run(run.id)
        assert record is not None and record.state == "failed"
        # both requests were cut while the server still held them: neither was answered
        assert journal.lines == ["begin 1", "arrived 1", "end 1", "begin 2", "arrived 2", "end 2"]
    finally:
        engine.close(1.0)
        actuators.close()


def test_a_drained_restart_that_cannot_fit_its_step_is_refused_not_cut(slow_server: SlowServer) -> None:
    actuators = Actuators(plan_for(slow_server.url), KubeConfig())
    try:
        with pytest.raises(ActionRefused, match="a drain of 10s does not fit the step's timeout of 5s"):
            actuators.perform(TargetKind.WORKLOAD, slow_server.url, "restart", {"drain_timeout_s": 10}, Deadline(5))
    finally:
        actuators.close()


IGNORES = """
name: ignores
target: workload
steps:
  - name: shed
    action: shed
    with: {fraction: 0.5}
    timeout: 100ms
    retries: 3
    retry_delay: 10ms
"""


def test_an_attempt_that_ignores_its_deadline_is_not_retried_and_holds_the_target_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "SETTLE_S", 0.1)
    actuators = FakeActuators()
    actuators.script["shed"] = ["ignore"]
    audit = MemoryAudit()
    engine = Engine({"ignores": runbook(tmp_path, IGNORES)}, audit, StepRunner(actuators, FakeCheck(True)), time.time)  # type: ignore[arg-type]
    try:
        run = engine.start("ignores", "alice", {}, "t")
        deadline = time.monotonic() + 10
        while (record := audit.run(run.id)) is None or record.state == "running":
            assert time.monotonic() < deadline, "the run never failed"
            time.sleep(0.01)
        assert record.state == "failed" and "not retried, so two attempts never overlap" in record.reason
        assert actuators.calls == ["shed"]  # three retries left, none taken
        with pytest.raises(RunConflict):  # the stuck attempt still acts on the target
            engine.start("ignores", "bob", {}, "t")
        actuators.release.set()
        assert engine.wait(run.id, 10)
        assert actuators.returned == ["shed"]
        engine.start("ignores", "bob", {}, "t")  # free once it ended
    finally:
        actuators.release.set()
        engine.close(1.0)


def test_a_cancel_stops_the_action_in_flight_not_only_the_steps_after_it(tmp_path: Path) -> None:
    actuators = FakeActuators()
    actuators.script["shed"] = ["hang"]  # works until its deadline (10 s here) unless stopped
    audit = MemoryAudit()
    book = runbook(tmp_path, IGNORES.replace("timeout: 100ms", "timeout: 10s"))
    engine = Engine({"ignores": book}, audit, StepRunner(actuators, FakeCheck(True)), time.time)  # type: ignore[arg-type]
    try:
        run = engine.start("ignores", "alice", {}, "t")
        deadline = time.monotonic() + 10
        while actuators.calls != ["shed"]:
            assert time.monotonic() < deadline, "the action never began"
            time.sleep(0.01)
        engine.cancel(run.id, "erin")
        assert engine.wait(run.id, 10)
        assert actuators.returned == ["shed"]
        assert [(e.attempt, e.event) for e in audit.events(run.id)] == [(1, "started"), (1, "cancelled")]
        record = audit.run(run.id)
        assert record is not None and record.state == "cancelled" and record.actor == "erin"
    finally:
        engine.close(1.0)
