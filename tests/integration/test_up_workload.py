"""`vigil up` supervises the reference workload and drives gentle demo traffic at it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.integration.workload_server import WorkloadServer
from vigil.local import LocalVigil, free_port


def wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    return False


def test_vigil_up_runs_the_workload_with_demo_traffic_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    up = LocalVigil(tmp_path / "data", flags=("--no-agent", "--workload-port", str(port))).start()
    workload = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: httpx.get(f"{workload}/health", timeout=2).status_code == 200, 90)
        probe = WorkloadServer(tmp_path / "unused.log")
        probe.url = workload

        def served() -> float:
            samples = probe.metrics()
            return sum(v for k, v in samples.items() if k.startswith("vllm:request_success_total"))

        assert wait_for(lambda: served() >= 2, 60), "demo traffic reaches the workload"
        control = httpx.get(f"{workload}/control/config", timeout=5)
        assert control.status_code == 401, "vigil up hands the workload a control token"
    finally:
        took = up.stop()
    assert took < 10
    assert not wait_for(lambda: httpx.get(f"{workload}/health", timeout=1).status_code == 200, 2), (
        "the workload stops with vigil up"
    )
