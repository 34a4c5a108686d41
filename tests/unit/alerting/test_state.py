"""The state machine, table-driven: each case is a rule's timing and a run of evaluations, with what each one yields."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from alerting.model import AlertState, Sample
from alerting.state import RESOLVED, DuplicateSeries, Tracked, advance
from alerting.template import format_value, render
from tests.unit.alerting.fakes import FakeRule

P, F = AlertState.PENDING, AlertState.FIRING


@dataclass(frozen=True)
class Tick:
    at: float
    holds: bool  # the condition holds for host "a" at this evaluation
    state: AlertState | None  # the alert's state after it; None: no alert held
    resolved: bool = False  # a resolved alert is handed out by this evaluation


RESOLVE_13 = [Tick(13, False, None, resolved=True)]

CASES = {
    "for 0 fires at once, resolves when the condition stops": (
        0,
        0,
        [Tick(0, True, F), Tick(2, True, F), Tick(4, False, None, resolved=True), Tick(6, False, None)],
    ),
    "for holds pending until for has passed": (
        5,
        0,
        [Tick(0, True, P), Tick(2, True, P), Tick(4, True, P), Tick(5, True, F), Tick(7, False, None, resolved=True)],
    ),
    "a pending alert whose condition stops is dropped without a resolved notification": (
        5,
        0,
        [Tick(0, True, P), Tick(2, False, None), Tick(4, True, P), Tick(8, True, P), Tick(9, True, F)],
    ),
    "keep_firing_for keeps it firing, then resolves": (
        0,
        5,
        [Tick(0, True, F), Tick(2, False, F), Tick(4, False, F), Tick(7, False, None, resolved=True)],
    ),
    "the condition coming back restarts the keep_firing_for countdown": (
        0,
        5,
        [Tick(0, True, F), Tick(2, False, F), Tick(6, True, F), Tick(8, False, F), Tick(12, False, F), *RESOLVE_13],
    ),
    "after a resolve the condition starts a new alert from pending": (
        3,
        0,
        [Tick(0, True, P), Tick(3, True, F), Tick(4, False, None, resolved=True), Tick(5, True, P), Tick(8, True, F)],
    ),
    "keep_firing_for does not keep a pending alert": (
        5,
        10,
        [Tick(0, True, P), Tick(1, False, None)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_state_machine(name: str) -> None:
    for_s, keep_s, ticks = CASES[name]
    rule = FakeRule(for_s=for_s, keep_firing_for_s=keep_s)
    active: dict[str, Tracked] = {}
    for tick in ticks:
        samples = [Sample({"host": "a"}, 0.9)] if tick.holds else []
        step = advance(rule, active, samples, tick.at)
        active = step.active
        states = [t.alert.state for t in active.values()]
        assert states == ([tick.state] if tick.state else []), f"{name}: at {tick.at}"
        assert len(step.resolved) == (1 if tick.resolved else 0), f"{name}: at {tick.at}"
        for alert in step.resolved:
            assert alert.resolved_at == tick.at and alert.state == AlertState.INACTIVE


def test_times_and_transitions_follow_the_alert() -> None:
    rule = FakeRule(for_s=2)
    s1 = advance(rule, {}, [Sample({"host": "a"}, 0.7)], 10)
    s2 = advance(rule, s1.active, [Sample({"host": "a"}, 0.8)], 12)
    s3 = advance(rule, s2.active, [], 14)
    (fired,) = s2.active.values()
    assert (fired.alert.active_at, fired.alert.fired_at, fired.alert.value) == (10, 12, 0.8)
    (gone,) = s3.resolved
    assert (gone.active_at, gone.fired_at, gone.resolved_at) == (10, 12, 14)
    moves = [(t.at, t.from_state, t.to_state) for s in (s1, s2, s3) for t in s.transitions]
    assert moves == [(10, "inactive", "pending"), (12, "pending", "firing"), (14, "firing", RESOLVED)]


def test_labels_annotations_and_identity() -> None:
    rule = FakeRule(labels={"severity": "page", "host": "overridden"})
    step = advance(rule, {}, [Sample({"host": "a", "gpu": "0"}, 0.75)], 0)
    (held,) = step.active.values()
    assert held.alert.labels == {"host": "overridden", "gpu": "0", "severity": "page", "alertname": "HighErrors"}
    assert held.alert.annotations == {"summary": "overridden at 0.75"}
    assert held.alert.runbook == "restart-engine"
    assert list(step.active) == [held.alert.fingerprint]


def test_series_are_independent_alerts() -> None:
    rule = FakeRule(for_s=2)
    s1 = advance(rule, {}, [Sample({"host": "a"}, 1), Sample({"host": "b"}, 1)], 0)
    s2 = advance(rule, s1.active, [Sample({"host": "a"}, 1)], 2)
    assert {t.alert.labels["host"]: t.alert.state for t in s2.active.values()} == {"a": F}
    assert not s2.resolved  # b was only pending


def test_two_series_with_one_label_set_are_refused() -> None:
    rule = FakeRule(labels={"severity": "page", "host": "x"})
    with pytest.raises(DuplicateSeries, match="HighErrors"):
        advance(rule, {}, [Sample({"host": "a"}, 1), Sample({"host": "b"}, 1)], 0)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ $value }}", "0.25"),
        ("{{$labels.host}} / {{ $labels.missing }}", "a / "),
        ('{{ $labels["gpu.uuid"] }}', "GPU-1"),
        ("no template", "no template"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, {"host": "a", "gpu.uuid": "GPU-1"}, 0.25) == expected


@pytest.mark.parametrize(
    ("value", "text"), [(1.0, "1"), (0.5, "0.5"), (float("inf"), "+Inf"), (float("nan"), "NaN"), (-2.0, "-2")]
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text
