"""`vigil up` supervises the reference workload and drives gentle demo traffic at it."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.workload_server import WorkloadServer
from tests.local import LocalVigil, free_port, wait_until


def test_vigil_up_runs_the_workload_with_demo_traffic_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    up = LocalVigil(tmp_path / "data", flags=("--no-agent", "--workload-port", str(port))).start()
    workload = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: httpx.get(f"{workload}/health", timeout=2).status_code == 200, 90)
        probe = WorkloadServer(tmp_path / "unused.log")
        probe.url = workload

        def served() -> float:
            samples = probe.metrics()
            return sum(v for k, v in samples.items() if k.startswith("vllm:request_success_total"))

        assert wait_until(lambda: served() >= 2, 60), "demo traffic reaches the workload"
        control = httpx.get(f"{workload}/control/config", timeout=5)
        assert control.status_code == 401, "vigil up hands the workload a control token"
    finally:
        took = up.stop()
    assert took < 10
    assert not wait_until(lambda: httpx.get(f"{workload}/health", timeout=1).status_code == 200, 2), (
        "the workload stops with vigil up"
    )


def test_healthz_names_a_dead_workload_and_recovers_when_it_is_restarted(tmp_path: Path) -> None:
    port = free_port()
    token = "drill-token"
    up = LocalVigil(
        tmp_path / "data",
        env={"VIGIL_CONTROL_TOKEN": token},
        flags=("--no-agent", "--no-demo-traffic", "--workload-port", str(port)),
    ).start()
    workload = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}

    def vigil_health() -> httpx.Response:
        return httpx.get(f"{up.url}/healthz", timeout=5)

    try:
        assert wait_until(lambda: vigil_health().json()["children"]["workload"]["status"] == "ok", 90)
        assert vigil_health().status_code == 200
        fault = httpx.post(f"{workload}/control/fault", json={"kind": "crash"}, headers=auth, timeout=5)
        assert fault.status_code in (200, 201), fault.text
        # the engine dies at its next step: give it one
        httpx.post(f"{workload}/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=30)
        assert wait_until(lambda: vigil_health().status_code == 503, 30), vigil_health().text
        body = vigil_health().json()
        assert body["unhealthy"] == ["child:workload"]
        child = body["children"]["workload"]
        assert child["status"] == "unhealthy" and child["restarts"] == 0 and child["pid"] > 0
        assert "HTTP 503" in child["last_error"] and "dead" in child["last_error"]
        httpx.delete(f"{workload}/control/fault", headers=auth, timeout=5)
        httpx.post(f"{workload}/control/restart", headers=auth, timeout=30)
        assert wait_until(lambda: vigil_health().status_code == 200, 60), vigil_health().text
    finally:
        up.stop()
