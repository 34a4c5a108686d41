"""The supervisor restarts children that exit, stops them all, and reports each one's health."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vigil.cli import free_port
from vigil.kernel import ChildSpec
from vigil.supervisor import Supervisor

# A child serving GET /health: 200 while `path` holds "ok", else 503 with its text.
HEALTH_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
path, port = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_GET(self):
        text = open(path).read().strip()
        self.send_response(200 if text == "ok" else 503)
        self.end_headers()
        self.wfile.write(text.encode())
HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_a_child_that_exits_is_restarted_and_stop_ends_it(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    script = (
        f"import time; open({str(marker)!r}, 'a').write('x'); "
        f"time.sleep(0.3 if len(open({str(marker)!r}).read()) < 2 else 60)"
    )
    sup = Supervisor([ChildSpec("child", [sys.executable, "-c", script])], min_backoff=0.1)
    sup.start()
    try:
        assert wait_for(lambda: marker.exists() and len(marker.read_text()) >= 2), "child was not restarted"
        assert sup.children["child"].restarts == 1
        assert wait_for(lambda: sup.health()["child"].status == "running")
    finally:
        sup.stop(timeout=3)
    proc = sup.children["child"].process
    assert proc is not None and proc.poll() is not None


def test_stop_kills_a_child_that_ignores_sigterm(capfd: pytest.CaptureFixture[str]) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    sup = Supervisor([ChildSpec("stubborn", [sys.executable, "-c", script])])
    sup.start()
    out: list[str] = []
    # the child shares our stdout: its ready line says SIGTERM is ignored from now on
    assert wait_for(lambda: out.append(capfd.readouterr().out) or "ready" in "".join(out)), "no ready line"
    started = time.monotonic()
    sup.stop(timeout=0.5)
    assert time.monotonic() - started < 5
    assert sup.children["stubborn"].process.returncode == -9


def test_health_follows_the_childs_health_url_and_names_the_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("ok")
    port = free_port()
    spec = ChildSpec(
        "web",
        [sys.executable, "-c", HEALTH_SERVER, str(state), str(port)],
        health_url=f"http://127.0.0.1:{port}/health",
    )
    sup = Supervisor([spec], probe_interval=0.1, probe_timeout=1.0)
    assert sup.health()["web"].status == "exited" and sup.health()["web"].pid is None  # not started yet
    sup.start()
    try:
        assert sup.health()["web"].status == "starting" and sup.health()["web"].ok
        assert wait_for(lambda: sup.health()["web"].status == "ok")
        state.write_text("engine dead")
        assert wait_for(lambda: sup.health()["web"].status == "unhealthy")
        health = sup.health()["web"]
        assert not health.ok and health.last_error == "HTTP 503: engine dead"
        assert health.pid == sup.children["web"].process.pid and health.restarts == 0
        assert health.as_dict()["status"] == "unhealthy"
        state.write_text("ok")
        assert wait_for(lambda: sup.health()["web"].status == "ok")
        assert sup.health()["web"].last_error is None
    finally:
        sup.stop(timeout=3)
    assert sup.health()["web"].status == "exited"


def test_a_child_that_never_answers_is_unhealthy_after_its_start_grace() -> None:
    port = free_port()  # nothing listens there
    spec = ChildSpec(
        "mute",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        health_url=f"http://127.0.0.1:{port}/health",
        start_grace_s=0.3,
    )
    sup = Supervisor([spec], probe_interval=0.1, probe_timeout=0.5)
    sup.start()
    try:
        assert wait_for(lambda: sup.health()["mute"].status == "unhealthy")
        error = sup.health()["mute"].last_error or ""
        assert error.startswith("no healthy answer in") and "unreachable" in error
    finally:
        sup.stop(timeout=3)


def test_a_child_that_exited_is_reported_until_restarted() -> None:
    sup = Supervisor([ChildSpec("quitter", [sys.executable, "-c", "raise SystemExit(3)"])], min_backoff=30)
    sup.start()
    try:
        assert wait_for(lambda: sup.health()["quitter"].status == "exited")
        health = sup.health()["quitter"]
        assert not health.ok and health.last_error == "exited with code 3"
    finally:
        sup.stop(timeout=3)
