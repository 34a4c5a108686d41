"""The GPU agent against a real `vigil up`: nothing lost while the collector is away, and `vigil up`'s own agent."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import VigilServer
from tests.local import ROOT

FIXTURE = ROOT / "tests/fixtures/metrics/vllm.txt"


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def agent(log: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "agent", *flags],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def engine() -> Iterator[str]:
    """A loopback /metrics serving the recorded vLLM text."""
    body = FIXTURE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    httpd.shutdown()


def test_nothing_is_lost_or_doubled_while_the_collector_is_away(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = VigilServer(data).start()
    restarted: VigilServer | None = None
    log = tmp_path / "agent.log"
    proc = agent(
        log,
        *("--collector", first.url, "--simulate", "4", "--interval", "0.2", "--cycles", "100"),
        *("--spool", str(tmp_path / "spool"), "--drain-timeout", "90"),
    )
    try:
        wait_for(lambda: first.metric_value("vigil_collector_requests_total", 'code="200"') >= 5, what="first exports")
        # Killed, not stopped: a request in flight may be stored without its answer reaching the agent,
        # which then replays it under the same idempotency key.
        first.stop(signal.SIGKILL)
        time.sleep(5)  # several seconds away; the agent keeps sampling and spools
        assert proc.poll() is None, log.read_text()
        restarted = VigilServer(data, port=first.port).start()
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        for server in (first, restarted):
            if server is not None and server.running():
                server.stop()

    agent_log = log.read_text()
    assert "event=export_failing" in agent_log and "event=export_recovered" in agent_log, agent_log
    stopped = next(line for line in agent_log.splitlines() if "event=agent_stopped" in line)
    assert "cycles=100 " in stopped and "batches_dropped=0 " in stopped and "left_in_spool=0 " in stopped
    assert "batches_replayed=0 " not in stopped  # the outage went through the spool
    rows = restarted.query(  # type: ignore[union-attr]
        "SELECT count(), uniqExact(Attributes['gpu.index'], TimeUnix), uniqExact(TimeUnix), "
        "uniqExact(Attributes['gpu.index']), any(ResourceAttributes['vigil.simulated']) "
        "FROM otel_metrics_gauge WHERE MetricName = 'gpu.utilization'"
    )
    assert rows == [[400, 400, 100, 4, "true"]]


def test_vigil_up_runs_a_simulated_agent_where_nvml_does_not_answer(tmp_path: Path, engine: str) -> None:
    data = tmp_path / "data"
    server = VigilServer(data, env={"VIGIL_INGEST_TOKENS": "tok-1,tok-2"}, flags=("--no-workload",)).start()
    try:
        control_file = data / "agent" / "control.url"
        wait_for(control_file.exists, what="the agent's control endpoint")
        control = control_file.read_text().strip()
        with urllib.request.urlopen(f"{control}/healthz", timeout=5) as r:
            health = json.loads(r.read())
        assert health["simulated"] is True and health["backend"] == "simulated"
        wait_for(lambda: server.metric_value("vigil_collector_points_accepted_total") > 0, what="the agent's points")
        request = urllib.request.Request(
            f"{control}/faults",
            data=json.dumps({"kind": "xid", "gpu": 2, "code": 48}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 201
        # a second agent, run by hand with a token, labels (from the environment) and an engine to scrape
        log = tmp_path / "agent.log"
        proc = agent(
            log,
            *("--collector", server.url, "--simulate", "1", "--cycles", "3"),
            *("--interval", "0.5", "--scrape", engine, "--scrape-interval", "0.2", "--hostname", "scrape-node"),
            env={"VIGIL_AGENT_TOKEN": "tok-2", "VIGIL_AGENT_LABELS": "team=inference,k8s.cluster.name=eu-1"},
        )
        assert proc.wait(timeout=60) == 0, log.read_text()
        accepted = server.metric_value("vigil_collector_points_accepted_total")
        wait_for(lambda: server.metric_value("vigil_collector_points_accepted_total") > accepted + 200, what="more")
    finally:
        server.stop()

    assert server.query(
        "SELECT ResourceAttributes['vigil.simulated'], ResourceAttributes['vigil.agent.backend'], "
        "uniqExact(Attributes['gpu.index']) FROM otel_metrics_gauge "
        "WHERE MetricName = 'gpu.utilization' AND ResourceAttributes['host.name'] != 'scrape-node' GROUP BY 1, 2"
    ) == [["true", "simulated", 4]]
    xid = server.query(
        "SELECT max(Value) FROM otel_metrics_sum WHERE MetricName = 'gpu.xid.errors' "
        "AND Attributes['xid'] = '48' AND Attributes['gpu.index'] = '2'"
    )
    assert xid == [[1.0]]
    (ttft,) = server.query(
        "SELECT Count, length(BucketCounts), arraySum(BucketCounts), ResourceAttributes['team'], "
        "ResourceAttributes['k8s.cluster.name'], Attributes['llm.engine'] FROM otel_metrics_histogram "
        "WHERE MetricName = 'llm.time_to_first_token' ORDER BY TimeUnix LIMIT 1"
    )
    assert ttft == [457, 23, 457, "inference", "eu-1", "vllm"]
    outcomes = server.query(
        "SELECT Attributes['outcome'], max(Value) FROM otel_metrics_sum WHERE MetricName = 'llm.requests.finished' "
        "GROUP BY 1 ORDER BY 1"
    )
    assert outcomes == [["abort", 4.0], ["error", 0.0], ["length", 51.0], ["stop", 402.0]]
