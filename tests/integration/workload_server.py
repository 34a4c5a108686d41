"""`vigil workload` as a child process on a free loopback port, for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from vigil.local import ROOT, free_port


class WorkloadServer:
    def __init__(self, log: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.flags = flags
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> WorkloadServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vigil.cli", "workload", "--port", str(self.port), *self.flags],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigil workload exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"vigil workload did not become healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def complete(self, prompt: str = "Hello", max_tokens: int = 8, **extra) -> httpx.Response:
        body = {"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, **extra}
        return httpx.post(f"{self.url}/v1/completions", json=body, timeout=60)

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
