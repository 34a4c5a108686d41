"""Compiled threshold and absence rules: pure functions from windowed values to the samples that hold.

Nothing here does I/O: the evaluator runs `queries()` against the store and hands the answers to
`evaluate()`, so every rule's logic is tested with plain tables.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from alerting.model import Sample
from vigil.store.window import WindowQuery, WindowValue

NONE_LABEL = "(none)"  # what the store answers for a group key a series lacks

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

Results = Mapping[WindowQuery, Sequence[WindowValue]]


@dataclass(frozen=True)
class Expr:
    """A windowed value per `by` group, optionally divided by another one matched on the same groups."""

    query: WindowQuery
    ratio_to: WindowQuery | None = None

    @property
    def by(self) -> tuple[str, ...]:
        return self.query.group_by

    def queries(self) -> tuple[WindowQuery, ...]:
        return (self.query,) if self.ratio_to is None else (self.query, self.ratio_to)

    def values(self, results: Results) -> dict[tuple[str, ...], tuple[dict[str, str], float]]:
        """Group key → (labels, value); a ratio whose denominator is 0 or missing has no value (0/0 is no data)."""
        out = {}
        for v in results.get(self.query, ()):
            out[self._key(v.labels)] = (v.labels, v.value)
        if self.ratio_to is None:
            return out
        totals = {self._key(v.labels): v.value for v in results.get(self.ratio_to, ())}
        return {
            key: (labels, value / totals[key])
            for key, (labels, value) in out.items()
            if totals.get(key) and math.isfinite(totals[key])
        }

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(k, NONE_LABEL) for k in self.by)


@dataclass(frozen=True)
class Condition:
    expr: Expr
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and OPS[self.op](value, self.threshold)


@dataclass(frozen=True)
class ThresholdRule:
    """`expr op threshold`, and every further condition on the same groups (`and:`); the first gives `$value`."""

    name: str
    group: str
    interval_s: float
    conditions: tuple[Condition, ...]
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    runbook: str | None = None
    type: str = "threshold"
    slo: None = None

    def queries(self) -> Sequence[WindowQuery]:
        return tuple(dict.fromkeys(q for c in self.conditions for q in c.expr.queries()))

    def evaluate(self, results: Results, now: float) -> list[Sample]:
        first, *rest = self.conditions
        held = {key: lv for key, lv in first.expr.values(results).items() if first.holds(lv[1])}
        for cond in rest:
            other = cond.expr.values(results)
            held = {key: lv for key, lv in held.items() if key in other and cond.holds(other[key][1])}
        return [Sample(dict(labels), value) for labels, value in held.values()]


@dataclass(frozen=True)
class AbsenceRule:
    """A source (one `by` group) seen within `lookback` but not for `absent_for_s`: one sample per source."""

    name: str
    group: str
    interval_s: float
    query: WindowQuery  # `last_seen` over the lookback, grouped by the source identity
    absent_for_s: float
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    runbook: str | None = None
    for_s: float = 0.0  # the absence itself is the wait: `absent_for_s`
    keep_firing_for_s: float = 0.0
    type: str = "absence"
    slo: None = None

    def queries(self) -> Sequence[WindowQuery]:
        return (self.query,)

    def evaluate(self, results: Results, now: float) -> list[Sample]:
        out = []
        for v in results.get(self.query, ()):
            if any(v.labels.get(k, NONE_LABEL) == NONE_LABEL for k in self.query.group_by):
                continue  # a series without the identity is no source of its own
            age = now - v.value
            if age >= self.absent_for_s:
                out.append(Sample(dict(v.labels), age))
        return out
