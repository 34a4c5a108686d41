"""The runbook audit trail and incidents in embedded ClickHouse: the automatic-start counts read from
the audit rows, and retention that deletes whole finished runs and ended incidents, never a part of one.

Rows sit far from now (the session's store is shared): reads in 2096, deletions in 2001."""

from __future__ import annotations

import uuid

from alerting.incident_store import IncidentStore
from alerting.incidents import IncidentEvent, Kind
from runbooks.audit import RunRecord, StepEvent, StoreAudit
from vigil.store import Store
from vigil.store.schema import INCIDENT_EVENTS, RUNBOOK_EVENTS, RUNBOOK_RUNS

FUTURE, PAST, DAY = 4_000_000_000.0, 1_000_000_000.0, 86400.0


def record(at: float, state: str, *, seq: int = 0, run_id: str = "", runbook: str = "rb", target: str = "t",
           auto: bool = True, dry: bool = False) -> RunRecord:  # fmt: skip
    return RunRecord(
        run_id or uuid.uuid4().hex, seq, at, runbook, "gpu", target, {}, dry, "alert:X", auto, "X {}", state, -1, "",
        "alert:X",
    )  # fmt: skip


def test_automatic_starts_are_counted_from_the_audit_rows(store: Store) -> None:
    audit = StoreAudit(store)
    rb = f"auto-{uuid.uuid4().hex[:8]}"
    first = record(FUTURE, "running", runbook=rb, target="GPU-1")
    audit.record_run(first)
    audit.record_run(record(FUTURE + 5, "succeeded", seq=1, run_id=first.id, runbook=rb, target="GPU-1"))
    second = record(FUTURE + 60, "running", runbook=rb, target="GPU-2")
    audit.record_run(second)
    audit.record_run(record(FUTURE + 70, "running", runbook=rb, target="GPU-1", auto=False))  # by hand
    audit.record_run(record(FUTURE + 80, "running", runbook=rb, target="GPU-1", dry=True))
    audit.record_run(record(FUTURE + 90, "failed", runbook=rb, target="GPU-1"))  # refused at start
    assert audit.auto_starts(FUTURE - 1, 10) == [(second.id, FUTURE + 60), (first.id, FUTURE)]
    assert audit.auto_starts(FUTURE - 1, 1) == [(second.id, FUTURE + 60)]  # bounded
    assert audit.auto_starts(FUTURE + 1, 10) == [(second.id, FUTURE + 60)]
    assert audit.last_auto_start(rb, "GPU-1", FUTURE - 600) == FUTURE
    assert audit.last_auto_start(rb, "GPU-1", FUTURE + 1) is None
    assert audit.last_auto_start(rb, "GPU-9", FUTURE - 600) is None


def _run_ids(store: Store, table: str, ids: list[str]) -> set[str]:
    rows = store.query_rows(f"SELECT DISTINCT RunId FROM {table} WHERE RunId IN {{ids:Array(String)}}", {"ids": ids})
    return {r[0] for r in rows}


def test_retention_deletes_whole_finished_runs_past_it(store: Store) -> None:
    audit = StoreAudit(store)
    old = record(PAST, "running")
    audit.record_run(old)
    audit.record_event(StepEvent(old.id, 0, PAST + 1, 0, "note", "note", 1, "succeeded", "alert:X", "hi"))
    audit.record_run(record(PAST + 2, "succeeded", seq=1, run_id=old.id))
    stuck = record(PAST, "running")  # never finished: not pruned (a start marks it interrupted first)
    audit.record_run(stuck)
    late = record(PAST, "running")  # started long ago, changed since the cut-off
    audit.record_run(late)
    audit.record_run(record(PAST + 30 * DAY, "failed", seq=1, run_id=late.id))
    audit.prune(PAST + DAY)
    ids = [old.id, stuck.id, late.id]
    assert _run_ids(store, RUNBOOK_RUNS, ids) == {stuck.id, late.id}
    assert _run_ids(store, RUNBOOK_EVENTS, ids) == set()
    assert audit.run(old.id) is None
    late_now = audit.run(late.id)
    assert late_now is not None and late_now.started_at == PAST  # its first row kept with its last


def test_retention_deletes_whole_ended_incidents_past_it(store: Store) -> None:
    incidents = IncidentStore(store)

    def incident(*kinds: Kind, at: float = PAST) -> str:
        iid = uuid.uuid4().hex
        incidents.write([IncidentEvent(iid, at + i, kind, title="t", fingerprint="fp") for i, kind in enumerate(kinds)])
        return iid

    ended = incident(Kind.OPENED, Kind.ALERT, Kind.NOTE, Kind.ALERT_RESOLVED, Kind.RESOLVED)
    still_open = incident(Kind.OPENED, Kind.ALERT)
    closed_firing = incident(Kind.OPENED, Kind.ALERT, Kind.CLOSED)  # closed by hand, its alert still firing
    recent = incident(Kind.OPENED, Kind.ALERT, Kind.ALERT_RESOLVED, Kind.RESOLVED, at=PAST + 30 * DAY)
    incidents.prune(PAST + DAY)
    ids = [ended, still_open, closed_firing, recent]
    rows = store.query_rows(
        f"SELECT IncidentId, count() FROM {INCIDENT_EVENTS} WHERE IncidentId IN {{ids:Array(String)}} "
        "GROUP BY IncidentId",
        {"ids": ids},
    )
    assert dict(rows) == {still_open: 2, closed_firing: 3, recent: 4}
