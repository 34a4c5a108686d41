"""Engine detection and the rules that map each engine's families onto the common names."""

from __future__ import annotations

import pytest

from gpu_agent import engines
from vigil import names as n


@pytest.mark.parametrize(
    ("families", "engine"),
    [
        ({"vllm:num_requests_running", "process_start_time_seconds"}, "vllm"),
        ({"vigil_workload_steps", "vllm:num_requests_running"}, "vigil-workload"),  # first engine wins
        ({"sglang:num_running_reqs"}, "sglang"),
        ({"tgi_queue_size"}, "tgi"),
        ({"nv_trt_llm_request_metrics", "nv_inference_request_success"}, "tensorrt-llm"),
        ({"nv_inference_pending_request_count"}, "triton"),
    ],
)
def test_the_engine_is_told_by_its_family_names(families: set[str], engine: str) -> None:
    found = engines.detect_engine(families)
    assert found is not None and found.name == engine


def test_an_unknown_page_has_no_engine() -> None:
    assert engines.detect_engine({"python_gc_objects_collected", "http_requests"}) is None


def test_every_rule_feeds_a_common_llm_metric_of_the_catalogue() -> None:
    for engine in engines.ENGINES:
        assert engine.rules, engine.name
        for rule in engine.rules:
            assert rule.target in n.LLM_METRICS, (engine.name, rule.source)
            assert rule.source.startswith(engine.prefixes) or engine.name in ("vigil-workload", "tensorrt-llm")
            if rule.part is engines.Part.SUM:
                assert rule.target.kind is n.Kind.COUNTER
