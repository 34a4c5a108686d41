"""Engine /metrics texts (recorded, in tests/fixtures/metrics) → raw metrics and the common names."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, Sum

from gpu_agent.scrape import Converter, histogram_parts, parse
from vigil import names as n

FIXTURES = Path(__file__).parents[2] / "fixtures" / "metrics"
T0 = 1_800_000_000 * 10**9
ENDPOINT = "http://10.0.0.7:8000/metrics"


def convert(text: str, converter: Converter | None = None, now_ns: int = T0) -> tuple[dict[str, Metric], str | None]:
    converter = converter or Converter(ENDPOINT)
    metrics, engine, _ = converter.convert(parse(text), now_ns)
    by_name = {m.name: m for m in metrics}
    assert len(by_name) == len(metrics), "a metric name was emitted twice in one scrape"
    return by_name, engine.name if engine else None


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def points(metric: Metric, **match: str) -> list[Any]:
    return [p for p in metric.data.data_points if all(p.attributes.get(k) == v for k, v in match.items())]


def one(metric: Metric, **match: str) -> Any:
    (point,) = points(metric, **match)
    return point


COMMON = {
    "vllm.txt": {
        n.LLM_TTFT,
        n.LLM_ITL,
        n.LLM_E2E,
        n.LLM_QUEUE_TIME,
        n.LLM_RUNNING,
        n.LLM_WAITING,
        n.LLM_KV_USAGE,
        n.LLM_PREEMPTIONS,
        n.LLM_TOKENS_PROMPT,
        n.LLM_TOKENS_GENERATED,
        n.LLM_FINISHED,
        n.LLM_PREFIX_QUERIES,
        n.LLM_PREFIX_HITS,
    },
    "sglang.txt": {
        n.LLM_TTFT,
        n.LLM_ITL,
        n.LLM_E2E,
        n.LLM_RUNNING,
        n.LLM_WAITING,
        n.LLM_KV_USAGE,
        n.LLM_TOKENS_PROMPT,
        n.LLM_TOKENS_GENERATED,
        n.LLM_FINISHED,
    },
    "tgi.txt": {
        n.LLM_ITL,
        n.LLM_E2E,
        n.LLM_QUEUE_TIME,
        n.LLM_RUNNING,
        n.LLM_WAITING,
        n.LLM_TOKENS_PROMPT,
        n.LLM_TOKENS_GENERATED,
        n.LLM_FINISHED,
    },
    "triton-trtllm.txt": {n.LLM_TTFT, n.LLM_RUNNING, n.LLM_WAITING, n.LLM_KV_USAGE, n.LLM_FINISHED},
}
ENGINE = {"vllm.txt": "vllm", "sglang.txt": "sglang", "tgi.txt": "tgi", "triton-trtllm.txt": "tensorrt-llm"}


@pytest.mark.parametrize("name", sorted(COMMON))
def test_each_engine_is_detected_and_parsed_to_the_common_names(name: str) -> None:
    metrics, engine = convert(fixture(name))
    assert engine == ENGINE[name]
    common = {m for m in n.LLM_METRICS if m.name in metrics}
    assert common == COMMON[name]
    for spec in common:
        metric = metrics[spec.name]
        assert metric.unit == spec.unit and metric.description == spec.description
        kind = {n.Kind.GAUGE: Gauge, n.Kind.COUNTER: Sum, n.Kind.HISTOGRAM: Histogram}[spec.kind]
        assert isinstance(metric.data, kind), spec.name
        for p in metric.data.data_points:
            assert p.attributes[n.LLM_ENGINE] == ENGINE[name]
            assert p.attributes[n.LLM_ENDPOINT] == ENDPOINT
            assert p.time_unix_nano == T0


def test_vllm_values_labels_and_outcomes() -> None:
    metrics, _ = convert(fixture("vllm.txt"))
    model = {n.LLM_MODEL: "meta-llama/Llama-3.1-8B-Instruct"}
    assert one(metrics[n.LLM_RUNNING.name], **model).value == 12
    assert one(metrics[n.LLM_WAITING.name]).value == 3
    assert one(metrics[n.LLM_KV_USAGE.name]).value == 0.4375
    assert one(metrics[n.LLM_PREEMPTIONS.name]).value == 7
    assert one(metrics[n.LLM_TOKENS_PROMPT.name]).value == 182400
    assert one(metrics[n.LLM_TOKENS_GENERATED.name]).value == 96321
    finished = {p.attributes[n.OUTCOME]: p.value for p in metrics[n.LLM_FINISHED.name].data.data_points}
    assert finished == {"stop": 402, "length": 51, "abort": 4, "error": 0}
    assert metrics[n.LLM_FINISHED.name].data.is_monotonic
    # raw metrics keep the engine's names (counters without _total, as OTel's Prometheus receiver does) and labels
    raw = one(metrics["vllm:request_success"], finished_reason="stop")
    assert raw.value == 402 and raw.attributes["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "vllm:num_requests_running" in metrics and "process_resident_memory_bytes" in metrics
    assert not any(name.endswith("_created") for name in metrics)  # folded into start times


def test_older_vllm_names_map_to_the_same_common_names() -> None:
    old, _ = convert(fixture("vllm-0.6.txt"))
    assert "vllm:gpu_cache_usage_perc" in old and "vllm:time_per_output_token_seconds" in old
    assert one(old[n.LLM_KV_USAGE.name]).value == 0.4375
    assert one(old[n.LLM_ITL.name]).count > 0


def test_vigil_workload_is_told_from_vllm_by_its_own_families() -> None:
    text = fixture("vllm.txt") + '# TYPE vigil_workload_info gauge\nvigil_workload_info{model="tiny"} 1.0\n'
    metrics, engine = convert(text)
    assert engine == "vigil-workload"
    assert one(metrics[n.LLM_RUNNING.name]).value == 12


def test_histograms_stay_histograms_with_their_buckets() -> None:
    text = fixture("vllm.txt")
    metrics, _ = convert(text)
    ttft = one(metrics[n.LLM_TTFT.name])
    bounds = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
              80.0, 160.0, 640.0, 2560.0]  # fmt: skip
    assert list(ttft.explicit_bounds) == bounds
    assert len(ttft.bucket_counts) == len(bounds) + 1
    assert sum(ttft.bucket_counts) == ttft.count == 457
    cumulative = {
        float(m.group(1)): int(float(m.group(2)))
        for m in re.finditer(r'vllm:time_to_first_token_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)', text)
    }
    running = 0
    for bound, count in zip(bounds, ttft.bucket_counts, strict=False):
        running += count
        assert running == cumulative[bound]
    total_sum = float(re.search(r"vllm:time_to_first_token_seconds_sum\{[^}]*\} (\S+)", text).group(1))
    assert ttft.sum == pytest.approx(total_sum)
    assert ttft.min is None and ttft.max is None  # Prometheus does not know them; left unset, not invented
    assert metrics[n.LLM_TTFT.name].data.aggregation_temporality == 2  # cumulative
    created = float(re.search(r"vllm:time_to_first_token_seconds_created\{[^}]*\} (\S+)", text).group(1))
    assert ttft.start_time_unix_nano == int(created * 1e9)  # from the engine's _created


def test_triton_milliseconds_become_seconds_and_trtllm_selects_by_label() -> None:
    metrics, engine = convert(fixture("triton-trtllm.txt"))
    assert engine == "tensorrt-llm"
    ttft = one(metrics[n.LLM_TTFT.name])
    assert list(ttft.explicit_bounds) == [0.1, 0.5, 2.0, 5.0]
    raw = one(metrics["nv_inference_first_response_histogram_ms"])
    assert ttft.sum == pytest.approx(raw.sum / 1000)
    assert one(metrics[n.LLM_RUNNING.name]).value == 30  # request_type="active"
    assert one(metrics[n.LLM_WAITING.name]).value == 6  # request_type="waiting", not Triton's pending count
    assert one(metrics[n.LLM_KV_USAGE.name]).value == 0.75
    errors = points(metrics[n.LLM_FINISHED.name], outcome="error", **{n.LLM_MODEL: "ensemble"})
    assert {p.attributes[n.ERROR_TYPE]: p.value for p in errors} == {
        "REJECTED": 12,
        "CANCELED": 1,
        "BACKEND": 2,
        "OTHER": 0,
    }
    assert "nv_inference_request_success" in metrics  # the exposed name, not the parser's `_total`


def test_tgi_counts_tokens_from_its_histogram_sums() -> None:
    text = fixture("tgi.txt")
    metrics, _ = convert(text)
    total = float(re.search(r"^tgi_request_input_length_sum (\S+)$", text, re.M).group(1))
    prompt = one(metrics[n.LLM_TOKENS_PROMPT.name])
    assert prompt.value == pytest.approx(total)
    assert isinstance(metrics[n.LLM_TOKENS_PROMPT.name].data, Sum)
    failures = {p.attributes[n.ERROR_TYPE]: p.value for p in points(metrics[n.LLM_FINISHED.name], outcome="error")}
    assert failures == {"validation": 9, "overloaded": 4}
    assert one(metrics[n.LLM_FINISHED.name], outcome="success").value == 721


def bump(text: str, family: str, value: float) -> str:
    return re.sub(rf"^({re.escape(family)}(?:\{{[^}}]*\}})?) \S+$", rf"\g<1> {value}", text, flags=re.M)


def test_counter_reset_without_created_starts_the_series_again() -> None:
    converter = Converter(ENDPOINT)
    text = fixture("tgi.txt")  # TGI exposes no _created and no process start time
    first, _ = convert(text, converter, T0)
    start = one(first[n.LLM_FINISHED.name], outcome="success").start_time_unix_nano
    assert start == T0  # first sight
    second, _ = convert(bump(text, "tgi_request_success", 800), converter, T0 + 10**9)
    assert one(second[n.LLM_FINISHED.name], outcome="success").start_time_unix_nano == start
    restarted, _ = convert(bump(text, "tgi_request_success", 5), converter, T0 + 2 * 10**9)
    point = one(restarted[n.LLM_FINISHED.name], outcome="success")
    assert point.value == 5
    assert T0 + 10**9 < point.start_time_unix_nano <= T0 + 2 * 10**9  # the reset happened after the last reading
    raw = one(restarted["tgi_request_success"])
    assert raw.start_time_unix_nano == point.start_time_unix_nano
    assert converter.starts.resets == 1


def test_counter_reset_with_created_takes_the_new_created_time() -> None:
    converter = Converter(ENDPOINT)
    text = fixture("vllm.txt")
    convert(text, converter, T0)
    family = "vllm:num_preemptions"
    created = float(re.search(rf"^{family}_created\{{[^}}]*\}} (\S+)$", text, re.M).group(1))
    restarted = bump(bump(text, f"{family}_total", 1), f"{family}_created", created + 3600)
    metrics, _ = convert(restarted, converter, T0 + 10**9)
    point = one(metrics[n.LLM_PREEMPTIONS.name])
    assert point.value == 1
    assert point.start_time_unix_nano == int((created + 3600) * 1e9)


def test_histogram_reset_is_detected_by_its_count() -> None:
    converter = Converter(ENDPOINT)
    text = fixture("tgi.txt")
    convert(text, converter, T0)
    lines = []
    for line in text.splitlines():  # the engine restarted: one request since
        if line.startswith("tgi_request_duration"):
            name, value = line.rsplit(" ", 1)
            value = "0.5" if name.startswith("tgi_request_duration_sum") else ("1" if "+Inf" in name else "0")
            line = f"{name} {value}"
            if "_count" in name:
                line = f"{name} 1"
        lines.append(line)
    metrics, _ = convert("\n".join(lines) + "\n", converter, T0 + 10**9)
    e2e = one(metrics[n.LLM_E2E.name])
    assert e2e.count == 1 and sum(e2e.bucket_counts) == 1
    assert e2e.start_time_unix_nano > T0


def test_non_finite_values_are_dropped() -> None:
    text = (
        '# TYPE engine_gauge gauge\nengine_gauge{a="1"} NaN\nengine_gauge{a="2"} 4.0\n'
        "# TYPE engine_inf gauge\nengine_inf +Inf\n"
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} NaN\n'
    )
    metrics, engine = convert(text)
    assert engine == "vllm"
    assert [p.value for p in metrics["engine_gauge"].data.data_points] == [4.0]
    assert "engine_inf" not in metrics
    assert n.LLM_RUNNING.name not in metrics


def test_summaries_leave_as_count_sum_and_quantiles() -> None:
    text = (
        "# TYPE rpc_seconds summary\n"
        'rpc_seconds{quantile="0.5"} 0.2\nrpc_seconds{quantile="0.99"} NaN\n'
        "rpc_seconds_sum 12.5\nrpc_seconds_count 50\n"
    )
    metrics, _ = convert(text)
    assert [(p.attributes["quantile"], p.value) for p in metrics["rpc_seconds"].data.data_points] == [("0.5", 0.2)]
    assert one(metrics["rpc_seconds_count"]).value == 50
    assert one(metrics["rpc_seconds_sum"]).value == 12.5


def test_histogram_parts_repair_racy_expositions() -> None:
    bounds, counts, total = histogram_parts([(0.1, 5), (0.5, 4), (1.0, 9), (math.inf, 10)], 11)
    assert bounds == [0.1, 0.5, 1.0]
    assert counts == [5, 0, 4, 1]  # a bucket below its predecessor counts 0, never negative
    assert total == sum(counts) == 10  # the +Inf bucket is the total, so buckets and count agree
    assert histogram_parts([(1.0, 2)], 3) == ([1.0], [2, 1], 3)  # no +Inf bucket: _count is the total


def test_openmetrics_text_is_parsed_too() -> None:
    text = (
        "# TYPE vllm:num_preemptions counter\n"
        'vllm:num_preemptions_total{model_name="m"} 3\n'
        'vllm:num_preemptions_created{model_name="m"} 1700000000.5\n'
        "# EOF\n"
    )
    families = parse(text, "application/openmetrics-text; version=1.0.0")
    metrics, engine, _ = Converter(ENDPOINT).convert(families, T0)
    by_name = {m.name: m for m in metrics}
    point = one(by_name[n.LLM_PREEMPTIONS.name])
    assert engine is not None and engine.name == "vllm"
    assert point.value == 3 and point.start_time_unix_nano == 1_700_000_000_500_000_000
