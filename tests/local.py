"""`vigil up` (and other `vigil` subcommands) as child processes on loopback, for the tests and benchmarks;
and one app served by uvicorn in a thread, for tests of a router over real HTTP.

Not part of the installed package: `bench/` puts the repository root on `sys.path` to import it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import httpx
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]


def wait_until(check: Callable[[], object], timeout: float, every: float = 0.1) -> bool:
    """Poll `check` until it is truthy (True) or `timeout` seconds pass (False); a refused connection counts as no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.TransportError:
            pass
        time.sleep(every)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """`app` on 127.0.0.1 (`port`, or a free one) in a uvicorn thread; yields its URL once it listens."""
    port = free_port() if port is None else port
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not wait_until(lambda: server.started, 20, every=0.05):
            raise RuntimeError(f"uvicorn did not start on port {port} within 20 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def up_command(data: Path, port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "vigil.cli", "up", *flags, "--data", str(data), "--port", str(port)]


class LocalService:
    """A `vigil` subcommand serving HTTP on loopback, started as a child and awaited until healthy."""

    health_path = "/healthz"

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Self:
        """Start it and wait for its health path to answer 200; raise with its log if it does not."""
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        name = " ".join(self.argv[2:4])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.healthy():
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not become healthy in {timeout:.0f} s:\n{self.log.read_text()}")

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}{self.health_path}", timeout=5).status_code == 200

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Signal it and wait for the exit; return the seconds that took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        return time.monotonic() - started


class LocalVigil(LocalService):
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
        self.flags = flags
        port = port or free_port()
        super().__init__(up_command(data, port, *flags), port, data.parent / f"{data.name}-vigil.log", env)

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
