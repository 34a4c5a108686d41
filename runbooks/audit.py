"""The audit trail: every run's state changes and every step's events, appended to the store.

Both tables are append-only MergeTree: a change is a new row, never an update. An audit trail must
keep every version (a ReplacingMergeTree would merge a run's earlier states away), and on a cluster
one run's rows may sit on several shards, which FINAL does not merge: readers take the newest row
per run with argMax over `Seq`, which is right on one node and on a cluster alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil.store import Store
from vigil.store.schema import RUNBOOK_EVENTS as EVENTS
from vigil.store.schema import RUNBOOK_RUNS as RUNS
from vigil.store.schema import SchemaContext

MAX_OUTPUT_BYTES = 64 * 1024  # one step event's output; a larger answer is cut, and says so
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True)
class RunRecord:
    """One version of a run: who started what, on which target, with which parameters, and where it stands."""

    id: str
    seq: int
    at: float  # unix seconds of this version
    runbook: str
    target_kind: str
    target: str
    params: dict[str, Any]
    dry_run: bool
    started_by: str
    auto: bool
    origin: str  # what started it: "" by hand, else the alert (alertname and fingerprint)
    state: str  # running, waiting_approval, succeeded, failed, cancelled, interrupted
    step: int  # the step it is at, or failed at; -1 before the first
    reason: str
    actor: str  # who made this change (the starter, an approver, a canceller, vigil itself)
    started_at: float = 0.0  # filled in by reads: the first version's time

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class StepEvent:
    run_id: str
    seq: int
    at: float
    step: int
    step_name: str
    step_kind: str
    attempt: int
    event: str  # started, succeeded, failed, refused, timed_out, waiting, approved, planned, cancelled
    actor: str
    message: str
    output: dict[str, Any] = field(default_factory=dict)


class AuditLog(Protocol):
    """Where the engine records runs and reads them back (the store; a list in unit tests)."""

    def record_run(self, run: RunRecord) -> None: ...

    def record_event(self, ev: StepEvent) -> None: ...

    def runs(self, limit: int, runbook: str | None = None) -> list[RunRecord]:
        """The newest version of each run, newest started first."""
        ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def events(self, run_id: str) -> list[StepEvent]:
        """A run's step events in order."""
        ...

    def unfinished(self) -> list[RunRecord]:
        """Runs whose newest version is not terminal."""
        ...

    def auto_starts(self, since: float, limit: int) -> list[tuple[str, float]]:
        """(run id, unix start) of automatic runs started at or after `since`, newest first (`AutoHistory`)."""
        ...

    def last_auto_start(self, runbook: str, target: str, since: float) -> float | None:
        """When `runbook` last started by itself on `target` at or after `since` (`AutoHistory`)."""
        ...

    def prune(self, before: float) -> None:
        """Forget every finished run with nothing recorded since `before`, all its rows at once."""
        ...


def output_json(output: dict[str, Any]) -> str:
    text = json.dumps(output, default=str, sort_keys=True)
    if len(text.encode()) > MAX_OUTPUT_BYTES:
        return json.dumps({"truncated": True, "head": text[: MAX_OUTPUT_BYTES // 2]})
    return text


_RUN_COLUMNS = (
    "RunId", "Seq", "At", "Runbook", "TargetKind", "Target", "Params", "DryRun", "StartedBy", "Auto", "Origin",
    "State", "Step", "Reason", "Actor",
)  # fmt: skip
_EVENT_COLUMNS = (
    "RunId", "Seq", "At", "StepIndex", "StepName", "StepKind", "Attempt", "Event", "Actor", "Message", "Output",
)  # fmt: skip


def _ms(seconds: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


class StoreAudit:
    """The audit trail in the store's tables of migration 10. `schema` names the tables rows are deleted
    from where the store is a cluster."""

    def __init__(self, store: Store, schema: SchemaContext | None = None) -> None:
        self._store = store
        self._schema = schema or SchemaContext()

    def record_run(self, run: RunRecord) -> None:
        row = (
            run.id, run.seq, _ms(run.at), run.runbook, run.target_kind, run.target,
            json.dumps(run.params, sort_keys=True), int(run.dry_run), run.started_by, int(run.auto), run.origin,
            run.state, run.step, run.reason, run.actor,
        )  # fmt: skip
        self._store.insert_columns(RUNS, [[v] for v in row], _RUN_COLUMNS)

    def record_event(self, ev: StepEvent) -> None:
        row = (
            ev.run_id, ev.seq, _ms(ev.at), ev.step, ev.step_name, ev.step_kind, ev.attempt, ev.event, ev.actor,
            ev.message, output_json(ev.output),
        )  # fmt: skip
        self._store.insert_columns(EVENTS, [[v] for v in row], _EVENT_COLUMNS)

    def _latest(self, where: str, having: str, params: dict[str, Any], limit: int) -> list[RunRecord]:
        latest = ", ".join(
            f"toFloat64(argMax({c}, Seq))" if c == "At" else f"argMax({c}, Seq)" for c in _RUN_COLUMNS[2:]
        )
        sql = (
            f"SELECT RunId, max(Seq), {latest}, toFloat64(min(At)) FROM {RUNS} {where} "
            f"GROUP BY RunId {having} ORDER BY min(At) DESC, RunId LIMIT {{limit:UInt32}}"
        )
        rows = self._store.query_rows(sql, {**params, "limit": limit})
        return [_run(row) for row in rows]

    def runs(self, limit: int, runbook: str | None = None) -> list[RunRecord]:
        if runbook:
            return self._latest("WHERE Runbook = {rb:String}", "", {"rb": runbook}, limit)
        return self._latest("", "", {}, limit)

    def run(self, run_id: str) -> RunRecord | None:
        found = self._latest("WHERE RunId = {id:String}", "", {"id": run_id}, 1)
        return found[0] if found else None

    def unfinished(self) -> list[RunRecord]:
        having = "HAVING argMax(State, Seq) NOT IN {terminal:Array(String)}"
        return self._latest("", having, {"terminal": sorted(TERMINAL)}, 100_000)

    # A run's first version (Seq 0) is its start; a start refused for its parameters is recorded as
    # failed at once, so "running" at Seq 0 is exactly a run that began. At bounds what is read.
    _AUTO_STARTS = (
        f"FROM {RUNS} WHERE Seq = 0 AND Auto = 1 AND DryRun = 0 AND State = 'running' "
        "AND At >= fromUnixTimestamp64Milli({since:Int64})"
    )

    def auto_starts(self, since: float, limit: int) -> list[tuple[str, float]]:
        rows = self._store.query_rows(
            f"SELECT RunId, toFloat64(At) {self._AUTO_STARTS} ORDER BY At DESC LIMIT {{n:UInt32}}",
            {"since": int(since * 1000), "n": limit},
        )
        return [(r[0], float(r[1])) for r in rows]

    def last_auto_start(self, runbook: str, target: str, since: float) -> float | None:
        rows = self._store.query_rows(
            f"SELECT toFloat64(At) {self._AUTO_STARTS} AND Runbook = {{rb:String}} AND Target = {{t:String}} "
            "ORDER BY At DESC LIMIT 1",
            {"since": int(since * 1000), "rb": runbook, "t": target},
        )
        return float(rows[0][0]) if rows else None

    def prune(self, before: float) -> None:
        # Whole runs, never a TTL on rows: a run's first row (who, which parameters) must not go before
        # its last. Events go first, so a prune cut short leaves no event whose run is gone.
        finished = (
            f"SELECT RunId FROM {RUNS} GROUP BY RunId HAVING argMax(State, Seq) IN {{terminal:Array(String)}} "
            "AND max(At) < fromUnixTimestamp64Milli({before:Int64})"
        )
        params = {"terminal": sorted(TERMINAL), "before": int(before * 1000)}
        for table in (EVENTS, RUNS):
            local = self._schema.storage_name(table)
            self._store.command(f"DELETE FROM {local}{self._schema.on_cluster} WHERE RunId IN ({finished})", params)

    def events(self, run_id: str) -> list[StepEvent]:
        rows = self._store.query_rows(
            f"SELECT RunId, Seq, toFloat64(At), StepIndex, StepName, StepKind, Attempt, Event, Actor, Message, Output "
            f"FROM {EVENTS} WHERE RunId = {{id:String}} ORDER BY Seq",
            {"id": run_id},
        )
        return [
            StepEvent(
                r[0],
                int(r[1]),
                float(r[2]),
                int(r[3]),
                r[4],
                r[5],
                int(r[6]),
                r[7],
                r[8],
                r[9],
                json.loads(r[10] or "{}"),
            )
            for r in rows
        ]


def _run(row: Sequence[Any]) -> RunRecord:
    (run_id, seq, at, runbook, kind, target, params, dry, by, auto, origin, state, step, reason, actor, started) = row
    return RunRecord(
        run_id, int(seq), float(at), runbook, kind, target,
        json.loads(params or "{}"), bool(dry), by, bool(auto), origin, state, int(step), reason, actor, float(started),
    )  # fmt: skip
