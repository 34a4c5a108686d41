"""Engine `/metrics` scraping: Prometheus text → raw metrics plus the catalogue's common names.

Each target is scraped on its own thread at its own interval, so a slow engine never delays the
NVML sampling; the sampling loop picks up the finished scrapes once per cycle.

Conversion (pure, tested on recorded texts):
- the engine is detected from its metric names, and mapped onto the common names, by the rules
  of `gpu_agent.engines`;
- every family is also emitted raw under its own name (counters without `_total`, as the OTel
  Prometheus receiver names them), with its labels plus `llm.engine` and `llm.endpoint`;
- histograms stay histograms: cumulative `le` buckets become OTLP bucket counts and bounds;
- counters and histograms are cumulative with a start time: the family's `_created` sample where
  the engine exposes one, else the engine's `process_start_time_seconds`, else first sight; a value
  that goes down (an engine restart without `_created`) starts the series again;
- NaN and ±Inf values are dropped (the collector refuses them).
"""

from __future__ import annotations

import gzip
import http.client
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum
from prometheus_client.parser import text_string_to_metric_families

from gpu_agent.engines import Engine, Part, detect_engine
from gpu_agent.model import Load
from gpu_agent.telemetry import CUMULATIVE, StartTimes, finite
from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_SAMPLES = 50_000
ACCEPT = "text/plain;version=0.0.4;q=1.0, application/openmetrics-text;version=1.0.0;q=0.5"
Labels = tuple[tuple[str, str], ...]


class ScrapeError(Exception):
    pass


@dataclass
class ScrapeResult:
    endpoint: str
    time_ns: int
    duration_s: float
    ok: bool
    engine: str | None = None
    metrics: list[Metric] = field(default_factory=list)
    load: Load | None = None
    error: str = ""
    common: dict[n.Metric, float] = field(default_factory=dict)  # common metric -> summed value (gauges, counters)


# ---- parsing ---------------------------------------------------------------------------------------


def parse(text: str, content_type: str = "") -> list[Any]:
    """Prometheus families; OpenMetrics when the target answered in it."""
    if "openmetrics" in content_type:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

        return list(om_families(text))
    return list(text_string_to_metric_families(text))


@dataclass
class _Series:
    """One series of a family after grouping: a number, or a histogram's parts."""

    labels: Labels
    value: float = math.nan
    buckets: list[tuple[float, float]] = field(default_factory=list)
    count: float = math.nan
    sum: float = math.nan
    created: float | None = None


def _group(family: Any) -> list[_Series]:
    """A family's samples by series; histogram and summary samples folded into their series."""
    base = family.name
    by_labels: dict[Labels, _Series] = {}
    typ = family.type
    for sample in family.samples:
        name = sample.name
        labels = sample.labels
        if typ in ("histogram", "gaugehistogram"):
            le = labels.get("le")
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        elif typ == "summary":
            le = None
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "quantile"))
        else:
            le = None
            key = tuple(sorted(labels.items()))
        series = by_labels.get(key)
        if series is None:
            series = by_labels[key] = _Series(key)
        suffix = name[len(base) :]
        value = float(sample.value)
        if suffix == "_created":
            series.created = value
        elif typ in ("histogram", "gaugehistogram"):
            if suffix == "_bucket" and le is not None:
                series.buckets.append((float(le), value))
            elif suffix in ("_count", "_gcount"):
                series.count = value
            elif suffix in ("_sum", "_gsum"):
                series.sum = value
        elif typ == "summary":
            if suffix == "_count":
                series.count = value
            elif suffix == "_sum":
                series.sum = value
            elif suffix == "" and "quantile" in labels:
                series.buckets.append((float(labels["quantile"]), value))
        elif typ == "counter":
            if suffix == "_total" or suffix == "":
                series.value = value
        else:
            series.value = value
    return list(by_labels.values())


def histogram_parts(buckets: list[tuple[float, float]], count: float) -> tuple[list[float], list[int], int]:
    """Cumulative `le` buckets → (explicit bounds, per-bucket counts, total) as OTLP wants them.

    The `+Inf` bucket is the total; without one, `_count` is. Bucket counts never go negative (a
    racy exposition can show a bucket below its predecessor) and always add up to the total.
    """
    ordered = sorted(buckets)
    bounds = [le for le, _ in ordered if le != math.inf]
    cumulative = [c for le, c in ordered if le != math.inf]
    total = next((c for le, c in ordered if le == math.inf), count if finite(count) else (cumulative or [0])[-1])
    counts: list[int] = []
    previous = 0
    for c in [*cumulative, total]:
        c = int(c)
        counts.append(max(0, c - previous))
        previous = max(previous, c)
    return bounds, counts, sum(counts)


# ---- conversion ------------------------------------------------------------------------------------


class Converter:
    """Families of one target → SDK metrics, keeping that target's series start times."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.starts = StartTimes(forget_after=100)
        self._warned: set[str] = set()

    def convert(self, families: list[Any], now_ns: int) -> tuple[list[Metric], Engine | None, dict[n.Metric, float]]:
        names = {f.name for f in families}
        engine = detect_engine(names)
        identity = {n.LLM_ENGINE: engine.name if engine else "unknown", n.LLM_ENDPOINT: self.endpoint}
        process_start = next(
            (float(f.samples[0].value) for f in families if f.name == "process_start_time_seconds" and f.samples),
            None,
        )
        first_seen = int(process_start * 1e9) if process_start else now_ns
        created, created_families = self._created(families, names)
        grouped: dict[str, tuple[Any, list[_Series]]] = {}
        out: list[Metric] = []
        samples = 0
        for family in families:
            if family.name in created_families:
                continue  # a `_created` gauge: folded into its counter or histogram
            series = _group(family)
            for s in series:
                if s.created is None:
                    s.created = created.get(family.name, {}).get(s.labels)
            samples += len(series)
            if samples > MAX_SAMPLES:
                self._warn_once("too_many_series", f"more than {MAX_SAMPLES} series; the rest are dropped")
                break
            grouped[family.name] = (family, series)
            out.extend(self._raw(family, series, identity, now_ns, first_seen))
        common: dict[n.Metric, float] = {}
        if engine is not None:
            out.extend(self._common(engine, grouped, identity, now_ns, first_seen, common))
        self.starts.sweep()
        return out, engine, common

    @staticmethod
    def _created(families: list[Any], names: set[str]) -> tuple[dict[str, dict[Labels, float]], set[str]]:
        """The text format's `X_created` gauges of counters and histograms: ({X: {labels: seconds}}, their names)."""
        created: dict[str, dict[Labels, float]] = {}
        created_families: set[str] = set()
        for family in families:
            if not family.name.endswith("_created"):
                continue
            base = family.name[: -len("_created")]
            if base not in names:
                continue
            created_families.add(family.name)
            created[base] = {tuple(sorted(s.labels.items())): float(s.value) for s in family.samples}
        return created, created_families

    def _start(self, key: Any, value: float, now_ns: int, first_seen: int, created: float | None) -> int:
        created_ns = int(created * 1e9) if created else None
        return self.starts.start(key, value, now_ns, first_seen, created_ns)

    def _raw(
        self, family: Any, series: list[_Series], identity: dict[str, str], now_ns: int, first_seen: int
    ) -> list[Metric]:
        name, typ = family.name, family.type
        unit = getattr(family, "unit", "") or ""
        description = family.documentation or ""
        if typ in ("histogram", "gaugehistogram"):
            points = [
                p
                for s in series
                if (p := self._histogram_point((name, s.labels), s, {**identity, **dict(s.labels)}, now_ns, first_seen))
            ]
            return [Metric(name, description, unit, Histogram(points, CUMULATIVE))] if points else []
        if typ == "summary":
            # The SDK's data model has no summary: its count and sum leave as counters, its quantiles as
            # a gauge with a `quantile` attribute.
            quantiles, counts, sums = [], [], []
            for s in series:
                attrs = {**identity, **dict(s.labels)}
                quantiles.extend(
                    NumberDataPoint({**attrs, "quantile": repr(q)}, 0, now_ns, v) for q, v in s.buckets if finite(v)
                )
                if finite(s.count) and finite(s.sum):
                    start = self._start((name, s.labels), s.count, now_ns, first_seen, s.created)
                    counts.append(NumberDataPoint(attrs, start, now_ns, s.count))
                    sums.append(NumberDataPoint(attrs, start, now_ns, s.sum))
            out = [Metric(name, description, unit, Gauge(quantiles))] if quantiles else []
            if counts:
                out.append(Metric(f"{name}_count", description, "", Sum(counts, CUMULATIVE, True)))
                out.append(Metric(f"{name}_sum", description, unit, Sum(sums, CUMULATIVE, True)))
            return out
        if typ == "counter":
            points = []
            for s in series:
                if not finite(s.value):
                    continue
                start = self._start((name, s.labels), s.value, now_ns, first_seen, s.created)
                points.append(NumberDataPoint({**identity, **dict(s.labels)}, start, now_ns, s.value))
            return [Metric(name, description, unit, Sum(points, CUMULATIVE, True))] if points else []
        points = [
            NumberDataPoint({**identity, **dict(s.labels)}, 0, now_ns, s.value) for s in series if finite(s.value)
        ]
        return [Metric(name, description, unit, Gauge(points))] if points else []

    def _histogram_point(
        self, key: Any, s: _Series, attrs: dict[str, str], now_ns: int, first_seen: int, scale: float = 1.0
    ) -> HistogramDataPoint | None:
        if not s.buckets or not finite(s.sum):
            return None
        bounds, counts, total = histogram_parts(s.buckets, s.count)
        start = self._start(key, total, now_ns, first_seen, s.created)
        if scale != 1.0:
            bounds = [b * scale for b in bounds]
        return HistogramDataPoint(attrs, start, now_ns, total, s.sum * scale, counts, bounds, None, None)

    def _common(
        self,
        engine: Engine,
        grouped: dict[str, tuple[Any, list[_Series]]],
        identity: dict[str, str],
        now_ns: int,
        first_seen: int,
        totals: dict[n.Metric, float],
    ) -> list[Metric]:
        numbers: dict[n.Metric, dict[Labels, list[Any]]] = {}  # target -> attrs -> [value, start, attrs]
        histograms: dict[n.Metric, list[HistogramDataPoint]] = {}
        for rule in engine.rules:
            found = grouped.get(rule.source)
            if found is None:
                continue
            family, series = found
            match = dict(rule.match)
            renames = dict(rule.labels)
            spec = rule.target
            for s in series:
                labels = dict(s.labels)
                if any(labels.get(k) != v for k, v in match.items()):
                    continue
                attrs = dict(identity)
                for key, value in labels.items():
                    if key not in match:
                        attrs[renames.get(key, key)] = value
                attrs.update(rule.constant)
                if spec.kind is n.Kind.HISTOGRAM:
                    if family.type not in ("histogram", "gaugehistogram"):
                        continue
                    point = self._histogram_point(
                        (family.name, s.labels), s, attrs, now_ns, first_seen, scale=rule.scale
                    )
                    if point is not None:
                        histograms.setdefault(rule.target, []).append(point)
                    continue
                if rule.part is Part.SUM:
                    value = s.sum * rule.scale
                    start = self._start((family.name, s.labels, "sum"), value, now_ns, first_seen, s.created)
                else:
                    value = s.value * rule.scale
                    start = (
                        self._start((family.name, s.labels), s.value, now_ns, first_seen, s.created)
                        if spec.kind is n.Kind.COUNTER
                        else 0
                    )
                if not finite(value):
                    continue
                key = tuple(sorted(attrs.items()))
                slot = numbers.setdefault(rule.target, {}).get(key)
                if slot is None:
                    numbers[rule.target][key] = [value, start, attrs]
                else:  # two engine series folded onto one common series: add them
                    slot[0] += value
                    slot[1] = min(slot[1], start) if start else slot[1]
        out: list[Metric] = []
        for spec, by_attrs in numbers.items():
            counter = spec.kind is n.Kind.COUNTER
            points = [NumberDataPoint(a, start if counter else 0, now_ns, v) for v, start, a in by_attrs.values()]
            totals[spec] = sum(p.value for p in points)
            data: Any = Sum(points, CUMULATIVE, True) if counter else Gauge(points)
            out.append(Metric(spec.name, spec.description, spec.unit, data))
        for spec, points in histograms.items():
            out.append(Metric(spec.name, spec.description, spec.unit, Histogram(points, CUMULATIVE)))
        return out

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            event(log, "scrape_warning", level=logging.WARNING, endpoint=self.endpoint, problem=message)


def load_of(common: dict[n.Metric, float], kv_usage: float | None = None) -> Load | None:
    if n.LLM_RUNNING not in common and n.LLM_WAITING not in common:
        return None
    return Load(
        running=common.get(n.LLM_RUNNING, 0.0),
        waiting=common.get(n.LLM_WAITING, 0.0),
        kv_cache_usage=kv_usage if kv_usage is not None else common.get(n.LLM_KV_USAGE, 0.0),
    )


# ---- fetching --------------------------------------------------------------------------------------


class Target:
    """One `/metrics` URL: a kept-alive connection, its converter, and its last state for logs."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port
        self._https = parts.scheme == "https"
        self._path = (parts.path or "/metrics") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self.converter = Converter(url)
        self._conn: http.client.HTTPConnection | None = None
        self._was_ok: bool | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def fetch(self) -> tuple[str, str]:
        conn = self._connection()
        try:
            conn.request("GET", self._path, headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
            response = conn.getresponse()
            body = response.read(MAX_BODY_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if response.status != 200:
            raise ScrapeError(f"HTTP {response.status}")
        if len(body) > MAX_BODY_BYTES:
            self.close()
            raise ScrapeError(f"body larger than {MAX_BODY_BYTES} bytes")
        if response.getheader("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body.decode("utf-8", errors="replace"), response.getheader("Content-Type", "")

    def scrape(self) -> ScrapeResult:
        started = time.perf_counter()
        now_ns = time.time_ns()
        try:
            text, content_type = self.fetch()
            families = parse(text, content_type)
            metrics, engine, common = self.converter.convert(families, now_ns)
        except ScrapeError as exc:
            result = ScrapeResult(self.url, now_ns, time.perf_counter() - started, False, error=str(exc))
        except ValueError as exc:  # the parser's complaint about malformed exposition text
            result = ScrapeResult(self.url, now_ns, time.perf_counter() - started, False, error=f"parse: {exc}")
        else:
            kv = self._kv_usage(metrics)
            result = ScrapeResult(
                self.url,
                now_ns,
                time.perf_counter() - started,
                True,
                engine.name if engine else None,
                metrics,
                load_of(common, kv),
                common=common,
            )
        self._log_change(result)
        return result

    @staticmethod
    def _kv_usage(metrics: Iterable[Metric]) -> float | None:
        """The fullest KV cache among the engine's series (summing fractions would mean nothing)."""
        for metric in metrics:
            if metric.name == n.LLM_KV_USAGE.name:
                return max((p.value for p in metric.data.data_points), default=None)
        return None

    def _log_change(self, result: ScrapeResult) -> None:
        if result.ok and self._was_ok is not True:
            event(log, "scrape_up", endpoint=self.url, engine=result.engine or "unknown")
        elif not result.ok and self._was_ok is not False:
            event(log, "scrape_down", level=logging.WARNING, endpoint=self.url, error=result.error)
        self._was_ok = result.ok

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ScrapeLoop:
    """Scrapes one target every `interval_s` on its own thread; results wait for the next cycle."""

    def __init__(self, target: Target, interval_s: float) -> None:
        self.target = target
        self.interval_s = interval_s
        self._results: deque[ScrapeResult] = deque(maxlen=8)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"scrape {target.url}", daemon=True)
        self.last: ScrapeResult | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                result = self.target.scrape()
            except Exception as exc:  # a bug in conversion must not end scraping: report it as a failed scrape
                log.exception("scrape_failed")
                result = ScrapeResult(self.target.url, time.time_ns(), 0.0, False, error=f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._results.append(result)
                self.last = result
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a slow target): skip ahead rather than scrape back to back
                next_at = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def take(self) -> list[ScrapeResult]:
        with self._lock:
            results = list(self._results)
            self._results.clear()
        return results

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.target.timeout_s + 1)
        self.target.close()
