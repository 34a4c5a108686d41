import sys
import time
from pathlib import Path

from vigil.supervisor import ChildSpec, Supervisor


def wait_for(cond, timeout: float = 10.0) -> bool:
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
    finally:
        sup.stop(timeout=3)
    proc = sup.children["child"].process
    assert proc is not None and proc.poll() is not None


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    sup = Supervisor([ChildSpec("stubborn", [sys.executable, "-c", script])])
    sup.start()
    time.sleep(0.5)
    started = time.monotonic()
    sup.stop(timeout=0.5)
    assert time.monotonic() - started < 5
    assert sup.children["stubborn"].process.returncode == -9
