"""`vigil up` as a child process on loopback, for benchmarks, tests and scripts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def up_command(data: Path, port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "vigil.cli", "up", *flags, "--data", str(data), "--port", str(port)]


class LocalVigil:
    """One `vigil up` (by default without agent and workload) on a free loopback port."""

    def __init__(
        self,
        data: Path,
        env: dict[str, str] | None = None,
        flags: tuple[str, ...] = ("--no-agent", "--no-workload"),
        port: int | None = None,
    ) -> None:
        """`port`: a given port (to restart a server where its clients expect it), else a free one."""
        self.data = data
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.flags = flags
        self.log = data.parent / f"{data.name}-vigil.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> LocalVigil:
        """Start it and wait for `/healthz` to answer 200; raise with its log if it does not."""
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                up_command(self.data, self.port, *self.flags),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigil up exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.healthy():
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"vigil up did not become healthy in {timeout:.0f} s:\n{self.log.read_text()}")

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Signal it and wait for the exit; return the seconds that took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        return time.monotonic() - started

    def query(self, sql: str, timeout: float = 120.0) -> list[list[object]]:
        """Rows of a read-only query on its embedded store, through `vigil query` (it must be stopped)."""
        import json

        out = subprocess.run(
            [sys.executable, "-m", "vigil.cli", "query", "--data", str(self.data), "--json", sql],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(out.stderr)
        return json.loads(out.stdout)
