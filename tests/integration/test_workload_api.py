"""The reference workload over real HTTP on loopback: OpenAI API, metrics, faults, shedding, restarts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.workload_server import WorkloadServer
from tests.local import ROOT
from workload.metrics import ITL_BUCKETS, REQUEST_BUCKETS, TTFT_BUCKETS


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkloadServer]:
    server = WorkloadServer(
        tmp_path_factory.mktemp("workload") / "workload.log", "--stall-after", "1", "--num-blocks", "64"
    ).start()
    yield server
    server.stop()


@pytest.fixture
def wl(workload: WorkloadServer) -> Iterator[WorkloadServer]:
    yield workload
    workload.control("DELETE", "fault")
    workload.control("POST", "shed", json={"fraction": 0})


def test_completion(wl: WorkloadServer) -> None:
    answer = wl.complete("Hello", 8)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "text_completion" and body["model"] == "vigil-tiny-lm"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and choice["text"].replace("\n", "").isprintable()
    assert 0 < len(choice["text"]) <= 8  # one byte per token; an end-of-text token (ignored) decodes to nothing
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14}


def test_streaming_completion_is_server_sent_events(wl: WorkloadServer) -> None:
    body = {
        "prompt": "Hi",
        "max_tokens": 5,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{wl.url}/v1/completions", json=body, timeout=60) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 5 + ["length"]
    assert all(len(c["choices"][0]["text"]) <= 1 for c in chunks[:5])
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_models_and_health(wl: WorkloadServer) -> None:
    models = httpx.get(f"{wl.url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["vigil-tiny-lm"]
    health = httpx.get(f"{wl.url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["device"] == "cpu"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prompt": ["a", "b"]}, 400, "exactly one prompt"),
        ({"prompt": "a", "n": 2}, 400, "n:"),
        ({"prompt": "a", "max_tokens": 0}, 400, "max_tokens"),
        ({"prompt": "a", "max_tokens": 5000}, 400, "exceeds the model's context"),
        ({"prompt": "a", "temperature": -1}, 400, "temperature"),
        ({"prompt": "a", "model": "gpt-4"}, 404, "does not exist"),
        ({"max_tokens": 3}, 400, "prompt"),
    ],
)
def test_bad_requests_get_openai_style_errors(wl: WorkloadServer, body: dict, status: int, message: str) -> None:
    answer = httpx.post(f"{wl.url}/v1/completions", json=body)
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]


def test_metrics_have_vllm_names_types_labels_and_buckets(wl: WorkloadServer) -> None:
    assert wl.complete("Hello", 4).status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{wl.url}/metrics").text)}
    expected = {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:num_preemptions": "counter",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:request_success": "counter",
        "vllm:iteration_tokens_total": "histogram",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_queue_time_seconds": "histogram",
        "vllm:request_prefill_time_seconds": "histogram",
        "vllm:request_decode_time_seconds": "histogram",
        "vigil_workload_step_duration_seconds": "histogram",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert sample.labels["model_name"] == "vigil-tiny-lm" and sample.labels["engine"] == "0", name

    def bounds(name: str) -> tuple[float, ...]:
        return tuple(
            float(s.labels["le"])
            for s in families[name].samples
            if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
        )

    assert bounds("vllm:time_to_first_token_seconds") == TTFT_BUCKETS
    assert TTFT_BUCKETS[:3] == (0.001, 0.005, 0.01) and TTFT_BUCKETS[-1] == 2560.0
    assert bounds("vllm:inter_token_latency_seconds") == ITL_BUCKETS and ITL_BUCKETS[-1] == 80.0
    assert bounds("vllm:e2e_request_latency_seconds") == REQUEST_BUCKETS and REQUEST_BUCKETS[-1] == 7680.0
    samples = wl.metrics()
    assert samples["vllm:prompt_tokens_total"] >= 6 and samples["vllm:generation_tokens_total"] >= 4
    assert samples["vllm:request_success_total{finished_reason=length}"] >= 1
    assert not any(key.endswith("_created") for key in samples), "vLLM exposes no _created series"


def test_promtool_accepts_the_metrics(wl: WorkloadServer) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not found: install Debian's prometheus package (.ci/run does)")
    text = httpx.get(f"{wl.url}/metrics").text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    # Exit 1 is a parse error; 3 means lint findings only. vLLM's own names draw two lints (the
    # recording-rule colon, and `_total` on the iteration-tokens histogram): we keep its names, as
    # dashboards depend on them, and allow exactly those findings and nothing else.
    assert check.returncode in (0, 3), check.stdout + check.stderr
    problems = [line for line in (check.stdout + check.stderr).splitlines() if line.strip()]
    inherited = [
        p
        for p in problems
        if p.startswith("vllm:")
        and (
            p.endswith("metric names should not contain ':'")
            or p == 'vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix'
        )
    ]
    assert problems == inherited, [p for p in problems if p not in inherited]
    assert inherited, "promtool read the metrics"


def test_latency_fault_moves_inter_token_latency(wl: WorkloadServer) -> None:
    before = wl.metrics()
    assert wl.control("POST", "fault", json={"kind": "latency", "delay_ms": 80, "duration_s": 60}).status_code == 200
    assert wl.complete("Hello", 6).status_code == 200
    after = wl.metrics()
    gaps = after["vllm:inter_token_latency_seconds_count"] - before["vllm:inter_token_latency_seconds_count"]
    spent = after["vllm:inter_token_latency_seconds_sum"] - before["vllm:inter_token_latency_seconds_sum"]
    assert gaps == 5 and spent / gaps >= 0.08
    assert after["vigil_workload_faults_active{kind=latency}"] == 1


def test_errors_fault_fails_requests_with_500_and_counts_them(wl: WorkloadServer) -> None:
    before = wl.metrics().get("vllm:request_success_total{finished_reason=error}", 0)
    wl.control("POST", "fault", json={"kind": "errors", "rate": 1.0})
    answer = wl.complete("Hello", 4)
    assert answer.status_code == 500 and "errors fault" in answer.json()["error"]["message"]
    assert wl.metrics()["vllm:request_success_total{finished_reason=error}"] == before + 1
    wl.control("DELETE", "fault", params={"kind": "errors"})
    assert wl.complete("Hello", 4).status_code == 200


def test_stall_fault_makes_health_fail_while_http_still_answers(wl: WorkloadServer) -> None:
    wl.control("POST", "fault", json={"kind": "stall"})
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(wl.complete("Hello", 4)))
    sender.start()
    time.sleep(1.6)
    health = httpx.get(f"{wl.url}/health")
    assert health.status_code == 503 and health.json()["status"] == "stalled"
    assert wl.metrics()["vllm:num_requests_waiting"] == 1
    wl.control("DELETE", "fault")
    sender.join(30)
    assert answers[0].status_code == 200, "the stalled request completes once the scheduler moves again"
    assert httpx.get(f"{wl.url}/health").status_code == 200


def test_kv_pressure_fault_storms_preemptions_and_loses_nothing(wl: WorkloadServer) -> None:
    before = wl.metrics()["vllm:num_preemptions_total"]
    wl.control("POST", "fault", json={"kind": "kv_pressure", "fraction": 0.85, "duration_s": 120})
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(wl.complete("x" * 20, 60))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [a.status_code for a in answers] == [200] * 6
    assert all(a.json()["usage"]["completion_tokens"] == 60 for a in answers)
    assert wl.metrics()["vllm:num_preemptions_total"] > before


def test_shedding_and_restart_lose_no_accepted_request(wl: WorkloadServer) -> None:
    wl.control("POST", "shed", json={"fraction": 0.5})
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(wl.complete("Hello", 30))) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    restart = wl.control("POST", "restart", json={"drain_timeout_s": 0.2})
    for t in threads:
        t.join(60)
    assert restart.status_code == 200
    assert len(answers) == 16, "every request got an answer"
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 429, 503}
    assert 429 in codes, "half the requests should have been shed"
    for answer in answers:
        if answer.status_code == 200:
            assert answer.json()["usage"]["completion_tokens"] == 30
        else:
            assert answer.json()["error"]["message"]
            assert "Retry-After" in answer.headers or answer.status_code == 503
    assert httpx.get(f"{wl.url}/health").status_code == 200


def test_crash_fault_kills_the_engine_until_restart(wl: WorkloadServer) -> None:
    wl.control("POST", "fault", json={"kind": "crash"})
    time.sleep(0.3)
    health = httpx.get(f"{wl.url}/health")
    assert health.status_code == 503 and health.json()["status"] == "dead"
    assert "out of memory" in health.json()["error"] and health.json()["restart"].startswith("manual")
    assert wl.complete("Hello", 4).status_code == 503
    assert wl.metrics()["vigil_workload_engine_alive"] == 0
    # scrapers see the target down, as a vLLM whose dead engine took its server with it (EngineDown)
    assert httpx.get(f"{wl.url}/metrics").status_code == 503
    assert wl.control("POST", "restart").status_code == 200
    assert httpx.get(f"{wl.url}/metrics").status_code == 200
    assert httpx.get(f"{wl.url}/health").status_code == 200
    assert wl.complete("Hello", 4).status_code == 200


def test_control_config_changes_limits_and_the_kv_pool(wl: WorkloadServer) -> None:
    bad = wl.control("PATCH", "config", json={"max_num_seqs": 0})
    assert bad.status_code == 400 and "max_num_seqs" in bad.json()["error"]["message"]
    assert wl.control("PATCH", "config", json={"bogus": 1}).status_code == 400
    too_small = wl.control("PATCH", "config", json={"max_num_batched_tokens": 512})
    assert too_small.status_code == 400 and "at least the model's context" in too_small.json()["error"]["message"]
    assert wl.control("PATCH", "config", json={"num_blocks": 10_000_000}).status_code == 400
    changed = wl.control("PATCH", "config", json={"max_num_seqs": 4, "num_blocks": 48}).json()
    assert changed["max_num_seqs"] == 4 and changed["num_blocks"] == 48 and changed["restarted"]
    assert wl.control("GET", "config").json()["num_blocks"] == 48
    wl.control("PATCH", "config", json={"max_num_seqs": 32, "num_blocks": 64})


def test_control_api_needs_the_token_when_one_is_set(tmp_path: Path) -> None:
    server = WorkloadServer(tmp_path / "wl.log", env={"VIGIL_CONTROL_TOKEN": "s3cret"}).start()
    try:
        assert server.control("GET", "config").status_code == 401
        assert server.control("GET", "config", token="wrong").status_code == 401
        assert server.control("POST", "fault", token="wrong", json={"kind": "crash"}).status_code == 401
        assert server.control("GET", "config", token="s3cret").status_code == 200
        assert server.complete("Hi", 2).status_code == 200, "completions need no control token"
    finally:
        server.stop()


def test_workload_refuses_a_public_address_without_a_token() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "workload", "--host", "0.0.0.0", "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1 and "VIGIL_CONTROL_TOKEN" in out.stderr and "--host 0.0.0.0" in out.stderr


def loadgen(url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", "loadgen", "--url", url, *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_loadgen_reports_what_vllms_benchmark_reports(wl: WorkloadServer) -> None:
    out = loadgen(
        wl.url,
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--prompt-len",
        "16",
        "--output-len",
        "8",
        "--slo",
        "ttft_ms=60000",
        "tpot_ms=60000",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["successful_requests"] > 0 and data["failed_requests"] == 0
    assert data["total_output_tokens"] == 8 * data["successful_requests"]
    assert data["total_input_tokens"] == 16 * data["successful_requests"]
    assert data["request_goodput"] == pytest.approx(data["request_throughput"])
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        assert set(data[key]) == {"mean", "median", "p99"} and data[key]["mean"] > 0
    text = loadgen(wl.url, "--rate", "5", "--duration", "1", "--output-len", "4")
    assert "Serving Benchmark Result" in text.stdout and "P99 TTFT (ms):" in text.stdout
    bad = loadgen(wl.url, "--rate", "1", "--duration", "1", "--slo", "ttft=5")
    assert bad.returncode == 1 and "--slo 'ttft=5'" in bad.stderr


# -- hostile input: one request never stops the engine for everyone (issue 7) ----------------------


def assert_still_serving(wl: WorkloadServer) -> None:
    answer = wl.complete("after", 3)
    assert answer.status_code == 200, answer.text
    assert httpx.get(f"{wl.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"prompt":"hi","max_tokens":3,"seed":18446744073709551616}', "seed"),  # the request that killed the engine
        ('{"prompt":"hi","max_tokens":3,"seed":-1}', "seed"),
        ('{"prompt":"hi","max_tokens":3,"temperature":NaN}', "temperature"),
        ('{"prompt":"hi","max_tokens":3,"temperature":Infinity}', "temperature"),
        ('{"prompt":"hi","max_tokens":1000000000000000000000000000000}', "max_tokens"),
    ],
)
def test_out_of_range_numbers_get_400_naming_the_field(wl: WorkloadServer, raw: str, field: str) -> None:
    answer = httpx.post(
        f"{wl.url}/v1/completions", content=raw, headers={"content-type": "application/json"}, timeout=30
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field and error["message"].startswith(f"{field}:")
    assert_still_serving(wl)


def test_the_largest_seed_torch_takes_is_served(wl: WorkloadServer) -> None:
    answer = wl.complete("hi", 3, seed=2**63 - 1, temperature=0.9)
    assert answer.status_code == 200, answer.text


def test_a_client_that_disconnects_from_a_non_streaming_request_is_aborted(wl: WorkloadServer) -> None:
    # 20 ms a step makes each request take 6 s, so the clients are long gone before any finishes
    wl.control("POST", "fault", json={"kind": "latency", "delay_ms": 20})
    before = wl.metrics()
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):
            wl.complete("x", 300, timeout=0.3)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = wl.metrics()
        if now["vllm:num_requests_running"] + now["vllm:num_requests_waiting"] == 0:
            break
        time.sleep(0.1)
    after = wl.metrics()

    def finished(reason: str) -> float:
        key = f"vllm:request_success_total{{finished_reason={reason}}}"
        return after.get(key, 0) - before.get(key, 0)

    assert finished("abort") == 3 and finished("length") == 0, "the requests were aborted, not run to the end"
    wl.control("DELETE", "fault")
    assert_still_serving(wl)


def test_clearing_a_latency_fault_ends_the_current_sleep(wl: WorkloadServer) -> None:
    wl.control("POST", "fault", json={"kind": "latency", "delay_ms": 60_000})
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(wl.complete("Hello", 3)))
    sender.start()
    time.sleep(1.0)  # the engine is inside its minute-long decode delay
    assert wl.control("DELETE", "fault").status_code == 200
    sender.join(20)
    assert not sender.is_alive(), "the request still waited out the cleared delay"
    assert answers[0].status_code == 200


def rss_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for {pid}")


def test_an_oversize_body_is_refused_before_it_is_read(wl: WorkloadServer) -> None:
    assert wl.proc is not None
    rss_before = rss_mb(wl.proc.pid, "VmRSS:")
    body = json.dumps({"prompt": "x" * (32 << 20), "max_tokens": 3}).encode()
    declared = httpx.post(
        f"{wl.url}/v1/completions", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: the streaming cap
    streamed = httpx.post(
        f"{wl.url}/v1/completions", content=chunks, headers={"content-type": "application/json"}, timeout=60
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == 413 and "too large" in error["message"]
    # before the cap a 64 MB prompt added 700 MB: parsing it is what costs, and it is never parsed now
    assert rss_mb(wl.proc.pid, "VmHWM:") - rss_before < 64
    assert_still_serving(wl)


def test_the_body_cap_passes_a_long_prompt_escaped_at_worst(wl: WorkloadServer) -> None:
    # 1000 tokens fill this server's 64-block KV cache; the default cap fits 2048 such bytes
    prompt = "\x01" * 1000  # each byte escaped by JSON as \u0001: six bytes per token
    body = json.dumps({"prompt": prompt, "max_tokens": 4, "ignore_eos": True})
    assert len(body) > 6 * 1000
    answer = httpx.post(
        f"{wl.url}/v1/completions", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
