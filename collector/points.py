"""Per-kind checks and column appends for histogram, exponential-histogram and summary points.

Each check answers a rejection reason or None; a point that passes fits every column it lands
in (counts in UInt64, times in DateTime64(9), floats finite where the exporter expects them,
lists within their limits), so no accepted point can fail its insert.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from math import isfinite
from typing import Any

from collector.attributes import attribute_pairs
from collector.limits import MAX_TIMESTAMP_NS, Limits

# Rejection reasons: labels of vigil_collector_points_rejected_total and words in partial-success messages.
TIMESTAMP = "timestamp_out_of_range"
NON_FINITE = "non_finite_value"
NO_VALUE = "no_recorded_value"
ATTRIBUTE_LIMIT = "attribute_limit"
SERIES_LIMIT = "series_limit"
MALFORMED_POINT = "malformed_point"
NO_NAME = "missing_metric_name"
FIELD_LIMIT = "field_length_limit"
BUCKET_LIMIT = "bucket_limit"
EXEMPLAR_LIMIT = "exemplar_limit"

_SPAN_ID_LENGTHS = (0, 8)
_TRACE_ID_LENGTHS = (0, 16)


class PointChecks:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def validator(self, kind: str) -> Callable[[Any], str | None]:
        return {
            "histogram": self.histogram,
            "exponential_histogram": self.exp_histogram,
            "summary": self.summary,
        }.get(kind, _none)

    def histogram(self, dp: Any) -> str | None:
        buckets, bounds = dp.bucket_counts, dp.explicit_bounds
        if len(buckets) > self.limits.max_buckets or len(bounds) >= self.limits.max_buckets:
            return BUCKET_LIMIT
        if buckets and len(buckets) != len(bounds) + 1:
            return MALFORMED_POINT
        # OTLP: bounds are finite and strictly increasing; readers of the buckets rely on it
        if any(not isfinite(b) for b in bounds) or any(a >= b for a, b in pairwise(bounds)):
            return MALFORMED_POINT
        if buckets and sum(buckets) != dp.count:
            return MALFORMED_POINT
        return _finite_optional(dp)

    def exp_histogram(self, dp: Any) -> str | None:
        positive, negative = dp.positive.bucket_counts, dp.negative.bucket_counts
        if len(positive) > self.limits.max_buckets or len(negative) > self.limits.max_buckets:
            return BUCKET_LIMIT
        if dp.zero_count + sum(positive) + sum(negative) != dp.count:
            return MALFORMED_POINT
        if not isfinite(dp.zero_threshold) or dp.zero_threshold < 0:
            return MALFORMED_POINT
        return _finite_optional(dp)

    def summary(self, dp: Any) -> str | None:
        if len(dp.quantile_values) > self.limits.max_quantiles:
            return BUCKET_LIMIT
        if not isfinite(dp.sum):
            return NON_FINITE
        for q in dp.quantile_values:
            if not (0.0 <= q.quantile <= 1.0) or not isfinite(q.value):
                return MALFORMED_POINT if isfinite(q.value) else NON_FINITE
        return None

    def exemplars(self, exemplars: Any) -> str | None:
        limits = self.limits
        if len(exemplars) > limits.max_exemplars:
            return EXEMPLAR_LIMIT
        for e in exemplars:
            if e.time_unix_nano > MAX_TIMESTAMP_NS:
                return TIMESTAMP
            if e.WhichOneof("value") == "as_double" and not isfinite(e.as_double):
                return NON_FINITE
            if len(e.span_id) not in _SPAN_ID_LENGTHS or len(e.trace_id) not in _TRACE_ID_LENGTHS:
                return MALFORMED_POINT
            if e.filtered_attributes and attribute_pairs(e.filtered_attributes, limits) is None:
                return EXEMPLAR_LIMIT
        return None


def _none(dp: Any) -> None:
    return None


def _finite_optional(dp: Any) -> str | None:
    for name in ("sum", "min", "max"):
        if dp.HasField(name) and not isfinite(getattr(dp, name)):
            return NON_FINITE
    return None


def _append_histogram(dp: Any, c: dict[str, list[Any]]) -> None:
    c["Count"].append(dp.count)
    c["Sum"].append(dp.sum)
    c["BucketCounts"].append(list(dp.bucket_counts))
    c["ExplicitBounds"].append(list(dp.explicit_bounds))
    c["Min"].append(dp.min)
    c["Max"].append(dp.max)


def _append_exp_histogram(dp: Any, c: dict[str, list[Any]]) -> None:
    c["Count"].append(dp.count)
    c["Sum"].append(dp.sum)
    c["Scale"].append(dp.scale)
    c["ZeroCount"].append(dp.zero_count)
    c["PositiveOffset"].append(dp.positive.offset)
    c["PositiveBucketCounts"].append(list(dp.positive.bucket_counts))
    c["NegativeOffset"].append(dp.negative.offset)
    c["NegativeBucketCounts"].append(list(dp.negative.bucket_counts))
    c["Min"].append(dp.min)
    c["Max"].append(dp.max)


def _append_summary(dp: Any, c: dict[str, list[Any]]) -> None:
    c["Count"].append(dp.count)
    c["Sum"].append(dp.sum)
    c["ValueAtQuantiles.Quantile"].append([q.quantile for q in dp.quantile_values])
    c["ValueAtQuantiles.Value"].append([q.value for q in dp.quantile_values])


APPEND: dict[str, Any] = {
    "gauge": None,  # gauges and sums are appended inline: they are most of the traffic
    "sum": None,
    "histogram": _append_histogram,
    "exponential_histogram": _append_exp_histogram,
    "summary": _append_summary,
}
