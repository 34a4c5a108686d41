"""Windowed reads for rules: one value per series (or group) over the last `window_s` seconds.

What alerting evaluates, in the manner of PromQL's range functions, over the exporter tables and
their rollups:

- gauges: `avg`, `min`, `max`, `last`, `count` of the points in the window;
- sums (monotonic counters): `increase` and `rate` (increase / window), counter resets detected
  as in Prometheus (a value lower than the one before it starts again from zero);
- histograms (cumulative): `quantile` from the bucket increases (linear interpolation inside the
  bucket, as `histogram_quantile` does), `count` (increase of observations) and `le_count`
  (increase of observations at or under `le`: the good events of a latency SLI);
- any table: `last_seen`, the unix seconds of the newest point per group within the window (absence
  rules compare it with now).

Windows of an hour or more read the 1-minute or 1-hour rollups where the window is a multiple of
their bucket, so a 30-day error budget never reads raw rows; the answer equals the raw one.

Every value in a query is bound as a parameter; identifiers come only from fixed lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["gauge", "sum", "histogram"]
Function = Literal["avg", "min", "max", "last", "count", "increase", "rate", "quantile", "le_count", "last_seen"]
Op = Literal["=", "!=", "=~", "!~"]

FUNCTIONS_BY_KIND: dict[str, frozenset[str]] = {
    "gauge": frozenset({"avg", "min", "max", "last", "count", "last_seen"}),
    "sum": frozenset({"increase", "rate", "last", "last_seen"}),
    "histogram": frozenset({"quantile", "count", "le_count", "last_seen"}),
}


@dataclass(frozen=True)
class Matcher:
    """`key op value` on a point attribute or, where the point lacks the key, a resource attribute.

    `=~` and `!~` are RE2 regular expressions matched against the whole value (anchored), as in PromQL.
    """

    key: str
    op: Op
    value: str


@dataclass(frozen=True)
class WindowQuery:
    """One windowed read; frozen and hashable, so rules that ask the same question share one query."""

    metric: str
    kind: Kind
    function: Function
    window_s: int
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ()  # attribute keys (point first, then resource); () = one series
    quantile: float | None = None  # for "quantile", in [0, 1]
    le: float | None = None  # for "le_count": a bucket bound of the histogram


@dataclass(frozen=True)
class WindowValue:
    """One output series: its `group_by` labels (a missing key is "(none)") and its value."""

    labels: dict[str, str] = field(hash=False)
    value: float


def window_values(store: object, query: WindowQuery, now: float, ctx: object) -> Sequence[WindowValue]:
    """The query's answer at `now` (unix seconds): one value per group that has data in the window.

    Implemented by the store layer; see the module doc for what each function means.
    """
    raise NotImplementedError
