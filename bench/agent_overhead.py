"""CPU and memory of the GPU agent: `vigil agent --simulate 8 --interval 1` scraping one engine.

Starts `vigil up --no-agent --no-workload` on a free loopback port, an engine to scrape (the
reference workload where `vigil workload` exists, else a loopback server of this script serving the
recorded vLLM text), then the agent. After a warm-up it measures the agent process (all its
threads) over `--seconds`: CPU time as a percentage of one core, peak resident memory (VmHWM), and
the batches and points it delivered.

Goal: at most 1 % of one core and 80 MB. dcgm-exporter's users report 15-130 % of a core and
70-500 MB (REFERENCE.md §2); that exporter cannot run here (no GPU), so its figures are quoted.

    python bench/agent_overhead.py [--seconds 60] [--gpus 8] [--interval 1] [--json]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.local import LocalVigil, free_port  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/metrics/vllm.txt"
GOAL_CPU_PCT, GOAL_RSS_MB = 1.0, 80.0
DCGM_CPU_PCT, DCGM_RSS_MB = "15-130", "70-500"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


def has_workload_command() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return bool(re.search(r"\bworkload\b", out.stdout))


class FixtureServer:
    """A loopback /metrics serving the recorded vLLM text."""

    def __init__(self) -> None:
        body = FIXTURE.read_bytes()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()


def start_engine(workdir: Path) -> tuple[str, str, object]:
    """(description, metrics URL, handle to stop)."""
    if has_workload_command():
        port = free_port()
        log = open(workdir / "workload.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
        proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "workload", "--port", str(port), "--device", "cpu"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 120
        import urllib.request

        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return "the reference workload (vigil workload)", url, proc
            except OSError:
                time.sleep(0.5)
        proc.kill()
        print("vigil workload did not serve /metrics; falling back to the recorded vLLM text", file=sys.stderr)
    server = FixtureServer()
    return f"a loopback server of this benchmark serving {FIXTURE.relative_to(ROOT)}", server.url, server


def stop_engine(handle: object) -> None:
    if isinstance(handle, FixtureServer):
        handle.stop()
    elif isinstance(handle, subprocess.Popen):
        handle.terminate()
        try:
            handle.wait(10)
        except subprocess.TimeoutExpired:
            handle.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (default 5)")
    parser.add_argument("--gpus", type=int, default=8, help="simulated GPUs (default 8)")
    parser.add_argument("--interval", type=float, default=1.0, help="agent --interval (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-agent-bench-") as tmp:
        workdir = Path(tmp)
        server = LocalVigil(workdir / "data").start()
        engine, url, handle = start_engine(workdir)
        command = [
            str(Path(sys.executable).with_name("vigil")),
            "agent",
            "--collector",
            server.url,
            "--simulate",
            str(args.gpus),
            "--interval",
            str(args.interval),
            "--scrape",
            url,
        ]
        if not Path(command[0]).exists():
            command[:2] = [sys.executable, "-m", "vigil.cli", "agent"]
        agent_log = workdir / "agent.log"
        with open(agent_log, "wb") as log:
            agent = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(args.warmup)
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited with {agent.returncode}:\n{agent_log.read_text()}")
            startup_cpu = cpu_seconds(agent.pid)
            t0, c0 = time.monotonic(), startup_cpu
            time.sleep(args.seconds)
            t1, c1 = time.monotonic(), cpu_seconds(agent.pid)
            peak_rss_kb = status_kb(agent.pid, "VmHWM")
            rss_kb = status_kb(agent.pid, "VmRSS")
            threads = len(os.listdir(f"/proc/{agent.pid}/task"))
        finally:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
            stop_engine(handle)
            server.stop()
        stopped = [line for line in agent_log.read_text().splitlines() if "event=agent_stopped" in line]
        summary = dict(re.findall(r"(\w+)=(\S+)", stopped[-1])) if stopped else {}

    cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    result = {
        "command": " ".join(["vigil", *command[command.index("agent") :]]).replace(url, "<engine>/metrics"),
        "engine": engine,
        "seconds": round(t1 - t0, 1),
        "cpu_pct_of_one_core": round(cpu_pct, 3),
        "startup_cpu_s": round(startup_cpu, 2),
        "peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "rss_mb_at_end": round(rss_kb / 1024, 1),
        "threads": threads,
        "cycles": int(summary.get("cycles", 0)),
        "batches_sent": int(summary.get("batches_sent", 0)),
        "points_sent": int(summary.get("points_sent", 0)),
        "cycle_p50_us": float(summary.get("cycle_p50_us", 0)),
        "goal_cpu_pct": GOAL_CPU_PCT,
        "goal_rss_mb": GOAL_RSS_MB,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"command:  {result['command']}")
    print(f"engine:   {engine}")
    print(f"measured: {result['seconds']} s after {args.warmup:g} s of warm-up ({result['startup_cpu_s']} CPU s)")
    print(f"cycles {result['cycles']}, batches {result['batches_sent']}, points {result['points_sent']}")
    print(f"per cycle (sample + collect, p50): {result['cycle_p50_us']:.0f} µs; threads: {threads}")
    print()
    print("| measure | agent | goal | dcgm-exporter (users' reports) |")
    print("| --- | --- | --- | --- |")
    print(f"| CPU, % of one core | {cpu_pct:.2f} | ≤ {GOAL_CPU_PCT:g} | {DCGM_CPU_PCT} |")
    print(f"| peak RSS, MB | {result['peak_rss_mb']:.1f} | ≤ {GOAL_RSS_MB:g} | {DCGM_RSS_MB} |")
    verdict = cpu_pct <= GOAL_CPU_PCT and result["peak_rss_mb"] <= GOAL_RSS_MB
    print(f"\ngoal {'met' if verdict else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
