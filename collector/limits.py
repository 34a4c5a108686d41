"""What one request may put in the store, and the series limiter that caps cardinality.

Every string and list that reaches a column has a limit here, so no request can put an
unbounded value into the sort key or an unbounded array into a row.
"""

from __future__ import annotations

from dataclasses import dataclass

# DateTime64(9) and Arrow timestamp[ns] are int64 nanoseconds: 2262-04-11 is the last instant.
MAX_TIMESTAMP_NS = 2**63 - 1


@dataclass
class Limits:
    max_attributes: int = 128
    max_key_length: int = 256
    max_value_length: int = 4096
    max_series_per_metric: int = 100_000
    max_age_ns: int = 14 * 86_400 * 10**9
    max_future_ns: int = 10 * 60 * 10**9
    max_name_length: int = 255  # OpenTelemetry's instrument-name limit
    max_description_length: int = 1024
    max_unit_length: int = 63  # OpenTelemetry's instrument-unit limit
    max_scope_field_length: int = 1024  # scope name and version, schema URLs
    max_exemplars: int = 16
    max_buckets: int = 1024  # explicit-bucket counts; each side of an exponential histogram
    max_quantiles: int = 128
    max_metric_names: int = 10_000
    max_series_total: int = 1_000_000
    attribute_cache_bytes: int = 32 * 1024 * 1024
    interval_cache_bytes: int = 16 * 1024 * 1024  # each gauge series' last time (`collector.intervals`)


class SeriesLimiter:
    """Caps distinct series per metric, distinct metric names, and series overall.

    Counts over a sliding window of two generations: a series counts as live if seen in this
    generation or the previous one; `roll()` (called by the owner on a timer) retires the older
    generation, so churning series (restarted pods) do not exhaust the limit forever. Without the
    name and total caps, a sender inventing metric names would grow this map without end.
    """

    def __init__(
        self, max_series_per_metric: int, max_metric_names: int = 10_000, max_series_total: int = 1_000_000
    ) -> None:
        self.limit = max_series_per_metric
        self.max_names = max_metric_names
        self.max_total = max_series_total
        self.current: dict[str, set[int]] = {}
        self.previous: dict[str, set[int]] = {}
        self._current_total = 0
        self._previous_total = 0
        self._names_carried = 0  # names in both generations (counted once as live)
        self._series_carried = 0  # series moved from the previous generation into this one

    @property
    def live_names(self) -> int:
        return len(self.current) + len(self.previous) - self._names_carried

    @property
    def live_series(self) -> int:
        return self._current_total + self._previous_total - self._series_carried

    def admit(self, metric: str, series: int) -> bool:
        current = self.current.get(metric)
        if current is not None and series in current:  # the hot path: a series seen this generation
            return True
        previous = self.previous.get(metric)
        if current is None:
            if previous is None and self.live_names >= self.max_names:
                return False
            current = self.current[metric] = set()
            if previous is not None:
                self._names_carried += 1
        if previous is not None and series in previous:
            current.add(series)
            self._current_total += 1
            self._series_carried += 1
            return True
        live = len(current) + (len(previous - current) if previous else 0)
        if live >= self.limit or self.live_series >= self.max_total:
            return False
        current.add(series)
        self._current_total += 1
        return True

    def roll(self) -> None:
        self.previous, self.current = self.current, {}
        self._previous_total, self._current_total = self._current_total, 0
        self._names_carried = self._series_carried = 0
