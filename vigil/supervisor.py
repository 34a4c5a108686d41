"""Child processes of `vigil up` (the reference workload, the local agent), kept running.

A child that exits is restarted with exponential backoff (1 s doubling to 30 s, reset after a
minute of good health). `stop()` sends SIGTERM to all, waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from vigil.logs import event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        specs: list[ChildSpec],
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self._children = [_Child(s, backoff=min_backoff) for s in specs]
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def children(self) -> dict[str, _Child]:
        return {c.spec.name: c for c in self._children}

    def start(self) -> None:
        for child in self._children:
            self._spawn(child)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env}
        child.process = subprocess.Popen(child.spec.argv, env=env, start_new_session=True)
        child.started_at = time.monotonic()
        event(log, "child_started", child=child.spec.name, pid=child.process.pid, restarts=child.restarts)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for child in self._children:
                proc = child.process
                if proc is None or proc.poll() is None:
                    if proc is not None and now - child.started_at > self.healthy_after:
                        child.backoff = self.min_backoff
                    continue
                if child.restart_at == 0.0:
                    child.restart_at = now + child.backoff
                    event(
                        log,
                        "child_exited",
                        level=logging.WARNING,
                        child=child.spec.name,
                        code=proc.returncode,
                        restart_in_s=child.backoff,
                    )
                elif now >= child.restart_at:
                    child.restart_at = 0.0
                    child.restarts += 1
                    child.backoff = min(child.backoff * 2, self.max_backoff)
                    self._spawn(child)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        live = [c.process for c in self._children if c.process and c.process.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self._children:
            if child.process:
                event(log, "child_stopped", child=child.spec.name, code=child.process.returncode)
