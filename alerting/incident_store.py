"""Incidents in the store: append-only event rows (`vigil_incident_events`, migration 11), and the reads
a timeline needs from other tables: alert transitions, and runbook runs where the runbook audit
tables (migration 10) exist.

Events the evaluator causes are kept and sent again with the next write when the store refuses
them (bounded), as alert transitions are; a note or a hand close is written at once or refused, so
what the API confirmed is what a restart finds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alerting.incidents import IncidentEvent, Kind
from alerting.state import Transition
from vigil.logs import event
from vigil.store import Store
from vigil.store.schema import ALERT_HISTORY, INCIDENT_EVENTS

log = logging.getLogger(__name__)

MAX_HELD_EVENTS = 10_000  # unwritten events kept through a store outage; the oldest go first
# The runbook audit trail (migration 10, `runbooks/audit.py`); read only when those tables exist.
RUNBOOK_RUNS, RUNBOOK_EVENTS = "vigil_runbook_runs", "vigil_runbook_events"

_COLUMNS = (
    "IncidentId", "Seq", "At", "Kind", "Actor", "Text", "Title", "GroupKey", "Labels", "Fingerprint", "Severity",
    "Runbook", "ActiveAt",
)  # fmt: skip
_SELECT = (
    "IncidentId, Seq, toFloat64(At), Kind, Actor, Text, Title, GroupKey, Labels, Fingerprint, Severity, Runbook, "
    "toFloat64(ActiveAt)"
)
_ENDED = "Kind IN ('closed', 'resolved')"


@dataclass(frozen=True)
class Summary:
    """One incident as the store has it, without its timeline."""

    id: str
    title: str
    group_labels: dict[str, str]
    opened_at: float
    severities: list[str]
    status: str
    resolved_at: float | None
    closed_by: str | None
    alerts: int  # distinct alerts that joined
    firing: int  # of which still firing


@dataclass(frozen=True)
class Run:
    """A runbook run as its audit rows have it, newest version."""

    id: str
    runbook: str
    target: str
    started_by: str
    auto: bool
    origin: str
    state: str
    started_at: float


@dataclass(frozen=True)
class RunStep:
    run_id: str
    at: float
    step: int
    step_name: str
    event: str
    actor: str
    message: str


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _row(ev: IncidentEvent, seq: int) -> tuple[Any, ...]:
    active = ev.active_at if ev.active_at is not None else ev.at
    return (
        ev.incident, seq, _dt(ev.at), str(ev.kind), ev.actor, ev.text, ev.title, ev.group_key, dict(ev.labels),
        ev.fingerprint, ev.severity, ev.runbook, _dt(active),
    )  # fmt: skip


def _event(row: Sequence[Any]) -> IncidentEvent:
    iid, _seq, at, kind, actor, text, title, key, labels, fp, severity, runbook, active = row
    return IncidentEvent(
        iid, float(at), Kind(kind), actor, text, title, key, dict(labels), fp, severity, runbook, float(active)
    )


class IncidentStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._seq = 0
        self._held: list[tuple[Any, ...]] = []
        self._runbook_tables = False
        self.dropped_events = 0

    def _next_seq(self) -> int:
        # nanoseconds keep Seq rising across restarts; the counter keeps it unique within one
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    @property
    def held(self) -> int:
        return len(self._held)

    def write(self, events: Sequence[IncidentEvent], *, keep_on_failure: bool = True) -> None:
        """Store `events` after whatever an earlier failed write left, in one insert.

        On failure the error is raised; `events` are kept for the next write only with
        `keep_on_failure` (the evaluator's), never for a request the caller will refuse.
        """
        with self._lock:
            rows = [_row(ev, self._next_seq()) for ev in events]
            pending = self._held + rows
            if not pending:
                return
            try:
                self._store.insert_columns(INCIDENT_EVENTS, list(zip(*pending, strict=True)), _COLUMNS)
            except Exception:
                if keep_on_failure:
                    self._held = pending[-MAX_HELD_EVENTS:]
                    dropped = len(pending) - len(self._held)
                    if dropped:
                        self.dropped_events += dropped
                        event(log, "incident_events_dropped", count=dropped, reason="store unavailable too long")
                raise
            self._held = []

    def flush(self) -> None:
        """Send the held events, if any; a failure keeps them (and is logged) for the next write."""
        if not self._held:
            return
        try:
            self.write(())
        except Exception as exc:
            event(log, "incident_write_failed", level=logging.WARNING, error=str(exc), held=len(self._held))

    def prune(self, before: float, table: str = INCIDENT_EVENTS, on_cluster: str = "") -> None:
        """Delete every row of the incidents that ended (every alert resolved too) with no event since
        `before`: whole incidents, never a TTL on rows, as an open incident's first row must outlive
        its last. `table`/`on_cluster`: the storage table and `ON CLUSTER` clause on a cluster."""
        self._store.command(
            f"""DELETE FROM {table}{on_cluster} WHERE IncidentId IN (
                SELECT IncidentId FROM {INCIDENT_EVENTS} GROUP BY IncidentId
                HAVING countIf({_ENDED}) > 0 AND countIf(Kind = 'alert') <= countIf(Kind = 'alert_resolved')
                    AND max(At) < fromUnixTimestamp64Milli({{before:Int64}}))""",
            {"before": int(before * 1000)},
        )

    # -- reads ---------------------------------------------------------------------------------

    def unfinished(self) -> list[IncidentEvent]:
        """The events (notes aside) of every incident still open or with an alert still firing, in order."""
        rows = self._store.query_rows(
            f"""SELECT {_SELECT} FROM {INCIDENT_EVENTS}
            WHERE Kind != 'note' AND IncidentId IN (
                SELECT IncidentId FROM {INCIDENT_EVENTS} GROUP BY IncidentId
                HAVING countIf({_ENDED}) = 0 OR countIf(Kind = 'alert') > countIf(Kind = 'alert_resolved'))
            ORDER BY Seq"""
        )
        return [_event(r) for r in rows]

    def summaries(self, status: str, limit: int, incident_id: str | None = None) -> list[Summary]:
        """Incidents of `status` (open, resolved, all), newest opened first; of one id where given."""
        having = ["countIf(Kind = 'opened') > 0"]
        if status == "open":
            having.append(f"countIf({_ENDED}) = 0")
        elif status == "resolved":
            having.append(f"countIf({_ENDED}) > 0")
        where = "WHERE IncidentId = {id:String}" if incident_id is not None else ""
        rows = self._store.query_rows(
            f"""SELECT IncidentId, argMinIf(Title, Seq, Kind = 'opened'), argMinIf(Labels, Seq, Kind = 'opened'),
                toFloat64(minIf(At, Kind = 'opened')), groupUniqArrayIf(Severity, Kind = 'alert'),
                countIf({_ENDED}) > 0, toFloat64(minIf(At, {_ENDED})), argMinIf(Kind, Seq, {_ENDED}),
                argMinIf(Actor, Seq, {_ENDED}), uniqExactIf(Fingerprint, Kind = 'alert'),
                toInt64(countIf(Kind = 'alert')) - toInt64(countIf(Kind = 'alert_resolved'))
            FROM {INCIDENT_EVENTS} {where} GROUP BY IncidentId HAVING {" AND ".join(having)}
            ORDER BY minIf(At, Kind = 'opened') DESC, IncidentId LIMIT {{n:UInt32}}""",
            {"n": limit, "id": incident_id or ""},
        )
        out = []
        for iid, title, labels, opened, sevs, ended, ended_at, how, actor, alerts, firing in rows:
            closed_by = actor if ended and how == Kind.CLOSED else None
            summary = Summary(
                iid, title, dict(labels), float(opened), list(sevs), "resolved" if ended else "open",
                float(ended_at) if ended else None, closed_by, int(alerts), max(0, int(firing)),
            )  # fmt: skip
            out.append(summary)
        return out

    def events(self, incident_id: str, limit: int) -> list[IncidentEvent]:
        rows = self._store.query_rows(
            f"SELECT {_SELECT} FROM {INCIDENT_EVENTS} WHERE IncidentId = {{id:String}} ORDER BY Seq LIMIT {{n:UInt32}}",
            {"id": incident_id, "n": limit},
        )
        return [_event(r) for r in rows]

    def transitions(self, fingerprints: Sequence[str], start: float, end: float, limit: int) -> list[Transition]:
        """Transitions of these alerts from `start` to `end`, oldest first."""
        if not fingerprints:
            return []
        rows = self._store.query_rows(
            f"""SELECT toUnixTimestamp64Milli(At), Fingerprint, Rule, Labels, FromState, ToState, Value
            FROM {ALERT_HISTORY} WHERE Fingerprint IN {{fps:Array(String)}}
                AND At >= fromUnixTimestamp64Milli({{a:Int64}}) AND At <= fromUnixTimestamp64Milli({{b:Int64}})
            ORDER BY At, Fingerprint LIMIT {{n:UInt32}}""",
            {"fps": list(fingerprints), "a": int(start * 1000), "b": int(end * 1000) + 1, "n": limit},
        )
        return [Transition(at / 1000, fp, rule, dict(lb), f, t, float(v)) for at, fp, rule, lb, f, t, v in rows]

    def _has_runbook_tables(self) -> bool:
        if not self._runbook_tables:  # once there, they stay: a migration never drops them
            found = self._store.query_rows(
                "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN {t:Array(String)}",
                {"t": [RUNBOOK_RUNS, RUNBOOK_EVENTS]},
            )
            self._runbook_tables = int(found[0][0]) == 2
        return self._runbook_tables

    def runs(self, start: float, end: float, limit: int) -> list[Run]:
        """Runbook runs (dry runs aside) started from `start` to `end`; none where runbooks never ran here."""
        if not self._has_runbook_tables():
            return []
        rows = self._store.query_rows(
            f"""SELECT RunId, argMax(Runbook, Seq), argMax(Target, Seq), argMax(StartedBy, Seq), argMax(Auto, Seq),
                argMax(Origin, Seq), argMax(State, Seq), toFloat64(min(At))
            FROM {RUNBOOK_RUNS} WHERE At >= {{a:Float64}}
            GROUP BY RunId HAVING min(At) <= {{b:Float64}} AND argMax(DryRun, Seq) = 0
            ORDER BY min(At), RunId LIMIT {{n:UInt32}}""",
            {"a": start, "b": end, "n": limit},
        )
        return [Run(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], float(r[7])) for r in rows]

    def run_steps(self, run_ids: Sequence[str], limit: int) -> list[RunStep]:
        if not run_ids or not self._has_runbook_tables():
            return []
        rows = self._store.query_rows(
            f"""SELECT RunId, toFloat64(At), StepIndex, StepName, Event, Actor, Message FROM {RUNBOOK_EVENTS}
            WHERE RunId IN {{ids:Array(String)}} ORDER BY At, RunId, Seq LIMIT {{n:UInt32}}""",
            {"ids": list(run_ids), "n": limit},
        )
        return [RunStep(r[0], float(r[1]), int(r[2]), r[3], r[4], r[5], r[6]) for r in rows]
