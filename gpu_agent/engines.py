"""Which inference engine serves a `/metrics` page, and how its metrics map onto the common names.

One `Engine` per server (vLLM, SGLang, TGI, TensorRT-LLM, Triton and Vigil's reference
workload): the family-name prefixes that identify it, and `EngineRule`s that feed each common
`llm.*` metric of `vigil.names` from one of its families. The scraper (`gpu_agent.scrape`) applies
them; nothing here parses text or touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vigil import names as n


class Part(StrEnum):
    """Which part of a Prometheus family feeds a common metric."""

    VALUE = "value"  # a gauge's or counter's value, or a whole histogram
    SUM = "sum"  # a histogram's `_sum`, as a counter (TGI counts tokens only in histograms)


@dataclass(frozen=True)
class EngineRule:
    """One engine family (its name as `prometheus_client` parses it: counters without `_total`)
    feeding one common metric.

    `match` selects series by label value; `labels` renames labels onto common attributes (labels
    not named are kept as they are, except those in `match`); `constant` adds fixed attributes;
    `scale` converts units (Triton's milliseconds to seconds: histogram bounds and sums).
    """

    source: str
    target: n.Metric
    match: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    constant: tuple[tuple[str, str], ...] = ()
    scale: float = 1.0
    part: Part = Part.VALUE


@dataclass(frozen=True)
class Engine:
    name: str
    # A family whose name starts with one of these identifies the engine (first engine wins).
    prefixes: tuple[str, ...]
    rules: tuple[EngineRule, ...] = field(default=())


def _vllm_rules(prefix: str = "vllm:") -> tuple[EngineRule, ...]:
    labels = (("model_name", n.LLM_MODEL), ("engine", "llm.engine_index"))
    r = lambda source, target, **kw: EngineRule(f"{prefix}{source}", target, labels=labels, **kw)  # noqa: E731
    return (
        r("time_to_first_token_seconds", n.LLM_TTFT),
        r("inter_token_latency_seconds", n.LLM_ITL),
        r("time_per_output_token_seconds", n.LLM_ITL),  # before vLLM 0.10
        r("e2e_request_latency_seconds", n.LLM_E2E),
        r("request_queue_time_seconds", n.LLM_QUEUE_TIME),
        r("num_requests_running", n.LLM_RUNNING),
        r("num_requests_waiting", n.LLM_WAITING),
        r("kv_cache_usage_perc", n.LLM_KV_USAGE),
        r("gpu_cache_usage_perc", n.LLM_KV_USAGE),  # before vLLM 0.10
        r("num_preemptions", n.LLM_PREEMPTIONS),
        r("prompt_tokens", n.LLM_TOKENS_PROMPT),
        r("generation_tokens", n.LLM_TOKENS_GENERATED),
        r("prefix_cache_queries", n.LLM_PREFIX_QUERIES),
        r("prefix_cache_hits", n.LLM_PREFIX_HITS),
        EngineRule(
            f"{prefix}request_success",
            n.LLM_FINISHED,
            labels=(*labels, ("finished_reason", n.OUTCOME)),
        ),
    )


_SGL = (("model_name", n.LLM_MODEL),)
_TRITON = (("model", n.LLM_MODEL), ("version", "llm.model_version"))
_TRITON_RULES = (
    EngineRule("nv_inference_request_success", n.LLM_FINISHED, labels=_TRITON, constant=((n.OUTCOME, "success"),)),
    EngineRule(
        "nv_inference_request_failure",
        n.LLM_FINISHED,
        labels=(*_TRITON, ("reason", n.ERROR_TYPE)),
        constant=((n.OUTCOME, "error"),),
    ),
    EngineRule("nv_inference_first_response_histogram_ms", n.LLM_TTFT, labels=_TRITON, scale=1e-3),
)

ENGINES: tuple[Engine, ...] = (
    # Vigil's reference workload serves vLLM's names; its own families start with `vigil_workload`.
    Engine("vigil-workload", ("vigil_workload",), _vllm_rules()),
    Engine("vllm", ("vllm:",), _vllm_rules()),
    Engine(
        "sglang",
        ("sglang:",),
        (
            EngineRule("sglang:time_to_first_token_seconds", n.LLM_TTFT, labels=_SGL),
            EngineRule("sglang:inter_token_latency_seconds", n.LLM_ITL, labels=_SGL),
            EngineRule("sglang:time_per_output_token_seconds", n.LLM_ITL, labels=_SGL),
            EngineRule("sglang:e2e_request_latency_seconds", n.LLM_E2E, labels=_SGL),
            EngineRule("sglang:num_running_reqs", n.LLM_RUNNING, labels=_SGL),
            EngineRule("sglang:num_queue_reqs", n.LLM_WAITING, labels=_SGL),
            EngineRule("sglang:token_usage", n.LLM_KV_USAGE, labels=_SGL),
            EngineRule("sglang:prompt_tokens", n.LLM_TOKENS_PROMPT, labels=_SGL),
            EngineRule("sglang:generation_tokens", n.LLM_TOKENS_GENERATED, labels=_SGL),
            EngineRule("sglang:num_requests", n.LLM_FINISHED, labels=_SGL, constant=((n.OUTCOME, "success"),)),
            EngineRule("sglang:num_aborted_requests", n.LLM_FINISHED, labels=_SGL, constant=((n.OUTCOME, "abort"),)),
        ),
    ),
    Engine(
        "tgi",
        ("tgi_",),
        (
            EngineRule("tgi_request_mean_time_per_token_duration", n.LLM_ITL),
            EngineRule("tgi_request_duration", n.LLM_E2E),
            EngineRule("tgi_request_queue_duration", n.LLM_QUEUE_TIME),
            EngineRule("tgi_batch_current_size", n.LLM_RUNNING),
            EngineRule("tgi_queue_size", n.LLM_WAITING),
            EngineRule("tgi_request_input_length", n.LLM_TOKENS_PROMPT, part=Part.SUM),
            EngineRule("tgi_request_generated_tokens", n.LLM_TOKENS_GENERATED, part=Part.SUM),
            EngineRule("tgi_request_success", n.LLM_FINISHED, constant=((n.OUTCOME, "success"),)),
            EngineRule(
                "tgi_request_failure", n.LLM_FINISHED, labels=(("err", n.ERROR_TYPE),), constant=((n.OUTCOME, "error"),)
            ),
        ),
    ),
    Engine(
        "tensorrt-llm",
        ("nv_trt_llm_",),
        (
            EngineRule(
                "nv_trt_llm_request_metrics", n.LLM_RUNNING, match=(("request_type", "active"),), labels=_TRITON
            ),
            EngineRule(
                "nv_trt_llm_request_metrics", n.LLM_WAITING, match=(("request_type", "waiting"),), labels=_TRITON
            ),
            EngineRule(
                "nv_trt_llm_kv_cache_block_metrics",
                n.LLM_KV_USAGE,
                match=(("kv_cache_block_type", "fraction"),),
                labels=_TRITON,
            ),
            *_TRITON_RULES,
        ),
    ),
    Engine(
        "triton",
        ("nv_inference_",),
        (
            EngineRule("nv_inference_pending_request_count", n.LLM_WAITING, labels=_TRITON),
            *_TRITON_RULES,
        ),
    ),
)


def detect_engine(family_names: list[str] | tuple[str, ...] | set[str]) -> Engine | None:
    """The first engine (in `ENGINES` order) one of whose prefixes starts some family name."""
    for engine in ENGINES:
        if any(name.startswith(engine.prefixes) for name in family_names):
            return engine
    return None
