"""`vigil workload` as a child process on a free loopback port, for the integration tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.local import LocalService, free_port


class WorkloadServer(LocalService):
    health_path = "/health"

    def __init__(self, log: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        port = free_port()
        super().__init__([sys.executable, "-m", "vigil.cli", "workload", "--port", str(port), *flags], port, log, env)

    def start(self, timeout: float = 90.0) -> WorkloadServer:
        return super().start(timeout)

    def stop(self, *_: object) -> float:  # type: ignore[override]
        if not self.running():
            return 0.0
        try:
            return super().stop()
        except subprocess.TimeoutExpired:
            assert self.proc is not None
            self.proc.kill()
            return 0.0

    def complete(self, prompt: str = "Hello", max_tokens: int = 8, timeout: float = 60, **extra) -> httpx.Response:
        body = {"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, **extra}
        return httpx.post(f"{self.url}/v1/completions", json=body, timeout=timeout)

    def control(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, f"{self.url}/control/{path}", headers=headers, timeout=60, **kwargs)

    def metrics(self) -> dict[str, float]:
        """Samples by name and sorted labels, e.g. 'vllm:num_preemptions_total' or '...{finished_reason=error}'."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if k not in ("model_name", "engine")}
                key = sample.name + (
                    "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}" if labels else ""
                )
                out[key] = sample.value
        return out
