"""The shapes every part of alerting agrees on: compiled rules, samples, alerts, notifiers, silences.

The path of an alert:

    rules (YAML) ──compile──▶ CompiledRule ──queries()──▶ WindowQuery ──store──▶ WindowValue
        ──evaluate()──▶ Sample ──state machine──▶ Alert ──Notifier.notify()──▶ route → group →
        inhibit → silence → mute → dedup → send → record

Rules compile to `CompiledRule`s: each names the windowed reads it needs (`queries`), and turns
their answers into the samples whose condition holds now (`evaluate`), as a PromQL alert
expression returns only the series that match. The evaluator runs the reads (one per distinct
`WindowQuery`, shared across rules), drives each rule's state machine with the samples, stores
the state, and hands every firing alert and every alert resolved since the last evaluation to the
`Notifier`, each evaluation, as Prometheus hands its alerts to Alertmanager.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from vigil.store.window import WindowQuery, WindowValue

ALERTNAME = "alertname"
SEVERITY = "severity"  # "page" or "ticket"


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for a label set: the same labels, in any order, give the same fingerprint."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sample:
    """One series for which a rule's condition holds now, with the value shown as `{{ $value }}`."""

    labels: dict[str, str] = field(hash=False)
    value: float


class CompiledRule(Protocol):
    """A rule ready to evaluate: threshold, absence, or one burn-rate alert of an SLO."""

    name: str  # becomes the `alertname` label
    group: str  # evaluation group; its interval is `interval_s`
    interval_s: float
    for_s: float  # pending this long before firing
    keep_firing_for_s: float  # keeps firing this long after the condition stops holding
    labels: Mapping[str, str]  # added to every alert (`severity` among them)
    annotations: Mapping[str, str]  # templates: `{{ $labels.x }}`, `{{ $value }}`
    runbook: str | None

    def queries(self) -> Sequence[WindowQuery]: ...

    def evaluate(self, results: Mapping[WindowQuery, Sequence[WindowValue]], now: float) -> list[Sample]: ...


@dataclass(frozen=True)
class Alert:
    """One alert instance of a rule: the rule's labels plus the series labels, with `alertname`."""

    labels: dict[str, str] = field(hash=False)  # includes `alertname` and `severity`
    annotations: dict[str, str] = field(hash=False)  # rendered
    state: AlertState
    value: float
    active_at: float  # unix seconds the condition started holding
    fired_at: float | None = None  # when it went to firing
    resolved_at: float | None = None  # set once it stopped firing: a resolved notification follows
    runbook: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None


class Notifier(Protocol):
    """The notification pipeline's entry: handed every firing alert and every newly resolved one."""

    def notify(self, alerts: Sequence[Alert], now: float) -> None: ...


@dataclass(frozen=True)
class Silence:
    """Alertmanager's silence: alerts whose labels match every matcher are muted from `starts_at` to `ends_at`."""

    id: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value); op is one of = != =~ !~
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at
