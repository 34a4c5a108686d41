"""The arithmetic of windowed reads, pure: Prometheus' extrapolation and `histogram_quantile`.

The store answers per series (increase, first value, first and last times, point count); these
functions turn that into what PromQL's `rate`, `increase` and `histogram_quantile` would give.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CounterSeries:
    """One cumulative series over a window, as the store summarises it (times in unix seconds)."""

    increase: float  # reset-aware, between the first and the last point in the window
    first_value: float
    first_t: float
    last_t: float
    points: int


def extrapolation_factor(series: CounterSeries, range_start: float, range_end: float) -> float | None:
    """How much to scale `series.increase` to cover [range_start, range_end], as Prometheus 2.x's
    `extrapolatedRate` does: out to each edge when the nearest point is within 1.1 average intervals
    of it, else half an interval; never back past the counter's zero. None under two points (PromQL
    returns nothing then)."""
    if series.points < 2 or series.last_t <= series.first_t:
        return None
    sampled = series.last_t - series.first_t
    average = sampled / (series.points - 1)
    to_start = series.first_t - range_start
    to_end = range_end - series.last_t
    if series.increase > 0 and series.first_value >= 0:
        to_start = min(to_start, sampled * (series.first_value / series.increase))
    threshold = average * 1.1
    span = sampled
    span += to_start if to_start < threshold else average / 2
    span += to_end if to_end < threshold else average / 2
    return span / sampled


def cumulative(bounds: Sequence[float], counts: Sequence[float]) -> dict[float, float]:
    """OTel explicit-bucket counts (one per bucket, the last one past the highest bound) as
    Prometheus' cumulative `le` buckets, `+Inf` included."""
    out: dict[float, float] = {}
    total = 0.0
    for le, count in zip([*bounds, math.inf], counts, strict=False):
        total += count
        out[le] = total
    return out


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """Prometheus' `histogram_quantile` over cumulative counts by upper bound: linear interpolation
    inside the bucket holding the rank (the first bucket's lower edge is 0 when its bound is
    positive); a rank in the +Inf bucket gives the highest finite bound. NaN without observations."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets.items())
    if len(ordered) < 2 or ordered[-1][0] != math.inf:
        return math.nan
    bounds = [le for le, _ in ordered]
    counts = [c for _, c in ordered]
    for i in range(1, len(counts)):  # as Prometheus' ensureMonotonic: float noise never makes a bucket shrink
        counts[i] = max(counts[i], counts[i - 1])
    observations = counts[-1]
    if observations <= 0:
        return math.nan
    rank = q * observations
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if b == 0 else bounds[b - 1]
    count = counts[b] - (counts[b - 1] if b > 0 else 0.0)
    rank -= counts[b - 1] if b > 0 else 0.0
    return start + (bounds[b] - start) * (rank / count if count > 0 else 0.0)  # q = 0: the lower edge
