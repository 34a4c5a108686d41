"""Firing hooks: a listener hears of each firing once, with the rule's runbook, and again only after a resolve."""

from __future__ import annotations

from collections.abc import Mapping

from alerting.firing import FiringHooks
from alerting.model import Alert, AlertState


def alert(state: AlertState, fired_at: float | None, resolved_at: float | None = None) -> Alert:
    return Alert(
        labels={"alertname": "HotGpu", "gpu.uuid": "GPU-1"},
        annotations={"summary": "hot", "runbook_auto": "true"},
        state=state,
        value=95.0,
        active_at=1.0,
        fired_at=fired_at,
        resolved_at=resolved_at,
        runbook="gpu-throttling",
    )


def test_a_listener_hears_each_firing_once_with_its_runbook() -> None:
    heard: list[tuple[Mapping[str, str], Mapping[str, str]]] = []
    hooks = FiringHooks()
    hooks.add(lambda labels, annotations: heard.append((labels, annotations)))
    hooks.observe([alert(AlertState.PENDING, None)], 1.0)
    assert heard == []
    for now in (2.0, 3.0, 4.0):  # the evaluator hands every firing alert on every round
        hooks.observe([alert(AlertState.FIRING, 2.0)], now)
    assert len(heard) == 1
    labels, annotations = heard[0]
    assert labels["gpu.uuid"] == "GPU-1"
    assert annotations["runbook"] == "gpu-throttling" and annotations["runbook_auto"] == "true"


def test_it_fires_anew_only_after_a_resolve() -> None:
    heard: list[object] = []
    hooks = FiringHooks()
    hooks.add(lambda labels, annotations: heard.append(labels))
    hooks.observe([alert(AlertState.FIRING, 2.0)], 2.0)
    hooks.observe([alert(AlertState.FIRING, 2.0, resolved_at=5.0)], 5.0)
    hooks.observe([alert(AlertState.FIRING, 9.0)], 9.0)
    assert len(heard) == 2


def test_a_failing_listener_does_not_stop_the_next() -> None:
    heard: list[object] = []

    def broken(labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
        raise RuntimeError("listener bug")

    hooks = FiringHooks()
    hooks.add(broken)
    hooks.add(lambda labels, annotations: heard.append(labels))
    hooks.observe([alert(AlertState.FIRING, 2.0)], 2.0)
    assert len(heard) == 1
