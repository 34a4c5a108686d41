"""Fake rules, queries and notifiers that implement alerting's protocols, for tests without the other parts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alerting.model import Alert, Sample
from vigil.store.window import WindowQuery, WindowValue

ERRORS = WindowQuery("llm.requests.finished", "sum", "rate", 60)


@dataclass
class FakeRule:
    """A threshold rule on one WindowQuery: a sample for every series whose value is above `threshold`."""

    name: str = "HighErrors"
    group: str = "g"
    interval_s: float = 2.0
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: Mapping[str, str] = field(default_factory=lambda: {"severity": "page"})
    annotations: Mapping[str, str] = field(default_factory=lambda: {"summary": "{{ $labels.host }} at {{ $value }}"})
    runbook: str | None = "restart-engine"
    query: WindowQuery = ERRORS
    threshold: float = 0.5

    def queries(self) -> Sequence[WindowQuery]:
        return (self.query,)

    def evaluate(self, results: Mapping[WindowQuery, Sequence[WindowValue]], now: float) -> list[Sample]:
        return [Sample(dict(v.labels), v.value) for v in results[self.query] if v.value > self.threshold]


class FakeQuery:
    """`window_values` answering from a dict the test sets; counts calls; raises where told."""

    def __init__(self) -> None:
        self.answers: dict[WindowQuery, list[WindowValue]] = {}
        self.failing: set[WindowQuery] = set()
        self.calls: list[WindowQuery] = []

    def set(self, query: WindowQuery, **values: float) -> None:
        self.answers[query] = [WindowValue({"host": host}, value) for host, value in values.items()]

    def __call__(self, store: object, query: WindowQuery, now: float, ctx: object) -> Sequence[WindowValue]:
        self.calls.append(query)
        if query in self.failing:
            raise ConnectionError("store unreachable")
        return self.answers.get(query, [])


class RecordingNotifier:
    """Records what the evaluator hands over; runs nothing, holds no silences."""

    silences = None

    def __init__(self) -> None:
        self.calls: list[tuple[list[Alert], float]] = []

    def notify(self, alerts: Sequence[Alert], now: float) -> None:
        self.calls.append((list(alerts), now))

    def start(self) -> None: ...

    def close(self, timeout_s: float) -> None: ...

    def health(self) -> tuple[bool, dict[str, object]]:
        return True, {"receivers": "recorded by the test"}
