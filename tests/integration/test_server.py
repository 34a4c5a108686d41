"""`vigil up` as a real process: the OTel SDK exporter, OTLP/JSON, retries, crashes, bad input."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.integration.conftest import VigilServer
from tests.local import ROOT, up_command
from tests.otlp import gauge, gauge_request, request_with


def push_with_otel_sdk(url: str, headers: dict[str, str] | None = None) -> None:
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", compression=Compression.Gzip, headers=headers)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "gpu-agent", "host.name": "node-7", "team": "infer"}),
        metric_readers=[reader],
    )
    meter = provider.get_meter("vigil.tests", "0.1")
    requests = meter.create_counter("llm.requests.finished", unit="{request}", description="finished requests")
    requests.add(5, {"outcome": "stop"})
    requests.add(2, {"outcome": "error"})

    def utilization(_: CallbackOptions) -> list[Observation]:
        return [Observation(87.5, {"gpu.index": "0"}), Observation(12.0, {"gpu.index": "1"})]

    meter.create_observable_gauge("gpu.utilization", callbacks=[utilization], unit="%")
    latency = meter.create_histogram("llm.e2e_latency", unit="s")
    for value in (0.2, 0.7, 3.0):
        latency.record(value, {"model": "tiny"})
    provider.shutdown()  # one final collection, exported once


def test_otel_sdk_exporter_round_trip(vigil_server: VigilServer) -> None:
    push_with_otel_sdk(vigil_server.url)
    assert vigil_server.metric_value("vigil_collector_points_accepted_total") == 5
    vigil_server.stop()

    gauges = vigil_server.query(
        "SELECT Attributes['gpu.index'], Value, ServiceName, ResourceAttributes['host.name'], MetricUnit, ScopeName "
        "FROM otel_metrics_gauge WHERE MetricName = 'gpu.utilization' ORDER BY 1"
    )
    assert gauges == [
        ["0", 87.5, "gpu-agent", "node-7", "%", "vigil.tests"],
        ["1", 12.0, "gpu-agent", "node-7", "%", "vigil.tests"],
    ]
    sums = vigil_server.query(
        "SELECT Attributes['outcome'], Value, IsMonotonic, AggregationTemporality, ResourceAttributes['team'] "
        "FROM otel_metrics_sum WHERE MetricName = 'llm.requests.finished' ORDER BY 1"
    )
    assert sums == [["error", 2.0, True, 2, "infer"], ["stop", 5.0, True, 2, "infer"]]
    (hist,) = vigil_server.query(
        "SELECT Count, Sum, Min, Max, length(BucketCounts) = length(ExplicitBounds) + 1, arraySum(BucketCounts), "
        "Attributes FROM otel_metrics_histogram WHERE MetricName = 'llm.e2e_latency'"
    )
    assert hist[:6] == [3, pytest.approx(3.9), 0.2, 3.0, True, 3]
    assert hist[6] == {"model": "tiny"}
    rollup = vigil_server.query(
        "SELECT sum(Count), -min(Extremes[1]) FROM vigil_metrics_gauge_1m_v2 WHERE MetricName = 'gpu.utilization'"
    )
    assert rollup == [[2, 87.5]]


def test_otlp_json_body(vigil_server: VigilServer) -> None:
    now = time.time_ns()
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-client"}}]},
                "scopeMetrics": [
                    {
                        "scope": {"name": "curl"},
                        "metrics": [
                            {
                                "name": "gpu.temperature",
                                "unit": "Cel",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(now),
                                            "asDouble": 71.5,
                                            "attributes": [{"key": "gpu.index", "value": {"intValue": "3"}}],
                                            "exemplars": [
                                                {
                                                    "timeUnixNano": str(now),
                                                    "asDouble": 71.5,
                                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                                    "spanId": "eee19b7ec3c1b174",
                                                }
                                            ],
                                        }
                                    ]
                                },
                            },
                            {
                                "name": "gpu.energy",
                                "unit": "mJ",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": str(now - 10**9),
                                            "timeUnixNano": str(now),
                                            "asInt": "1234",
                                        }
                                    ],
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }
    answer = vigil_server.post(json.dumps(doc).encode(), "application/json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert json.loads(answer.text) == {}
    vigil_server.stop()
    assert vigil_server.query(
        "SELECT Value, Attributes['gpu.index'], Exemplars.TraceId, Exemplars.SpanId, ServiceName "
        "FROM otel_metrics_gauge"
    ) == [[71.5, "3", ["5b8efff798038103d269b633813fc60c"], ["eee19b7ec3c1b174"], "json-client"]]
    assert vigil_server.query("SELECT Value, IsMonotonic, MetricUnit FROM otel_metrics_sum") == [[1234.0, True, "mJ"]]


def test_vigil_query_is_read_only(vigil_server: VigilServer) -> None:
    vigil_server.stop()
    with pytest.raises(RuntimeError, match=r"vigil: error: query failed: .*readonly"):
        vigil_server.query("DROP TABLE otel_metrics_gauge")
    assert vigil_server.query("SELECT count() FROM otel_metrics_gauge") == [[0]]


def test_retrying_the_same_request_leaves_one_copy(vigil_server: VigilServer) -> None:
    body = gauge_request(50)
    assert vigil_server.post(body).status_code == 200
    assert vigil_server.post(body).status_code == 200  # same bytes, no key: content hash
    assert vigil_server.post(gzip.compress(body), **{"Content-Encoding": "gzip"}).status_code == 200
    keyed = gauge_request(20)
    for _ in range(2):
        assert vigil_server.post(keyed, **{"Idempotency-Key": "batch-42"}).status_code == 200
    assert vigil_server.metric_value("vigil_collector_duplicate_requests_total") == 3
    vigil_server.stop()
    assert vigil_server.query("SELECT count(), uniqExact(Attributes, TimeUnix, Value) FROM otel_metrics_gauge") == [
        [70, 70]
    ]


def test_sigkill_right_after_200_loses_nothing_acknowledged(vigil_server: VigilServer) -> None:
    acknowledged = 0
    base = time.time_ns()
    for i in range(20):
        if vigil_server.post(gauge_request(500, ts=base + i)).status_code == 200:
            acknowledged += 500
    vigil_server.stop(signal.SIGKILL)
    assert acknowledged == 10_000
    assert vigil_server.query("SELECT count() FROM otel_metrics_gauge") == [[acknowledged]]


def test_sigterm_flushes_in_flight_batches_and_exits_within_10s(make_server) -> None:
    server = make_server({"VIGIL_BATCH_WAIT_MS": "3000"}).start()
    results: list[int] = []
    sender = threading.Thread(target=lambda: results.append(server.post(gauge_request(300)).status_code))
    sender.start()
    time.sleep(0.5)  # the request waits in the batch for 3 s
    took = server.stop(signal.SIGTERM)
    sender.join(10)
    assert took < 10
    assert server.proc.returncode == 0
    assert results == [200]
    assert server.query("SELECT count() FROM otel_metrics_gauge") == [[300]]


def status_message(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("application/x-protobuf"):
        return status_pb2.Status.FromString(response.content).message
    return json.loads(response.text)["message"]


def test_bad_input_gets_its_status_and_the_server_stays_healthy(make_server) -> None:
    server = make_server(
        {"VIGIL_INGEST_TOKENS": "tok-a,tok-b", "VIGIL_MAX_BODY_BYTES": "65536", "VIGIL_MAX_SERIES_PER_METRIC": "3"}
    ).start()
    auth = {"Authorization": "Bearer tok-b"}
    cases = [
        (server.post(gauge_request(2)), 401, "missing bearer token"),
        (server.post(gauge_request(2), Authorization="Bearer nope"), 401, "not recognised"),
        (server.post(b"x" * 70_000, **auth), 413, "exceeds the limit"),
        (server.post(gzip.compress(b"\0" * 1_000_000), **auth, **{"Content-Encoding": "gzip"}), 413, "decompressed"),
        (server.post(b"\x0a\xff\xff", **auth), 400, "not a valid OTLP"),
        (server.post(b"{oops", "application/json", **auth), 400, "not valid JSON"),
        (server.post(b"not gzip", **auth, **{"Content-Encoding": "gzip"}), 400, "not valid gzip"),
        (server.post(b"{}", "text/plain", **auth), 415, "not supported"),
        (server.post(b"{}", "application/json", **auth, **{"Content-Encoding": "br"}), 415, "br"),
        (server.post(gauge_request(1), **auth, **{"Idempotency-Key": "k" * 300}), 400, "Idempotency-Key"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (status, response.text)
        assert message in status_message(response)
        assert server.healthy()

    hour = 3600 * 10**9
    now = time.time_ns()
    metric = gauge("gpu.power.draw", [(300.0, {"gpu.index": "0"})], ts=now)
    metric.gauge.data_points.add(time_unix_nano=now - 30 * 24 * hour, as_double=1.0)
    metric.gauge.data_points.add(time_unix_nano=now, as_double=float("nan"))
    metric.gauge.data_points.add(time_unix_nano=now, as_double=float("inf"))
    point = metric.gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    point.attributes.add(key="k", value={"string_value": "v" * 5000})
    many = gauge("gpu.clock.sm", [(float(i), {"gpu.index": str(i)}) for i in range(5)], ts=now)
    response = server.post(request_with([metric, many]).SerializeToString(), **auth)
    assert response.status_code == 200
    partial = ExportMetricsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_data_points == 6
    assert "attribute_limit=1" in partial.error_message and "non_finite_value=2" in partial.error_message
    assert "series_limit=2" in partial.error_message and "timestamp_out_of_range=1" in partial.error_message
    assert server.metric_value("vigil_collector_points_rejected_total", '{reason="non_finite_value"}') == 2
    assert server.metric_value("vigil_collector_series_limit_refused_total", '{metric="gpu.clock.sm"}') == 2
    assert server.metric_value("vigil_collector_requests_total", '{code="401"}') == 2
    assert server.healthy()
    server.stop()
    assert server.query("SELECT MetricName, count() FROM otel_metrics_gauge GROUP BY 1 ORDER BY 1") == [
        ["gpu.clock.sm", 3],
        ["gpu.power.draw", 1],
    ]


def test_a_full_queue_answers_429_with_retry_after(make_server) -> None:
    server = make_server({"VIGIL_QUEUE_ROWS": "150", "VIGIL_BATCH_WAIT_MS": "2000"}).start()
    first: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: first.append(server.post(gauge_request(100))))
    sender.start()
    time.sleep(0.5)
    refused = server.post(gauge_request(100, ts=time.time_ns() + 1))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "queue is full" in status_message(refused)
    sender.join(10)
    assert first[0].status_code == 200
    assert server.metric_value("vigil_collector_queue_capacity_rows") == 150
    server.stop()
    assert server.query("SELECT count() FROM otel_metrics_gauge") == [[100]]


def test_a_second_vigil_up_on_the_same_data_dir_says_so_and_exits(vigil_server: VigilServer) -> None:
    second = subprocess.run(
        up_command(vigil_server.data, 1, "--no-agent", "--no-workload"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert f"pid {vigil_server.proc.pid}" in second.stderr
    assert "in use by another Vigil process" in second.stderr
    assert vigil_server.healthy()


def test_metrics_endpoint_names_what_the_collector_did(vigil_server: VigilServer) -> None:
    assert vigil_server.post(gauge_request(10)).status_code == 200
    text = httpx.get(f"{vigil_server.url}/metrics").text
    for name in (
        "vigil_collector_points_received_total 10.0",
        "vigil_collector_points_accepted_total 10.0",
        "vigil_collector_queue_rows ",
        'vigil_collector_insert_duration_seconds_bucket{le="0.005",table=',
        'vigil_collector_insert_rows_count{table="otel_metrics_gauge"} 1.0',
        "process_resident_memory_bytes",
    ):
        assert name in text, name


def test_settings_errors_name_the_field(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "--data", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"VIGIL_BATCH_ROWS": "lots", "PATH": "/usr/bin"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 1 and "VIGIL_BATCH_ROWS" in out.stderr
