"""The evaluator with fake rules, a fake `window_values` and a recording notifier: rounds, failures, restore."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

import alerting.evaluator
from alerting.evaluator import Evaluator
from alerting.history import Restored, StateRow
from alerting.model import Alert, AlertState
from alerting.state import Tracked, Transition
from tests.unit.alerting.fakes import ERRORS, FakeQuery, FakeRule, RecordingNotifier
from vigil.store import Store
from vigil.store.window import WindowQuery

LATENCY = WindowQuery("llm.time_to_first_token", "histogram", "quantile", 300, quantile=0.99)


class MemoryAlertStore:
    def __init__(self, restored: Sequence[Restored] = ()) -> None:
        self.restored = list(restored)
        self.writes: list[tuple[list[StateRow], list[Transition]]] = []

    def restore(self) -> list[Restored]:
        return self.restored

    def write(self, rows: Sequence[StateRow], transitions: Sequence[Transition]) -> None:
        self.writes.append((list(rows), list(transitions)))


def make(
    *rules: FakeRule, alert_store: MemoryAlertStore | None = None
) -> tuple[Evaluator, FakeQuery, RecordingNotifier, CollectorRegistry]:
    query, notifier, registry = FakeQuery(), RecordingNotifier(), CollectorRegistry()
    ev = Evaluator(list(rules), None, None, notifier, registry, alert_store, clock=time.time, query=query)  # type: ignore[arg-type]
    return ev, query, notifier, registry


def states(ev: Evaluator) -> dict[str, AlertState]:
    return {f"{a.labels['alertname']}/{a.labels['host']}": a.state for a in ev.alerts()}


def test_rules_asking_the_same_question_share_one_read() -> None:
    ev, query, _, _ = make(FakeRule("A"), FakeRule("B", threshold=0.8), FakeRule("C", query=LATENCY))
    query.set(ERRORS, a=0.9)
    ev.evaluate_group("g", now=100)
    assert sorted(query.calls, key=str) == sorted([ERRORS, LATENCY], key=str)
    assert states(ev) == {"A/a": AlertState.FIRING, "B/a": AlertState.FIRING}


def test_firing_alerts_each_round_and_a_resolved_one_once() -> None:
    ev, query, notifier, registry = make(FakeRule(for_s=2))
    query.set(ERRORS, a=0.9)
    ev.evaluate_group("g", now=0)  # pending: not handed out
    ev.evaluate_group("g", now=2)  # firing
    ev.evaluate_group("g", now=4)  # still firing
    query.set(ERRORS, a=0.1)
    ev.evaluate_group("g", now=6)  # resolved
    ev.evaluate_group("g", now=8)  # nothing left
    handed = [(now, [(a.state, a.resolved_at) for a in alerts]) for alerts, now in notifier.calls]
    assert handed == [
        (2, [(AlertState.FIRING, None)]),
        (4, [(AlertState.FIRING, None)]),
        (6, [(AlertState.INACTIVE, 6)]),
    ]
    assert registry.get_sample_value("vigil_alerting_alerts", {"state": "firing"}) == 0
    assert registry.get_sample_value("vigil_alerting_rules") == 1


def test_a_failed_query_fails_only_its_rules_and_resolves_nothing() -> None:
    ev, query, notifier, registry = make(FakeRule("A"), FakeRule("C", query=LATENCY))
    query.set(ERRORS, a=0.9)
    query.set(LATENCY, a=0.9)
    ev.evaluate_group("g", now=0)
    query.failing.add(ERRORS)
    query.set(LATENCY)  # C's condition stops
    ev.evaluate_group("g", now=2)
    assert states(ev) == {"A/a": AlertState.FIRING}  # A kept firing through the outage
    ((_, statuses),) = ev.statuses()
    health = {s.rule.name: (s.health, s.last_error) for s in statuses}
    assert health["A"][0] == "err" and "store unreachable" in health["A"][1]
    assert health["C"] == ("ok", "")
    assert registry.get_sample_value("vigil_alerting_evaluation_failures_total", {"group": "g"}) == 1
    last, _ = notifier.calls[-1]
    assert sorted((a.labels["alertname"], a.state) for a in last) == [("A", "firing"), ("C", "inactive")]
    query.failing.clear()
    ev.evaluate_group("g", now=4)
    assert {s.rule.name: s.health for _, ss in ev.statuses() for s in ss} == {"A": "ok", "C": "ok"}


class BrokenRule(FakeRule):
    def evaluate(self, results: object, now: float) -> list:  # type: ignore[override]
        raise KeyError("no answer")


def test_a_rule_that_raises_keeps_its_alerts_and_others_run() -> None:
    ev, query, _, _ = make(FakeRule("A"), BrokenRule("B"))
    query.set(ERRORS, a=0.9)
    ev.evaluate_group("g", now=0)
    assert states(ev) == {"A/a": AlertState.FIRING}
    assert {s.rule.name: s.health for _, ss in ev.statuses() for s in ss} == {"A": "ok", "B": "err"}


def test_state_is_written_when_it_changes_only() -> None:
    store = MemoryAlertStore()
    ev, query, _, _ = make(FakeRule(for_s=2), alert_store=store)
    query.set(ERRORS, a=0.9)
    for now in (0, 1, 2, 3):
        ev.evaluate_group("g", now=now)
    query.set(ERRORS)
    ev.evaluate_group("g", now=4)
    written = [[(r.tracked.alert.state, r.tracked.alert.resolved_at) for r in rows] for rows, _ in store.writes]
    assert [w for w in written if w] == [
        [(AlertState.PENDING, None)],
        [(AlertState.FIRING, None)],
        [(AlertState.INACTIVE, 4)],
    ]


def test_restore_keeps_firing_alerts_firing_and_pending_progress() -> None:
    rule = FakeRule(for_s=10)
    firing = Alert({"host": "a", "severity": "page", "alertname": rule.name}, {}, AlertState.FIRING, 0.9, 100, 110)
    pending = Alert({"host": "b", "severity": "page", "alertname": rule.name}, {}, AlertState.PENDING, 0.9, 115)
    gone = Alert({"host": "c", "alertname": "Removed"}, {}, AlertState.FIRING, 1, 1, 2)
    store = MemoryAlertStore([Restored(rule.name, "g", Tracked(a)) for a in (firing, pending)])
    store.restored.append(Restored("Removed", "g", Tracked(gone)))
    ev, query, notifier, _ = make(rule, alert_store=store)
    assert ev.restore() == 2
    query.set(ERRORS, a=0.9, b=0.9)
    ev.evaluate_group("g", now=120)
    by_host = {a.labels["host"]: a for a in ev.alerts()}
    assert (by_host["a"].state, by_host["a"].fired_at, by_host["a"].runbook) == ("firing", 110, rule.runbook)
    assert (by_host["b"].state, by_host["b"].active_at) == ("pending", 115)
    ev.evaluate_group("g", now=125)
    assert {a.labels["host"]: a.state for a in ev.alerts()} == {"a": "firing", "b": "firing"}
    assert all(a.labels["alertname"] != "Removed" for alerts, _ in notifier.calls for a in alerts)


def test_the_scheduler_runs_groups_and_close_stops_it() -> None:
    ev, query, notifier, registry = make(FakeRule("A", interval_s=0.05), FakeRule("B", group="h", interval_s=0.05))
    query.set(ERRORS, a=0.9)
    ev.start()
    try:
        deadline = time.monotonic() + 10
        while len(notifier.calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ev.scheduler_running
    finally:
        ev.close(5)
    assert not ev.scheduler_running
    assert {a.labels["alertname"] for alerts, _ in notifier.calls for a in alerts} == {"A", "B"}
    assert registry.get_sample_value("vigil_alerting_evaluation_duration_seconds_count", {"group": "h"}) >= 1
    calls = len(notifier.calls)
    ev.run_group("g")  # a round after close does nothing
    assert len(notifier.calls) == calls


@pytest.mark.parametrize(("since_start", "stalled"), [(5.0, []), (60.0, ["g"])])
def test_a_group_without_a_good_round_is_stalled(since_start: float, stalled: list[str]) -> None:
    ev, query, _, _ = make(FakeRule())
    query.failing.add(ERRORS)
    ev.started_at = 1000.0
    ev.evaluate_group("g", now=0)
    assert ev.stalled(now_monotonic=1000.0 + since_start) == stalled


def test_a_round_waits_for_a_history_read_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """A person's history read comes first: the round's query runs only once the read has ended."""
    monkeypatch.setattr(alerting.evaluator, "FOREGROUND_ALLOWANCE_S", 60.0)  # no deadline within the test
    store = Store(cast(Any, object()), "chdb:///nowhere")
    store.foreground.quiet_s = 0.0
    query, order = FakeQuery(), []
    query.set(ERRORS, a=0.9)

    def recorded(*args: object) -> Sequence[object]:
        order.append("rule query")
        return query(*args)  # type: ignore[arg-type]

    ev = Evaluator([FakeRule("A")], store, None, RecordingNotifier(), CollectorRegistry(), query=recorded)  # type: ignore[arg-type]
    inside, release = threading.Event(), threading.Event()

    def read() -> None:
        with store.foreground.reading():
            inside.set()
            release.wait(30)
            order.append("history read")

    reader = threading.Thread(target=read)
    reader.start()
    inside.wait(30)
    round_ = threading.Thread(target=ev.evaluate_group, args=("g", 100))
    round_.start()
    round_.join(0.2)
    assert round_.is_alive() and order == []  # held back by the read
    release.set()
    reader.join(30)
    round_.join(30)
    assert order == ["history read", "rule query"]
    assert states(ev) == {"A/a": AlertState.FIRING}
