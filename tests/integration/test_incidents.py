"""Incidents on the real embedded store, inside AlertingService, and its API over real HTTP on loopback:
opened, joined and resolved by the evaluator, closed by hand, kept over a restart, the timeline in
order with authors (transitions, silences, notes, runbook audit rows), refusals by role and by field."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import vigil.access
from alerting.notify.silence import SilenceStore
from alerting.service import AlertingService
from tests.local import serving
from tests.unit.alerting.fakes import ERRORS, FakeQuery, FakeRule, RecordingNotifier
from vigil.access import Principal, Role
from vigil.incident_view import MAX_NOTE_CHARS
from vigil.kernel import RunPlan, ServiceContext
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.schema import ALERT_HISTORY, ALERTS, INCIDENT_EVENTS, SILENCES

OPERATOR = Principal("olga", Role.OPERATOR, "token")
WHO: dict[str, Principal | None] = {"now": OPERATOR}

# The runbook audit tables as migration 10 (branch d-runbooks, `runbooks/audit.py`) makes them.
RUNBOOK_DDL = (
    """CREATE TABLE IF NOT EXISTS vigil_runbook_runs (RunId String, Seq UInt32, At DateTime64(3, 'UTC'),
    Runbook LowCardinality(String), TargetKind LowCardinality(String), Target String, Params String, DryRun UInt8,
    StartedBy String, Auto UInt8, Origin String, State LowCardinality(String), Step Int32, Reason String,
    Actor String) ENGINE = MergeTree PARTITION BY toYYYYMM(At) ORDER BY (RunId, Seq)""",
    """CREATE TABLE IF NOT EXISTS vigil_runbook_events (RunId String, Seq UInt32, At DateTime64(3, 'UTC'),
    StepIndex Int32, StepName String, StepKind LowCardinality(String), Attempt UInt16, Event LowCardinality(String),
    Actor String, Message String, Output String) ENGINE = MergeTree PARTITION BY toYYYYMM(At) ORDER BY (RunId, Seq)""",
)


class SilencingNotifier(RecordingNotifier):
    def __init__(self, store: Store) -> None:
        super().__init__()
        self.silences = SilenceStore(store)  # type: ignore[assignment]


def started(store: Store, query: FakeQuery, tmp_path: Path, for_s: float = 1) -> AlertingService:
    """The service, started, once the scheduler's first round is over (incidents included)."""
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=tmp_path)
    registry = CollectorRegistry()
    ctx = ServiceContext(settings=Settings(data=tmp_path), store=store, registry=registry, plan=plan)
    rule = FakeRule(for_s=for_s, interval_s=3600)  # the scheduler's first round only; the test drives the rest
    svc = AlertingService(ctx, rules=[rule], slos=[], notifier=SilencingNotifier(store), query=query)
    svc.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # the round's duration is observed last, after the notifier and the incidents had its alerts
        if registry.get_sample_value("vigil_alerting_evaluation_duration_seconds_count", {"group": "g"}):
            return svc
        time.sleep(0.05)
    raise AssertionError("the scheduler never ran the group")


@pytest.fixture
def fresh(store: Store) -> Store:
    for sql in RUNBOOK_DDL:
        store.command(sql)
    for table in (ALERTS, ALERT_HISTORY, INCIDENT_EVENTS, SILENCES, "vigil_runbook_runs", "vigil_runbook_events"):
        store.command(f"TRUNCATE TABLE {table}")
    return store


def test_the_evaluator_opens_joins_and_resolves_and_a_restart_keeps_the_open_one(fresh: Store, tmp_path: Path) -> None:
    query = FakeQuery()
    query.set(ERRORS, a=0.9)
    svc = started(fresh, query, tmp_path)  # a pending
    t0 = time.time() + 5
    try:
        assert svc.incidents.list("all") == []
        svc.evaluator.evaluate_group("g", now=t0)  # a fires: opens
        query.set(ERRORS, a=0.9, b=0.8)
        svc.evaluator.evaluate_group("g", now=t0 + 2)  # b pending
        svc.evaluator.evaluate_group("g", now=t0 + 4)  # b fires: joins (one group: alertname)
        (opened,) = svc.incidents.list("open")
        assert (opened["title"], opened["severity"], opened["alertCount"], opened["firingCount"]) == (
            "HighErrors",
            "page",
            2,
            2,
        )
    finally:
        svc.close(5)

    query.set(ERRORS, b=0.8)  # a resolved while Vigil was down
    again = started(fresh, query, tmp_path)
    try:
        (kept,) = again.incidents.list("open")
        assert kept["id"] == opened["id"] and kept["firingCount"] == 1  # the first round resolved a
        query.set(ERRORS)
        again.evaluator.evaluate_group("g", now=t0 + 10)
        assert again.incidents.list("open") == []
        (done,) = again.incidents.list("resolved")
        assert done["id"] == opened["id"] and done["closedBy"] is None and done["firingCount"] == 0
        assert done["resolvedAt"] == datetime.fromtimestamp(t0 + 10, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        query.set(ERRORS, a=0.9)
        again.evaluator.evaluate_group("g", now=t0 + 20)  # pending
        again.evaluator.evaluate_group("g", now=t0 + 22)  # fires again: a new incident
        newest = again.incidents.list("all")
        assert [i["status"] for i in newest] == ["open", "resolved"] and newest[0]["id"] != opened["id"]
    finally:
        again.close(5)


@pytest.fixture
def api(fresh: Store, tmp_path: Path) -> Iterator[tuple[httpx.Client, AlertingService, FakeQuery]]:
    """AlertingService's routers and providers served by uvicorn in a thread; WHO["now"] is the caller.

    The rule fires at once, so the scheduler's first round opens an incident on the real clock, which
    notes and closes are stamped with too."""
    query = FakeQuery()
    query.set(ERRORS, a=0.9)
    svc = started(fresh, query, tmp_path, for_s=0)
    app = FastAPI()
    for router in svc.routers:
        app.include_router(router)
    app.dependency_overrides.update(svc.providers)
    app.dependency_overrides[vigil.access.authenticate] = lambda: WHO["now"]
    WHO["now"] = OPERATOR
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield client, svc, query
    finally:
        svc.close(5)


def add_run(store: Store, run_id: str, at: float, by: str, steps: list[tuple[float, str, str, str]]) -> None:
    def ts(s: float) -> datetime:
        return datetime.fromtimestamp(s, UTC)

    cols = ["RunId", "Seq", "At", "Runbook", "TargetKind", "Target", "Params", "DryRun", "StartedBy", "Auto"]
    cols += ["Origin", "State", "Step", "Reason", "Actor"]
    first = (run_id, 1, ts(at), "restart-engine", "workload", "", "{}", 0, by, 0, "", "running", -1, "", by)
    last = (run_id, 2, ts(steps[-1][0]), *first[3:11], "succeeded", 1, "", by)
    store.insert_columns("vigil_runbook_runs", list(zip(first, last, strict=True)), cols)
    rows = [
        (run_id, i, ts(t), i, name, "action", 1, ev, actor, "", "{}") for i, (t, name, ev, actor) in enumerate(steps)
    ]
    ecols = [
        "RunId",
        "Seq",
        "At",
        "StepIndex",
        "StepName",
        "StepKind",
        "Attempt",
        "Event",
        "Actor",
        "Message",
        "Output",
    ]
    store.insert_columns("vigil_runbook_events", list(zip(*rows, strict=True)), ecols)


def test_the_api_notes_closes_and_tells_the_timeline_in_order(api: Any, fresh: Store) -> None:
    client, svc, query = api
    (listed,) = client.get("/api/v1/incidents").json()["incidents"]
    iid = listed["id"]
    time.sleep(0.01)
    now = time.time()
    silence = svc.notifier.silences.create([("host", "=", "a")], now, now + 3600, "kim", "maintenance", now)
    steps = [(now + 0.01, "shed", "succeeded", "olga"), (now + 0.02, "ok", "approved", "sam")]
    add_run(fresh, "r1", now + 0.005, "olga", steps)
    time.sleep(0.05)
    r = client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "shedding <load>"})
    assert r.status_code == 200, r.text
    assert (r.json()["actor"], r.json()["text"]) == ("olga", "shedding <load>")
    time.sleep(0.01)
    WHO["now"] = Principal("sam", Role.ADMIN, "token")
    closed = client.post(f"/api/v1/incidents/{iid}/close")
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["closedBy"]) == ("resolved", "sam")
    assert client.post(f"/api/v1/incidents/{iid}/close").status_code == 409

    body = client.get(f"/api/v1/incidents/{iid}").json()
    got = [(e["kind"], e["actor"]) for e in body["timeline"]]
    assert got == [
        ("alert", ""),  # inactive → pending, the scheduler's first round
        ("alert", ""),  # pending → firing, in the same round (the rule's `for` is 0)
        ("opened", ""),
        ("silence", "kim"),
        ("runbook_run", "olga"),
        ("runbook_step", "olga"),
        ("runbook_step", "sam"),
        ("note", "olga"),
        ("closed", "sam"),
    ]
    ats = [e["at"] for e in body["timeline"]]
    assert ats == sorted(ats)
    assert body["timeline"][3]["silence"] == silence.id
    assert [a["firing"] for a in body["alerts"]] == [True]  # closed by hand; the alert still fires
    svc.evaluator.evaluate_group("g", now=time.time())
    assert client.get("/api/v1/incidents?status=open").json() == {"incidents": []}  # no reopening while it fires

    query.set(ERRORS)
    svc.evaluator.evaluate_group("g", now=time.time())  # it resolves: leaves the closed incident, no new one
    assert [i["id"] for i in client.get("/api/v1/incidents?status=all").json()["incidents"]] == [iid]
    # a note after the close still lands (the postmortem)
    assert client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "root cause: a bad deploy"}).status_code == 200


def test_refusals_name_the_role_or_the_field(api: Any) -> None:
    client, _, _ = api
    (listed,) = client.get("/api/v1/incidents").json()["incidents"]
    iid = listed["id"]

    WHO["now"] = None
    for r in (client.get("/api/v1/incidents"), client.post(f"/api/v1/incidents/{iid}/close")):
        assert r.status_code == 401
    WHO["now"] = Principal("vic", Role.VIEWER, "token")
    assert client.get(f"/api/v1/incidents/{iid}").status_code == 200
    for r in (
        client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "hi"}),
        client.post(f"/api/v1/incidents/{iid}/close"),
    ):
        assert r.status_code == 403 and "operator" in r.json()["detail"]
    WHO["now"] = Principal("olga", Role.OPERATOR, "session")  # a login cookie without its CSRF token
    assert client.post(f"/api/v1/incidents/{iid}/close").status_code == 403

    WHO["now"] = OPERATOR
    cases = [
        (client.get("/api/v1/incidents?status=closed"), 400, "status"),
        (client.get("/api/v1/incidents?limit=0"), 400, "limit"),
        (client.get("/api/v1/incidents/no such id"), 400, "id"),
        (client.get("/api/v1/incidents/ffffffffffffffff"), 404, "ffffffffffffffff"),
        (client.post("/api/v1/incidents/ffffffffffffffff/close"), 404, "ffffffffffffffff"),
        (client.post(f"/api/v1/incidents/{iid}/notes", json={"text": ""}), 400, "text"),
        (client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "x" * (MAX_NOTE_CHARS + 1)}), 400, "text"),
        (client.post(f"/api/v1/incidents/{iid}/notes", json={"txt": "hi"}), 400, "text"),
        (client.post(f"/api/v1/incidents/{iid}/notes", content=b"{nope"), 400, "body"),
        (client.post(f"/api/v1/incidents/{iid}/notes", content=b"x" * 100_000), 413, "body"),
    ]
    for r, status, named in cases:
        assert (r.status_code, named in r.json()["detail"]) == (status, True), r.text
    assert client.get(f"/api/v1/incidents/{iid}").json()["status"] == "open"  # nothing refused changed it
