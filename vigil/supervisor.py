"""Child processes of `vigil up` (the reference workload, the local agent), kept running and probed.

A child that exits is restarted with exponential backoff (1 s doubling to 30 s, reset after a
minute of good health). A child that is alive but unhealthy is reported, never restarted: an
injected `crash` fault must stay down until a runbook or a person restarts it.

A probe thread GETs each child's health URL every few seconds and keeps the last result, so
`/healthz` reads cached state and never waits on a child. `stop()` sends SIGTERM to all, waits,
then SIGKILLs what is left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from vigil.kernel import ChildSpec
from vigil.logs import event

log = logging.getLogger(__name__)

# A child is unhealthy after this many failed probes in a row: one slow answer is not an outage.
FAILURES_TO_UNHEALTHY = 2
_ERROR_CHARS = 200
# Children listen on this machine: a proxy from the environment (HTTP_PROXY) must not carry the probe.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ChildHealth:
    """The last known state of one child. `status`: starting, ok, running (no health URL), unhealthy, exited."""

    name: str
    status: str
    pid: int | None
    restarts: int
    last_error: str | None
    checked_age_s: float | None  # seconds since the last probe; None before the first

    @property
    def ok(self) -> bool:
        return self.status in ("starting", "ok", "running")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "checked_age_s": self.checked_age_s,
        }


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float = 0.0
    healthy_since_start: bool = False  # a probe succeeded since the last (re)start
    failures: int = 0  # failed probes in a row
    last_error: str | None = None
    checked_at: float | None = None


def probe(url: str, timeout: float) -> str | None:
    """GET `url`: None when it answers 200, else why not (status and the start of the body, or the error)."""
    try:
        with _OPENER.open(url, timeout=timeout) as answer:
            if answer.status == 200:
                return None
            return f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(_ERROR_CHARS).decode(errors="replace")
        return f"HTTP {exc.code}: {body}".strip()[:_ERROR_CHARS]
    except (OSError, ValueError) as exc:  # refused, timed out, reset
        reason = getattr(exc, "reason", exc)
        return f"unreachable: {reason}"[:_ERROR_CHARS]


class Supervisor:
    def __init__(
        self,
        specs: list[ChildSpec],
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
        probe_interval: float = 2.0,
        probe_timeout: float = 2.0,
    ) -> None:
        self._children = [_Child(s, backoff=min_backoff) for s in specs]
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()  # the watch and probe threads both update a child's state
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def children(self) -> dict[str, _Child]:
        return {c.spec.name: c for c in self._children}

    def start(self) -> None:
        for child in self._children:
            self._spawn(child)
        self._threads = [
            threading.Thread(target=self._watch, name="supervisor", daemon=True),
            threading.Thread(target=self._probe_all, name="supervisor-probe", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def health(self) -> dict[str, ChildHealth]:
        """Each child's last known state, from memory."""
        now = time.monotonic()
        with self._lock:
            return {c.spec.name: self._state(c, now) for c in self._children}

    def _state(self, child: _Child, now: float) -> ChildHealth:
        proc = child.process
        alive = proc is not None and proc.poll() is None
        error = child.last_error
        if not alive:
            status = "exited"
            if proc is not None:
                error = f"exited with code {proc.returncode}"
        elif child.spec.health_url is None:
            status = "running"
        elif not child.healthy_since_start:
            waited = now - child.started_at
            status = "unhealthy" if waited > child.spec.start_grace_s else "starting"
            if status == "unhealthy":
                error = f"no healthy answer in {waited:.0f} s since start" + (f"; last: {error}" if error else "")
        else:
            status = "unhealthy" if child.failures >= FAILURES_TO_UNHEALTHY else "ok"
        return ChildHealth(
            name=child.spec.name,
            status=status,
            pid=proc.pid if proc is not None else None,
            restarts=child.restarts,
            last_error=error,
            checked_age_s=None if child.checked_at is None else round(now - child.checked_at, 3),
        )

    def _spawn(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env}
        process = subprocess.Popen(child.spec.argv, env=env, start_new_session=True)
        with self._lock:
            child.process = process
            child.started_at = time.monotonic()
            child.healthy_since_start = False
            child.failures = 0
        event(log, "child_started", child=child.spec.name, pid=process.pid, restarts=child.restarts)

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

    def _probe_all(self) -> None:
        while True:
            for child in self._children:
                if self._stop.is_set():
                    return
                self._probe(child)
            if self._stop.wait(self.probe_interval):
                return

    def _probe(self, child: _Child) -> None:
        url = child.spec.health_url
        proc = child.process
        if url is None or proc is None or proc.poll() is not None:
            return
        error = probe(url, self.probe_timeout)
        with self._lock:
            if child.process is not proc:  # restarted while the probe ran: the answer was the old one's
                return
            child.checked_at = time.monotonic()
            was_ok = child.healthy_since_start and child.failures < FAILURES_TO_UNHEALTHY
            if error is None:
                child.healthy_since_start = True
                child.failures = 0
                child.last_error = None
            else:
                child.failures += 1
                child.last_error = error
            now_ok = child.healthy_since_start and child.failures < FAILURES_TO_UNHEALTHY
        if was_ok != now_ok:
            event(
                log,
                "child_healthy" if now_ok else "child_unhealthy",
                level=logging.INFO if now_ok else logging.WARNING,
                child=child.spec.name,
                pid=proc.pid,
                error=error or "",
            )

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
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
