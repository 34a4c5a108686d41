"""One cycle's readings as OpenTelemetry SDK metrics data, collected exactly once per cycle.

The agent's own metrics (spool, drops, cycle cost, scrape health) are SDK instruments on a
`MeterProvider` whose only reader, `CycleReader`, collects when the sampling loop asks: never on a
timer, so K cycles give exactly K points per series.

GPU and engine readings become SDK data points (`NumberDataPoint`, `HistogramDataPoint`) here
rather than through observable instruments, for three reasons: the SDK's asynchronous instruments
keep every attribute set they ever saw (process series churn with PIDs; past 2,000 sets a stream
silently folds new series into an overflow series), they cannot state a counter's reset (a new
start time), and engines' histograms arrive already aggregated. Everything leaves in the SDK's
data model and through its OTLP encoder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter, MeterProvider, ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

import vigil
from gpu_agent.model import Snapshot
from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

CUMULATIVE = AggregationTemporality.CUMULATIVE
SCOPE_GPU = InstrumentationScope("vigil.gpu_agent.gpu", vigil.__version__)
SCOPE_ENGINE = InstrumentationScope("vigil.gpu_agent.engine", vigil.__version__)
SCOPE_AGENT = "vigil.gpu_agent"


def finite(value: float) -> bool:
    return value - value == 0  # False for NaN and ±Inf; the collector refuses both


class StartTimes:
    """Start times of cumulative series, with resets.

    A series starts at its `created` time when the source states one (Prometheus `_created`), else
    at `first_seen_ns` (the engine's process start, or the agent's) when it is there from the first
    reading; one that first appears later (an XID code's count, a labelled counter's first increment)
    was absent, so 0, at the reading before, and starts just after it: the store then counts its
    first value as an increase inside any window holding that start. A value below the previous one
    means the source restarted its count: the series starts again just after the previous reading.
    Series unseen for `forget_after` readings of others are forgotten, so the map stays bounded.
    """

    def __init__(self, forget_after: int = 1000) -> None:
        self._series: dict[Any, list[float]] = {}  # key -> [start_ns, last_value, last_time_ns, created, tick]
        self._tick = 0
        self._now_ns = 0  # the latest reading's time, and the one before it
        self._previous_ns = 0
        self.forget_after = forget_after
        self.resets = 0

    def start(self, key: Any, value: float, now_ns: int, first_seen_ns: int, created_ns: int | None = None) -> int:
        if now_ns > self._now_ns:
            self._previous_ns, self._now_ns = self._now_ns, now_ns
        entry = self._series.get(key)
        if entry is None:
            start = created_ns if created_ns is not None else min(first_seen_ns, now_ns)
            if created_ns is None and self._previous_ns > first_seen_ns:
                start = self._previous_ns + 1
            self._series[key] = [start, value, now_ns, created_ns or 0, self._tick]
            return int(start)
        if created_ns is not None:
            if created_ns != entry[3]:
                if entry[3]:
                    self.resets += 1
                entry[0], entry[3] = created_ns, created_ns
        elif value < entry[1]:
            entry[0] = entry[2] + 1
            self.resets += 1
        entry[1], entry[2], entry[4] = value, now_ns, self._tick
        return int(entry[0])

    def sweep(self) -> None:
        """Call once per cycle: forget series not seen for a while."""
        self._tick += 1
        if self._tick % 100:
            return
        horizon = self._tick - self.forget_after
        self._series = {k: v for k, v in self._series.items() if v[4] >= horizon}

    def __len__(self) -> int:
        return len(self._series)


def snapshot_metrics(snapshot: Snapshot, now_ns: int, starts: StartTimes, first_seen_ns: int) -> list[Metric]:
    """Catalogue readings → SDK metrics: gauges as `Gauge`, counters as cumulative monotonic `Sum`.

    A key that is not a catalogue `Metric` (a backend's bug) is logged once and skipped: one bad
    reading must never end the sampling loop.
    """
    out: list[Metric] = []
    for spec, readings in snapshot.items():
        if not isinstance(spec, n.Metric):
            _skip_once(spec)
            continue
        if spec.kind is n.Kind.COUNTER:
            points = [
                NumberDataPoint(
                    attrs,
                    starts.start((spec, frozenset(attrs.items())), value, now_ns, first_seen_ns),
                    now_ns,
                    value,
                )
                for value, attrs in readings
                if finite(value)
            ]
            data: Any = Sum(points, CUMULATIVE, True)
        else:
            points = [NumberDataPoint(attrs, 0, now_ns, value) for value, attrs in readings if finite(value)]
            data = Gauge(points)
        if points:
            out.append(Metric(spec.name, spec.description, spec.unit, data))
    return out


_skipped: set[str] = set()


def _skip_once(key: object) -> None:
    what = repr(key)[:200]
    if what not in _skipped and len(_skipped) < 100:
        _skipped.add(what)
        event(log, "reading_skipped", level=logging.ERROR, key=what, reason="not a vigil.names.Metric")


class CycleReader(MetricReader):
    """Collects only when `take()` is called: once per cycle, by the sampling loop."""

    def __init__(self) -> None:
        super().__init__()
        self._data: MetricsData | None = None

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._data = metrics_data

    def take(self) -> MetricsData | None:
        self.collect()
        data, self._data = self._data, None
        return data

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True  # a flush must not add a collection: K cycles give K points

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._data = None


class Telemetry:
    """The resource, the agent's own instruments and the assembly of each cycle's `MetricsData`."""

    def __init__(self, resource_attributes: Mapping[str, str]) -> None:
        self.resource = Resource(dict(resource_attributes))
        self.reader = CycleReader()
        self.provider = MeterProvider(resource=self.resource, metric_readers=[self.reader])
        self.meter = self.provider.get_meter(SCOPE_AGENT, vigil.__version__)
        self.starts = StartTimes()
        self.first_seen_ns = time.time_ns()
        self._gauges: dict[n.Metric, list[tuple[float, dict[str, str]]]] = {}
        for spec in (n.AGENT_CYCLE_DURATION, n.AGENT_SPOOL_BATCHES, n.AGENT_SPOOL_BYTES):
            self._observable(spec)
        for spec in (n.AGENT_SCRAPE_UP, n.AGENT_SCRAPE_DURATION):
            self._observable(spec)
        self.dropped: Counter = self.meter.create_counter(
            n.AGENT_BATCHES_DROPPED.name, n.AGENT_BATCHES_DROPPED.unit, n.AGENT_BATCHES_DROPPED.description
        )
        self.export_failures: Counter = self.meter.create_counter(
            n.AGENT_EXPORT_FAILURES.name, n.AGENT_EXPORT_FAILURES.unit, n.AGENT_EXPORT_FAILURES.description
        )
        self.points_rejected: Counter = self.meter.create_counter(
            n.AGENT_POINTS_REJECTED.name, n.AGENT_POINTS_REJECTED.unit, n.AGENT_POINTS_REJECTED.description
        )

    def _observable(self, spec: n.Metric) -> ObservableGauge | ObservableCounter:
        def callback(_: CallbackOptions, spec: n.Metric = spec) -> Iterable[Observation]:
            return [Observation(v, a) for v, a in self._gauges.get(spec, ())]

        return self.meter.create_observable_gauge(spec.name, [callback], spec.unit, spec.description)

    def set_gauge(self, metric: n.Metric, readings: list[tuple[float, dict[str, str]]]) -> None:
        """The agent's own gauge values for the next collection (a small, bounded set of series)."""
        self._gauges[metric] = readings

    def collect(self, snapshot: Snapshot, engine_metrics: list[Metric], now_ns: int | None = None) -> MetricsData:
        """The cycle's one collection: GPU readings, engine metrics and the agent's own metrics."""
        now_ns = now_ns or time.time_ns()
        scopes = []
        gpu = snapshot_metrics(snapshot, now_ns, self.starts, self.first_seen_ns)
        if gpu:
            scopes.append(ScopeMetrics(SCOPE_GPU, gpu, ""))
        if engine_metrics:
            scopes.append(ScopeMetrics(SCOPE_ENGINE, engine_metrics, ""))
        own = self.reader.take()
        if own is not None:
            for rm in own.resource_metrics:
                scopes.extend(rm.scope_metrics)
        self.starts.sweep()
        return MetricsData([ResourceMetrics(self.resource, scopes, "")])

    def shutdown(self) -> None:
        self.provider.shutdown()


def count_points(data: MetricsData) -> int:
    return sum(len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
