"""Inference engines at a glance: per engine and endpoint, latency quantiles from the histogram
buckets, throughput, queue, KV cache, preemptions and error rate over a window.

Every engine's metrics arrive under the catalogue's common `llm.*` names (the agent's scraper maps
vLLM, TGI, SGLang, Triton and the workload onto them), so one set of windowed reads serves all of them;
an engine that lacks a metric (TGI has no TTFT) shows nothing for it. One read per figure, each
grouped by `llm.engine` and `llm.endpoint`: about a dozen small queries, independent of fleet size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vigil import names as n
from vigil.store.client import Store
from vigil.store.schema import SchemaContext
from vigil.store.window import Kind, WindowQuery, window_values

ENGINE_KEYS = (n.LLM_ENGINE, n.LLM_ENDPOINT)
ERROR_OUTCOMES = frozenset({"error"})  # an abort is the client leaving, not the engine failing


@dataclass
class EngineStats:
    engine: str
    endpoint: str
    values: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {n.LLM_ENGINE: self.engine, n.LLM_ENDPOINT: self.endpoint, **self.values}


def _figures(window_s: int) -> dict[str, WindowQuery]:
    def q(metric: str, kind: Kind, function: str, **kw: Any) -> WindowQuery:
        return WindowQuery(metric, kind, function, window_s, group_by=ENGINE_KEYS, **kw)  # type: ignore[arg-type]

    return {
        "ttft_p50": q(n.LLM_TTFT.name, "histogram", "quantile", quantile=0.5),
        "ttft_p99": q(n.LLM_TTFT.name, "histogram", "quantile", quantile=0.99),
        "itl_p50": q(n.LLM_ITL.name, "histogram", "quantile", quantile=0.5),
        "itl_p99": q(n.LLM_ITL.name, "histogram", "quantile", quantile=0.99),
        "tokens_per_s": q(n.LLM_TOKENS_GENERATED.name, "sum", "rate"),
        "running": q(n.LLM_RUNNING.name, "gauge", "last"),
        "waiting": q(n.LLM_WAITING.name, "gauge", "last"),
        "kv_cache_usage": q(n.LLM_KV_USAGE.name, "gauge", "last"),
        "preemptions": q(n.LLM_PREEMPTIONS.name, "sum", "increase"),
    }


def engine_stats(store: Store, now: float, window_s: int, ctx: SchemaContext) -> list[EngineStats]:
    """One row per (engine, endpoint) that reported any figure in the last `window_s` seconds."""
    engines: dict[tuple[str, str], EngineStats] = {}

    def row(labels: dict[str, str]) -> EngineStats:
        key = (labels[n.LLM_ENGINE], labels[n.LLM_ENDPOINT])
        return engines.setdefault(key, EngineStats(*key))

    for name, query in _figures(window_s).items():
        for value in window_values(store, query, now, ctx):
            row(value.labels).values[name] = value.value
    finished = WindowQuery(n.LLM_FINISHED.name, "sum", "rate", window_s, group_by=(*ENGINE_KEYS, n.OUTCOME))
    totals: dict[tuple[str, str], list[float]] = {}
    for value in window_values(store, finished, now, ctx):
        stats = row(value.labels)
        total = totals.setdefault((stats.engine, stats.endpoint), [0.0, 0.0])
        total[0] += value.value
        if value.labels[n.OUTCOME] in ERROR_OUTCOMES:
            total[1] += value.value
    for key, (all_rate, error_rate) in totals.items():
        engines[key].values["requests_per_s"] = all_rate
        engines[key].values["error_rate"] = error_rate / all_rate if all_rate > 0 else 0.0
    return sorted(engines.values(), key=lambda e: (e.engine, e.endpoint))
