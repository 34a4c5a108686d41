"""The alert state machine of one rule, as Prometheus's `rules/alerting.go` drives it.

    inactive ──condition holds──▶ pending ──held `for`──▶ firing ──condition stops──▶ resolved
                                    │                        ▲  │ (after `keep_firing_for`)
                                    └─condition stops─▶ dropped  └─ stays firing meanwhile

Pure: `advance` takes the rule's alerts before an evaluation, the samples whose condition holds
now, and the time, and returns the alerts after it, the ones resolved by it (each handed to the
notifier once, in this evaluation, then forgotten) and every transition (the history). No clock,
no store: the evaluator feeds it, and a restart feeds it back what the store kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from alerting.model import ALERTNAME, Alert, AlertState, CompiledRule, Sample, fingerprint
from alerting.template import render

RESOLVED = "resolved"  # the `to` of a firing alert's last transition; not a state an alert is kept in

Render = Callable[[str, Mapping[str, str], float], str]


class DuplicateSeries(ValueError):
    """Two samples of one rule give the same label set: the rule cannot tell its alerts apart."""


@dataclass(frozen=True)
class Tracked:
    """An alert the rule holds (pending or firing), with when its condition last stopped holding."""

    alert: Alert
    keep_firing_since: float | None = None  # set while a firing alert is kept by `keep_firing_for`


@dataclass(frozen=True)
class Transition:
    """One change of an alert's state, as the history keeps it."""

    at: float
    fingerprint: str
    rule: str
    labels: dict[str, str]
    from_state: str
    to_state: str
    value: float


@dataclass(frozen=True)
class Step:
    """What one evaluation of one rule did."""

    active: dict[str, Tracked]  # fingerprint → alert still held (pending or firing)
    resolved: list[Alert]  # firing alerts whose condition stopped: notified once, then forgotten
    dropped: list[Alert]  # pending alerts whose condition stopped: forgotten without a word
    transitions: list[Transition]


def alert_labels(rule: CompiledRule, sample: Sample) -> dict[str, str]:
    """The series labels, then the rule's labels over them, then `alertname`, as Prometheus builds them."""
    return {**sample.labels, **rule.labels, ALERTNAME: rule.name}


def advance(
    rule: CompiledRule,
    active: Mapping[str, Tracked],
    samples: Sequence[Sample],
    now: float,
    render_template: Render = render,
) -> Step:
    """One evaluation of `rule` at `now` with the samples whose condition holds.

    Raises `DuplicateSeries` (and changes nothing) when two samples give one label set.
    """
    current: dict[str, tuple[dict[str, str], float]] = {}
    for sample in samples:
        labels = alert_labels(rule, sample)
        fp = fingerprint(labels)
        if fp in current:
            raise DuplicateSeries(
                f"rule {rule.name}: two series with the labels {labels} after adding the rule's labels"
            )
        current[fp] = (labels, sample.value)

    out: dict[str, Tracked] = {}
    resolved: list[Alert] = []
    dropped: list[Alert] = []
    transitions: list[Transition] = []

    def note(alert: Alert, from_state: str, to_state: str) -> None:
        transitions.append(
            Transition(now, alert.fingerprint, rule.name, dict(alert.labels), from_state, to_state, alert.value)
        )

    for fp, (labels, value) in current.items():
        annotations = {k: render_template(v, labels, value) for k, v in rule.annotations.items()}
        held = active.get(fp)
        if held is not None:
            # the condition holds again: any keep_firing_for countdown stops
            out[fp] = Tracked(replace(held.alert, value=value, annotations=annotations), None)
            continue
        alert = Alert(
            labels=labels,
            annotations=annotations,
            state=AlertState.PENDING,
            value=value,
            active_at=now,
            runbook=rule.runbook,
        )
        note(alert, AlertState.INACTIVE, AlertState.PENDING)
        out[fp] = Tracked(alert)

    for fp, held in active.items():
        if fp in current:
            continue
        alert = held.alert
        if alert.state == AlertState.PENDING:
            note(alert, AlertState.PENDING, AlertState.INACTIVE)
            dropped.append(replace(alert, state=AlertState.INACTIVE))
            continue
        since = held.keep_firing_since if held.keep_firing_since is not None else now
        if rule.keep_firing_for_s > 0 and now - since < rule.keep_firing_for_s:
            out[fp] = Tracked(alert, since)
            continue
        gone = replace(alert, state=AlertState.INACTIVE, resolved_at=now)
        note(gone, AlertState.FIRING, RESOLVED)
        resolved.append(gone)

    for fp, held in out.items():
        alert = held.alert
        if alert.state == AlertState.PENDING and now - alert.active_at >= rule.for_s:
            fired = replace(alert, state=AlertState.FIRING, fired_at=now)
            note(fired, AlertState.PENDING, AlertState.FIRING)
            out[fp] = Tracked(fired, held.keep_firing_since)
    return Step(out, resolved, dropped, transitions)
