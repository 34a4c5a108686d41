"""`vigil up`'s own simulated GPUs reach the dashboard's API within 30 s of its start."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.local import LocalVigil, wait_until

TOKEN = "dashboard-test-token"


def test_vigil_up_lists_its_own_simulated_gpus_within_30_s(tmp_path: Path) -> None:
    server = LocalVigil(tmp_path / "data", env={"VIGIL_API_TOKENS": TOKEN}, flags=("--no-workload",))
    started = time.monotonic()
    server.start()
    try:
        seen: list[dict[str, object]] = []

        def listed() -> bool:
            r = httpx.get(f"{server.url}/api/v1/gpus", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
            assert r.status_code == 200, r.text
            seen[:] = r.json()["gpus"]
            return bool(seen)

        assert wait_until(listed, timeout=30 - (time.monotonic() - started), every=0.5), "no GPU listed within 30 s"
        assert all(g["vigil.simulated"] is True and g["gpu.uuid"] for g in seen)
        assert httpx.get(f"{server.url}/api/v1/gpus", timeout=5).status_code == 401  # and never without a token
    finally:
        server.stop(signal.SIGTERM)
