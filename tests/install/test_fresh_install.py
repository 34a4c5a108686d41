"""A bare `pip install .` (no extras) imports every module and runs `vigil up` with its children.

`make test` installs the test extras, which once hid a runtime import (httpx) that `make up` lacked:
the workload died at start and was restarted forever. This check builds a new venv (no system site
packages) from the working tree, so it needs the package registry (pip's cache makes re-runs fast)
and runs only when asked: `make install-check`, which .ci/run calls, sets VIGIL_INSTALL_CHECK=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.project import ROOT, shipped_packages

pytestmark = pytest.mark.skipif(
    os.environ.get("VIGIL_INSTALL_CHECK") != "1",
    reason="installs from the package registry into a new venv: run `make install-check` (VIGIL_INSTALL_CHECK=1)",
)

STAY_UP_S = 20.0  # every child must run this long after all are healthy, with no restart
CHILDREN = {"workload", "agent"}

# Run inside the new venv with -I (no cwd, no PYTHONPATH on sys.path): imports every module of
# every shipped package and says where each came from.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
from pathlib import Path

prefix = Path(sys.prefix).resolve()
report = {"imported": 0, "failed": {}, "outside_venv": []}

def failed(name):
    exc = sys.exc_info()[1]
    report["failed"][name] = f"{type(exc).__name__}: {exc}"

for top in sys.argv[1:]:
    try:
        pkg = importlib.import_module(top)
    except BaseException:
        failed(top)
        continue
    names = [top] + [m.name for m in pkgutil.walk_packages(pkg.__path__, top + ".", onerror=failed)]
    for name in names:
        if name.rsplit(".", 1)[-1] == "__main__":  # runs its program on import; `vigil up` runs those
            continue
        try:
            module = importlib.import_module(name)
        except BaseException:
            failed(name)
            continue
        report["imported"] += 1
        if not Path(module.__file__).resolve().is_relative_to(prefix):
            report["outside_venv"].append(module.__file__)
print(json.dumps(report))
"""


def log_step(step: str, **fields: object) -> None:
    """A progress line for the CI log (`make install-check` runs pytest with -s)."""
    print(" ".join([f"install_check step={step}", *(f"{k}={v}" for k, v in fields.items())]), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_env(venv: Path) -> dict[str, str]:
    """This environment less what would leak the test venv or a VIGIL_ setting into the new one."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("VIGIL_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, f"{' '.join(map(str, argv))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


@dataclass
class FreshVenv:
    root: Path  # a scratch directory outside the repository: the cwd of everything run from the venv
    venv: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshVenv]:
    """The working tree's files (tracked, and untracked but not ignored) installed with `pip install .`."""
    root = tmp_path_factory.mktemp("fresh-install")
    src = root / "src"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():  # a tracked file deleted in the working tree is gone from a clone too
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)

    venv = root / "venv"
    env = bare_env(venv)
    started = time.monotonic()
    run([sys.executable, "-m", "venv", venv], root, env, 120)
    run([venv / "bin" / "python", "-m", "pip", "install", "--no-input", "--progress-bar", "off", src], root, env, 1800)
    log_step("pip_install", seconds=round(time.monotonic() - started, 1), venv=venv)
    yield FreshVenv(root, venv, env)
    shutil.rmtree(venv, ignore_errors=True)  # over a GB with torch; the logs beside it stay


def test_the_bare_install_is_consistent_and_imports_every_module(fresh: FreshVenv) -> None:
    run([fresh.python, "-m", "pip", "check"], fresh.root, fresh.env, 120)
    out = run([fresh.python, "-I", "-c", IMPORT_ALL, *shipped_packages()], fresh.root, fresh.env, 300)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    log_step("import_all", modules=report["imported"])
    assert report["failed"] == {}, "modules that do not import from a bare install"
    assert report["outside_venv"] == [], "modules imported from outside the new venv: the check would prove nothing"
    assert report["imported"] > 40, "the walk found the packages' modules"


def wait_for(what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def status(url: str) -> int:
    return httpx.get(url, timeout=5).status_code


def events(log: Path, name: str) -> list[dict[str, str]]:
    """The fields of every `event=NAME` line of a vigil log (values without spaces suffice here)."""
    return [
        dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        for line in log.read_text().splitlines()
        if f"event={name} " in line
    ]


@pytest.fixture
def vigil_up(fresh: FreshVenv) -> Iterator[tuple[subprocess.Popen[bytes], Path, int, int]]:
    port, workload_port = free_port(), free_port()
    log = fresh.root / "vigil-up.log"
    argv = [fresh.venv / "bin" / "vigil", "up", "--data", fresh.root / "data", "--port", port]
    argv += ["--workload-port", workload_port]
    with open(log, "wb") as out:  # the children write to the same file: they inherit the descriptor
        proc = subprocess.Popen([str(a) for a in argv], cwd=fresh.root, env=fresh.env, stdout=out, stderr=out)
    try:
        yield proc, log, port, workload_port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # children run in their own sessions: end any the supervisor left behind, by their pids,
        # if the pid still runs this venv's python (a pid of an exited child may have been reused)
        for started in events(log, "child_started"):
            pid = int(started.get("pid", "0"))
            with contextlib.suppress(OSError):
                if pid and str(fresh.venv).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


def test_vigil_up_from_the_bare_install_keeps_its_children_up_and_serves(
    fresh: FreshVenv, vigil_up: tuple[subprocess.Popen[bytes], Path, int, int]
) -> None:
    proc, log, port, workload_port = vigil_up
    vigil, workload = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{workload_port}"
    control_file = fresh.root / "data" / "agent" / "control.url"
    started = time.monotonic()

    def alive() -> None:
        assert proc.poll() is None, f"vigil up exited {proc.returncode}:\n{log.read_text()}"
        exited = events(log, "child_exited")
        assert not exited, f"a child exited: {exited}\n{log.read_text()}"

    def agent_healthy() -> bool:
        return control_file.exists() and status(f"{control_file.read_text().strip()}/healthz") == 200

    wait_for("vigil /healthz 200", lambda: status(f"{vigil}/healthz") == 200, 120, alive)
    wait_for("workload /health 200", lambda: status(f"{workload}/health") == 200, 180, alive)
    wait_for("agent /healthz 200", agent_healthy, 60, alive)
    log_step("healthy", seconds=round(time.monotonic() - started, 1))

    until = time.monotonic() + STAY_UP_S
    while time.monotonic() < until:
        alive()
        time.sleep(1)
    assert status(f"{vigil}/healthz") == 200
    assert status(f"{workload}/health") == 200
    assert agent_healthy()
    starts = events(log, "child_started")
    assert sorted(s["child"] for s in starts) == sorted(CHILDREN), f"each child started once: {starts}"
    assert all(s["restarts"] == "0" for s in starts)

    answer = httpx.post(f"{workload}/v1/completions", json={"prompt": "Hello", "max_tokens": 4}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] >= 1

    # `vigil loadgen` too: rich and httpx from the bare install, against the supervised workload
    argv = [fresh.venv / "bin" / "vigil", "loadgen", "--url", workload, "--concurrency", "1", "--duration", "2"]
    out = run([*argv, "--output-len", "4", "--json"], fresh.root, fresh.env, 120)
    assert json.loads(out.stdout)["successful_requests"] >= 1

    alive()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()
    assert {s["child"] for s in events(log, "child_stopped")} == CHILDREN
    log_step("vigil_up", seconds=round(time.monotonic() - started, 1))
