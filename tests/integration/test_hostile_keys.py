"""Hostile ingest found after the first round of fixes: Idempotency-Key namespace tricks."""

import hashlib
import time

from google.rpc import status_pb2

from tests.integration.conftest import VigilServer
from tests.integration.test_hostile_ingest import assert_still_serving, stored
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
