"""In-memory stand-ins for the engine's edges: the audit log, the actuators, the store's checks."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runbooks.actions import ActionFailed, ActionRefused, ActionTimedOut
from runbooks.audit import TERMINAL, RunRecord, StepEvent
from runbooks.deadline import Deadline
from runbooks.loader import load_file
from runbooks.model import CheckExpr, Runbook, TargetKind


class MemoryAudit:
    """The audit log as two lists; shared by two engines, it plays the store across a restart."""

    def __init__(self) -> None:
        self.run_rows: list[RunRecord] = []
        self.event_rows: list[StepEvent] = []
        self._lock = threading.Lock()

    def record_run(self, run: RunRecord) -> None:
        with self._lock:
            self.run_rows.append(run)

    def record_event(self, ev: StepEvent) -> None:
        with self._lock:
            self.event_rows.append(ev)

    def _latest(self) -> list[RunRecord]:
        with self._lock:
            latest: dict[str, RunRecord] = {}
            first: dict[str, float] = {}
            for row in self.run_rows:
                first.setdefault(row.id, row.at)
                if row.id not in latest or row.seq > latest[row.id].seq:
                    latest[row.id] = row
            return [RunRecord(**{**r.__dict__, "started_at": first[r.id]}) for r in latest.values()]

    def runs(self, limit: int, runbook: str | None = None) -> list[RunRecord]:
        rows = [r for r in self._latest() if runbook in (None, r.runbook)]
        return sorted(rows, key=lambda r: -r.started_at)[:limit]

    def run(self, run_id: str) -> RunRecord | None:
        return next((r for r in self._latest() if r.id == run_id), None)

    def events(self, run_id: str) -> list[StepEvent]:
        with self._lock:
            return sorted((e for e in self.event_rows if e.run_id == run_id), key=lambda e: e.seq)

    def unfinished(self) -> list[RunRecord]:
        return [r for r in self._latest() if r.state not in TERMINAL]

    def _auto(self, since: float) -> list[RunRecord]:
        with self._lock:
            rows = [r for r in self.run_rows if r.seq == 0 and r.auto and not r.dry_run and r.state == "running"]
        return sorted((r for r in rows if r.at >= since), key=lambda r: -r.at)

    def auto_starts(self, since: float, limit: int) -> list[tuple[str, float]]:
        return [(r.id, r.at) for r in self._auto(since)][:limit]

    def last_auto_start(self, runbook: str, target: str, since: float) -> float | None:
        return next((r.at for r in self._auto(since) if (r.runbook, r.target) == (runbook, target)), None)

    def prune(self, before: float) -> None:
        with self._lock:
            newest: dict[str, RunRecord] = {}
            for row in self.run_rows:
                if row.id not in newest or row.seq > newest[row.id].seq:
                    newest[row.id] = row
            gone = {i for i, r in newest.items() if r.terminal and r.at < before}
            self.run_rows = [r for r in self.run_rows if r.id not in gone]
            self.event_rows = [e for e in self.event_rows if e.run_id not in gone]

    def versions(self, run_id: str) -> list[RunRecord]:
        with self._lock:
            return [r for r in self.run_rows if r.id == run_id]


class FakeActuators:
    """Records every action; `script[verb]` lists what successive calls do: "ok", "fail", "refuse", "hang"
    (until its deadline, as a real action does) or "ignore" (hangs past its deadline until `release`)."""

    def __init__(self, refuse_preflight: Mapping[str, str] | None = None) -> None:
        self.performed: list[tuple[str, str, dict[str, Any]]] = []
        self.script: dict[str, list[str]] = {}
        self.refuse_preflight = dict(refuse_preflight or {})
        self.release = threading.Event()
        self.calls: list[str] = []  # every perform as it began
        self.returned: list[str] = []  # every hang as it ended

    def preflight(self, kind: TargetKind, target: str, verb: str, args: Mapping[str, Any]) -> str | None:
        return self.refuse_preflight.get(verb)

    def perform(
        self, kind: TargetKind, target: str, verb: str, args: Mapping[str, Any], deadline: Deadline
    ) -> dict[str, Any]:
        what = self.script.get(verb, ["ok"]).pop(0) if self.script.get(verb) else "ok"
        self.calls.append(verb)
        if what == "hang":
            deadline.wait(10)
            self.returned.append(verb)
            raise ActionTimedOut(f"{verb}: the step's {deadline.seconds:g}s ran out")
        if what == "ignore":
            self.release.wait(10)
            self.returned.append(verb)
        self.performed.append((verb, target, dict(args)))
        if what == "fail":
            raise ActionFailed(f"{verb} failed")
        if what == "refuse":
            raise ActionRefused(f"{verb} is not allowed here")
        return {"done": verb}

    def close(self) -> None:
        self.release.set()


class FakeCheck:
    """Answers checks from a list of booleans (the last one repeats); records each check it was asked."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers) or [True]
        self.asked: list[CheckExpr] = []

    def __call__(self, check: CheckExpr) -> tuple[bool, list[dict[str, Any]]]:
        self.asked.append(check)
        ok = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return ok, [{"labels": {}, "value": 1.0 if ok else 0.0}]


def runbook(tmp_path: Path, text: str, name: str = "rb.yaml") -> Runbook:
    path = tmp_path / name
    path.write_text(text)
    return load_file(path)


SIMPLE = """
name: simple
target: workload
params:
  fraction: {type: float, default: 0.5, min: 0, max: 1}
steps:
  - name: shed
    action: shed
    with: {fraction: "${fraction}"}
    timeout: 1s
    retries: 2
    retry_delay: 10ms
  - name: restart
    action: restart
    timeout: 1s
  - name: verify
    wait_for: {metric: llm.tokens.generated, function: rate, window: 10s,
               matchers: {llm.endpoint: "${target}"}, op: ">", value: 0}
    timeout: 300ms
    every: 50ms
"""

APPROVAL = """
name: gated
target: workload
steps:
  - note: "about to restart ${target}"
  - name: ok to go
    approve: "Restart ${target}?"
    timeout: 30s
  - name: restart
    action: restart
    timeout: 1s
  - name: verify
    check: {metric: llm.tokens.generated, function: rate, window: 10s, op: ">", value: 0}
"""
