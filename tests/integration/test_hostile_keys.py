"""Hostile ingest found after the first round of fixes: key namespace tricks, concurrent parse memory."""

import hashlib
import threading
import time

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

from tests.integration.conftest import VigilServer
from tests.integration.test_hostile_ingest import assert_still_serving, rss_mb, stored
from tests.otlp import gauge_request


def test_a_client_key_naming_another_bodys_digest_is_refused(make_server) -> None:
    server: VigilServer = make_server().start()
    now = time.time_ns()
    squatter, victim = gauge_request(2, ts=now), gauge_request(3, ts=now + 1)
    squat = server.post(squatter, **{"Idempotency-Key": "sha256:" + hashlib.sha256(victim).hexdigest()})
    assert squat.status_code == 400
    assert "SHA-256 of the body" in status_pb2.Status.FromString(squat.content).message
    assert server.post(victim).status_code == 200, "a keyless body is never refused for a key someone else chose"
    own = server.post(squatter, **{"Idempotency-Key": "sha256:" + hashlib.sha256(squatter).hexdigest()})
    assert own.status_code == 200, "naming the body's own digest is the keyless key itself"
    assert_still_serving(server, now + 10)
    assert stored(server, "SELECT count() FROM otel_metrics_gauge") == [[3 + 2 + 7]]


@pytest.mark.heavy
def test_concurrent_bodies_of_tiny_messages_are_decoded_a_bounded_number_at_a_time(make_server) -> None:
    # 2 bytes per empty ResourceMetrics parse into ~60 bytes each: a body costs ~30x its size while parsed
    server: VigilServer = make_server({"VIGIL_MAX_BODY_BYTES": str(2 << 20), "VIGIL_INGEST_DECODERS": "1"}).start()
    body = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics()] * 1_000_000).SerializeToString()
    before, peak = rss_mb(server), [0.0]
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(server.post(body).status_code)) for _ in range(6)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], rss_mb(server))
        time.sleep(0.05)
    assert answers == [200] * 6
    grown = peak[0] - before
    assert grown < 200, f"RSS grew {grown:.0f} MB for six 2 MB bodies (one parsed at a time is ~60 MB)"
    assert_still_serving(server, time.time_ns())
