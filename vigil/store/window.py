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

A window is (now - window_s, now]. `increase` and `rate` follow Prometheus 2.x: the reset-aware
increase between the first and last points inside the window, extrapolated towards the window's
edges (to an edge within 1.1 average sampling intervals of the nearest point, else half an
interval; never past the counter's zero), so a 30 s window at 1 s sampling gives the true rate. A
series with fewer than two points in the window gives nothing, as in PromQL. A histogram resets as a
whole (its total count went down), as Prometheus' native histograms do; its buckets are added up by
upper bound across the series of a group (`sum by (le)`).

Windows of an hour or more read the 1-minute or 1-hour rollups (the coarsest whose bucket divides
the window and is at most 1/60 of it, still within its TTL), so a 30-day error budget never reads
raw rows. A rollup read covers the whole buckets up to the one holding now: where now is not on a
bucket edge its start moves forward to one (under a bucket) and rates are taken over that shorter
range, increases scaled back to the window. Where now is on a bucket edge the answer equals the raw
one exactly (to float rounding) provided:
- no point lies exactly on the window's start or end (buckets are [start, end), raw windows (start, end]);
- within one bucket of one series, the counter resets at most once, and after a reset it stays
  below the value it had just before the reset until that bucket ends (a reset between two buckets,
  or any number of them across buckets, is always exact).
Where those fail, the rollup misses the increase made before a reset it cannot see (it reads low).
`last_seen` always reads raw rows; gauge functions read the gauge rollups' mergeable states.

Every value in a query is bound as a parameter; identifiers come only from fixed lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vigil.store.client import Store
    from vigil.store.plan import Resolution
    from vigil.store.schema import SchemaContext

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


def window_values(
    store: Store, query: WindowQuery, now: float, ctx: SchemaContext, *, source: Resolution | None = None
) -> Sequence[WindowValue]:
    """The query's answer at `now` (unix seconds): one value per group that has data in the window,
    ordered by labels. `source` forces raw rows or a rollup (tests compare them).

    Raises `QueryRejected` for a query no table can answer (a function the kind lacks, an `le` that
    is not a bucket bound, a window not a whole number of a forced rollup's buckets) and
    `StoreQueryError` when the store fails or the answer passes the row limit.
    """
    from vigil.store.window_read import read_window  # the edge imports this module's shapes

    return read_window(store, query, now, ctx, source=source)
