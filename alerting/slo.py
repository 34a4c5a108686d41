"""SLOs: error ratios, burn rates, the SRE workbook's multiwindow multi-burn-rate alerts, the budget left.

An SLO (Sloth's shape: a service, an objective in percent, an SLI) has an error budget
`B = 1 - objective`. Over a window, `burn = error_ratio / B`: burning at 1 spends the budget in
exactly one period. The SRE workbook pages when both a long and a short window burn fast (the
long one proves it is significant, the short one that it is still happening, so the alert
resolves soon after the fix), and opens a ticket on slower burns:

| alert  | long | short | burn > | budget spent when it fires (30 d) |
|--------|------|-------|--------|-----------------------------------|
| page   | 1h   | 5m    | 14.4   | 2 %                               |
| page   | 6h   | 30m   | 6      | 5 %                               |
| ticket | 1d   | 2h    | 3      | 10 %                              |
| ticket | 3d   | 6h    | 1      | 10 %                              |

Error ratio: `increase(errors) / increase(total)` of two counters (events SLI), or for latency
`1 - le_count / count` of a histogram over the window (`le` is the threshold, a bucket bound).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from alerting.model import Sample
from vigil.store.window import Matcher, WindowQuery, WindowValue

WINDOWS: dict[str, int] = {"5m": 300, "30m": 1800, "1h": 3600, "2h": 7200, "6h": 21600, "1d": 86400, "3d": 259200}
BurnWindow = tuple[int, int, float]  # (long window s, short window s, burn rate above which it holds)
PAGE_WINDOWS: tuple[BurnWindow, ...] = ((3600, 300, 14.4), (21600, 1800, 6.0))
TICKET_WINDOWS: tuple[BurnWindow, ...] = ((86400, 7200, 3.0), (259200, 21600, 1.0))
DEFAULT_PERIOD_S = 30 * 86400


def _bounds(text: str) -> tuple[float, ...]:
    return tuple(float(b) for b in text.split())


# Bucket bounds of the histograms the workload and vLLM export (REFERENCE.md §4): a latency SLI's
# threshold must be one, or `le_count` would have to guess inside a bucket.
BUCKET_BOUNDS: dict[str, tuple[float, ...]] = {
    "llm.time_to_first_token": _bounds(
        "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1 2.5 5 7.5 10 20 40 80 160 640 2560"
    ),
    "llm.inter_token_latency": _bounds("0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1 2.5 5 7.5 10 20 40 80"),
    "llm.e2e_latency": _bounds("0.3 0.5 0.8 1 1.5 2 2.5 5 10 15 20 30 40 50 60 120 240 480 960 1920 7680"),
}


@dataclass(frozen=True)
class EventsSli:
    """Bad events over all events: two counters (`increase` over the window)."""

    error_metric: str
    error_matchers: tuple[Matcher, ...]
    total_metric: str
    total_matchers: tuple[Matcher, ...]

    def queries(self, window_s: int) -> tuple[WindowQuery, WindowQuery]:
        """(errors, total) over the window."""
        return (
            WindowQuery(self.error_metric, "sum", "increase", window_s, self.error_matchers),
            WindowQuery(self.total_metric, "sum", "increase", window_s, self.total_matchers),
        )

    def errors_total(self, results: Mapping[WindowQuery, Sequence[WindowValue]], window_s: int) -> tuple[float, float]:
        err_q, total_q = self.queries(window_s)
        return _sum(results, err_q), _sum(results, total_q)


@dataclass(frozen=True)
class LatencySli:
    """Requests slower than `threshold_s` over all requests, from one histogram."""

    metric: str
    threshold_s: float
    matchers: tuple[Matcher, ...] = ()

    def queries(self, window_s: int) -> tuple[WindowQuery, WindowQuery]:
        """(good: at or under the threshold, total) over the window."""
        return (
            WindowQuery(self.metric, "histogram", "le_count", window_s, self.matchers, le=self.threshold_s),
            WindowQuery(self.metric, "histogram", "count", window_s, self.matchers),
        )

    def errors_total(self, results: Mapping[WindowQuery, Sequence[WindowValue]], window_s: int) -> tuple[float, float]:
        good_q, total_q = self.queries(window_s)
        total = _sum(results, total_q)
        return total - _sum(results, good_q), total


def _sum(results: Mapping[WindowQuery, Sequence[WindowValue]], query: WindowQuery) -> float:
    return sum(v.value for v in results.get(query, ()))


@dataclass(frozen=True)
class SloSpec:
    """One SLO of a service. `objective` is in percent, as Sloth writes it (99.9)."""

    service: str
    name: str
    objective: float
    sli: EventsSli | LatencySli
    period_s: int = DEFAULT_PERIOD_S
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def budget(self) -> float:
        """The error budget as a ratio: 0.001 for 99.9 %."""
        return round(1.0 - self.objective / 100.0, 12)  # 99.9 gives 0.001, not 0.0010000000000000009

    def queries(self, window_s: int) -> tuple[WindowQuery, WindowQuery]:
        return self.sli.queries(window_s)

    def error_ratio(self, results: Mapping[WindowQuery, Sequence[WindowValue]], window_s: int) -> float | None:
        """Bad events over all events in the window; None with no events (no data is no burn)."""
        errors, total = self.sli.errors_total(results, window_s)
        if total <= 0:
            return None
        return min(1.0, max(0.0, errors / total))

    def burn_rate(self, results: Mapping[WindowQuery, Sequence[WindowValue]], window_s: int) -> float | None:
        ratio = self.error_ratio(results, window_s)
        return None if ratio is None else ratio / self.budget

    def budget_remaining(self, results: Mapping[WindowQuery, Sequence[WindowValue]]) -> float:
        """The fraction of the period's error budget left (below 0 once overspent; 1 with no events),
        from the answers to `queries(period_s)`."""
        ratio = self.error_ratio(results, self.period_s)
        return 1.0 if ratio is None else 1.0 - ratio / self.budget

    def status_queries(self, now: float) -> list[WindowQuery]:
        """Everything `budget_status` reads: each burn-rate window and the whole period."""
        windows = [*WINDOWS.values(), self.period_s]
        return list(dict.fromkeys(q for w in windows for q in self.queries(w)))


@dataclass(frozen=True)
class SloStatus:
    """What the dashboard shows of an SLO: the budget left over the period, the burn rate per window."""

    service: str
    slo: str
    objective: float  # percent
    period_s: int
    error_budget_remaining: float  # fraction of the budget left; below 0 once overspent
    burn_rates: dict[str, float]  # keyed "5m" .. "3d"; 0 where the window saw no events


def budget_status(
    spec: SloSpec, results_by_query: Mapping[WindowQuery, Sequence[WindowValue]], now: float
) -> SloStatus:
    """The SLO's status from the answers to `spec.status_queries(now)`."""
    remaining = spec.budget_remaining(results_by_query)
    burns = {key: spec.burn_rate(results_by_query, w) or 0.0 for key, w in WINDOWS.items()}
    return SloStatus(spec.service, spec.name, spec.objective, spec.period_s, remaining, burns)


@dataclass(frozen=True)
class SloInfo:
    """What a burn-rate rule alerts on: its SLO and the (long, short, burn) windows it checks."""

    service: str
    slo: str
    objective: float
    period_s: int
    alert: Literal["page", "ticket"]
    windows: tuple[BurnWindow, ...]


@dataclass(frozen=True)
class BurnRateRule:
    """One of an SLO's two alerts: holds when, for any of its window pairs, both windows burn too fast.

    The sample's value is the long window's burn rate, so `{{ $value }}` reads "burning 15x".
    """

    name: str
    group: str
    interval_s: float
    spec: SloSpec
    slo: SloInfo
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    runbook: str | None = None
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    type: str = "slo"

    def queries(self) -> Sequence[WindowQuery]:
        return tuple(
            dict.fromkeys(q for long, short, _ in self.slo.windows for w in (long, short) for q in self.spec.queries(w))
        )

    def evaluate(self, results: Mapping[WindowQuery, Sequence[WindowValue]], now: float) -> list[Sample]:
        for long_s, short_s, factor in self.slo.windows:
            long_burn = self.spec.burn_rate(results, long_s)
            short_burn = self.spec.burn_rate(results, short_s)
            if long_burn is not None and short_burn is not None and long_burn > factor and short_burn > factor:
                return [Sample({}, long_burn)]
        return []
