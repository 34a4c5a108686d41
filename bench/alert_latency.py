"""Fault to page: Vigil's alerting against a real Prometheus 2.42 + Alertmanager 0.25, on the same workload.

Starts `vigil up` (the reference workload with its 2 req/s demo traffic, the local agent scraping it
every second) with `VIGIL_WEBHOOK_URL` pointing at a loopback receiver of this script and a rule file
equal to the peer's rule, then a real Prometheus (Debian's `prometheus`) scraping the same workload's
`/metrics` and a real Alertmanager (`prometheus-alertmanager`) sending to the same receiver, both with
their DEFAULT intervals (1 m scrape and evaluation; group_wait 30 s, group_interval 5 m).

The peer's trials run first (after its warm-up, each from quiet), then Vigil's. Each trial injects
`POST /control/fault {"kind":"errors","rate":1.0}` into the workload, times the first firing webhook
of the rule under test, clears the fault, times its last resolved message, and waits until quiet.
Vigil's rule (W = 30 s; its sampling is 1 s under `vigil up`):

    llm.requests.finished{outcome=error} rate[30s] / llm.requests.finished rate[30s] > 0.05

and the peer's (W = 2 m: with `[1m]` the rule never fires at a 1 m scrape, as `rate` needs two samples):

    sum(rate(vllm:request_success_total{finished_reason="error"}[2m]))
      / sum(rate(vllm:request_success_total[2m])) > 0.05

(summed: the issue's unsummed form matches the error series only with itself, so its ratio is 1 or NaN.)
The default pack's InferenceOutage is timed from the same trials. Peer trials also time Vigil again.

Cost: two more `vigil up`s side by side over the same minute, each with its workload, its agent
(4 simulated GPUs) and a second agent (`vigil agent --simulate 4`), so 8 GPUs each: one with the
default pack, one with `VIGIL_DEFAULT_RULES=0`. The difference of their process CPU is the
evaluator's cost, as % of one core.

Goals: Vigil p95 <= 10 s to the page, resolved <= 30 s after the fault clears, evaluator <= 10 % of a core.

    python bench/alert_latency.py [--trials 5] [--peer-trials 3] [--quick] [--json]

Everything listens on 127.0.0.1; every child is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.local import LocalVigil, free_port  # noqa: E402

GOAL_FIRE_P95_S, GOAL_RESOLVE_S, GOAL_CPU_PCT = 10.0, 30.0, 10.0
PEER_WARMUP_S = 150.0  # two 1 m scrapes of healthy traffic, and a rule evaluation on them
CLK_TCK = os.sysconf("SC_CLK_TCK")
VIGIL_RULE, OUTAGE_RULE, PEER_RULE = "BenchErrorRatio", "InferenceOutage", "PeerErrorRatio"

VIGIL_RULES = f"""\
groups:
  - name: bench
    rules:
      - alert: {VIGIL_RULE}
        expr:
          metric: llm.requests.finished
          function: rate
          window: 30s
          matchers: {{outcome: error}}
          by: llm.endpoint
          ratio_to: {{metric: llm.requests.finished, function: rate}}
        op: ">"
        threshold: 0.05
        labels: {{severity: page}}
        annotations: {{summary: "bench: error ratio {{{{ $value }}}} over 30 s"}}
"""

PEER_RULES = f"""\
groups:
  - name: bench
    rules:
      - alert: {PEER_RULE}
        expr: >-
          sum(rate(vllm:request_success_total{{finished_reason="error"}}[2m]))
          / sum(rate(vllm:request_success_total[2m])) > 0.05
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 5 trials is the worst one)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))] if ordered else float("nan")


@dataclass
class Event:
    at: float  # time.monotonic()
    source: str  # "vigil" or "peer" (the receiver path)
    alertname: str
    status: str  # "firing" or "resolved"


@dataclass
class Receiver:
    """A loopback webhook receiver (Alertmanager v4 payload) recording each alert's status as it arrives."""

    events: list[Event] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> str:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                now = time.monotonic()
                with receiver.cond:
                    for alert in body.get("alerts", []):
                        name = alert.get("labels", {}).get("alertname", "")
                        receiver.events.append(Event(now, self.path.strip("/"), name, alert.get("status", "")))
                    receiver.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait(self, source: str, name: str, status: str, since: float, timeout: float) -> float | None:
        """Seconds from `since` to the first such event after it, or None at the timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e.at >= since and (e.source, e.alertname, e.status) == (source, name, status):
                        return e.at - since
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 1.0))

    def quiet(self, deadline: float, quiet_s: float) -> None:
        """Wait until no event arrived for `quiet_s` seconds (or the deadline)."""
        while time.monotonic() < deadline:
            with self.cond:
                last = self.events[-1].at if self.events else 0.0
            if time.monotonic() - last >= quiet_s:
                return
            time.sleep(min(1.0, quiet_s - (time.monotonic() - last)))


class Children:
    """Every process this script starts, stopped on exit (Ctrl-C and SIGTERM included)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.vigils: list[LocalVigil] = []

    def popen(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        self.procs.append(proc)
        return proc

    def vigil(self, v: LocalVigil, timeout: float = 240.0) -> LocalVigil:
        self.vigils.append(v)
        return v.start(timeout)

    def stop(self, v: LocalVigil) -> None:
        if v.running():
            v.stop(timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for v in self.vigils:
            try:
                self.stop(v)
            except Exception:  # a stuck one is killed below; cleanup must reach every child
                if v.proc is not None:
                    v.proc.kill()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 in {timeout:.0f} s")


class Workload:
    def __init__(self, port: int, token: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def fault(self) -> float:
        r = httpx.post(f"{self.url}/control/fault", json={"kind": "errors", "rate": 1.0}, headers=self.headers)
        r.raise_for_status()
        return time.monotonic()

    def clear(self) -> float:
        httpx.delete(f"{self.url}/control/fault", headers=self.headers).raise_for_status()
        return time.monotonic()


def start_peer(children: Children, work: Path, workload_port: int, hook: str) -> tuple[str, str]:
    """Prometheus and Alertmanager with their default intervals; returns their URLs."""
    am_port, prom_port = free_port(), free_port()
    (work / "am.yml").write_text(
        f"route: {{receiver: hook}}\nreceivers:\n  - name: hook\n    webhook_configs: [{{url: '{hook}/peer'}}]\n"
    )
    (work / "rules.yml").write_text(PEER_RULES)
    (work / "prom.yml").write_text(  # no global block: scrape_interval and evaluation_interval default to 1m
        f"rule_files: [{work / 'rules.yml'}]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]}}\n"
        f"scrape_configs:\n  - job_name: workload\n    static_configs: [{{targets: ['127.0.0.1:{workload_port}']}}]\n"
    )
    check = subprocess.run(["promtool", "check", "config", str(work / "prom.yml")], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(check.stdout + check.stderr)
    children.popen(
        [
            "prometheus-alertmanager",
            f"--config.file={work / 'am.yml'}",
            f"--storage.path={work / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        work / "alertmanager.log",
    )
    children.popen(
        [
            "prometheus",
            f"--config.file={work / 'prom.yml'}",
            f"--storage.tsdb.path={work / 'prom'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        work / "prometheus.log",
    )
    am, prom = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
    wait_http(f"{am}/-/ready", 60)
    wait_http(f"{prom}/-/ready", 60)
    return prom, am


def trial(
    rx: Receiver, wl: Workload, names: list[tuple[str, str]], fire_timeout: float, resolve_timeout: float
) -> dict[str, dict[str, float | None]]:
    """One fault: seconds to each (source, alertname)'s firing and, after the clear, to its resolved message."""
    out: dict[str, dict[str, float | None]] = {}
    t0 = wl.fault()
    for source, name in names:
        fired = rx.wait(source, name, "firing", t0, max(1.0, t0 + fire_timeout - time.monotonic()))
        out[f"{source}:{name}"] = {"fire_s": fired}
    t1 = wl.clear()
    for source, name in names:
        rx.wait(source, name, "resolved", t1, max(1.0, t1 + resolve_timeout - time.monotonic()))
    rx.quiet(t1 + resolve_timeout, quiet_s=12.0)  # longer than group_interval (5 s): a flap would show
    for source, name in names:
        after = [e for e in rx.events if e.at >= t1 and (e.source, e.alertname) == (source, name)]
        # A rule near its threshold may resolve, fire again and resolve again as the window drains:
        # the page that counts is the last resolved message, and each re-fire is a second page.
        last = after[-1] if after and after[-1].status == "resolved" else None
        out[f"{source}:{name}"]["resolve_s"] = last.at - t1 if last else None
        out[f"{source}:{name}"]["refired"] = sum(e.status == "firing" for e in after)
    out["_load"] = {"loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0])}
    return out


def peer_quiet(prom: str, rx: Receiver, warmup_s: float, timeout: float) -> None:
    """Wait `warmup_s` of healthy traffic, then until Prometheus has no alert and Alertmanager last said resolved."""
    time.sleep(warmup_s)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        with rx.cond:
            last = [e.status for e in rx.events if (e.source, e.alertname) == ("peer", PEER_RULE)][-1:]
        if not alerts and last in ([], ["resolved"]):
            return
        time.sleep(5)
    raise RuntimeError(f"the peer did not go quiet in {timeout:.0f} s")


def up_flags(workload_port: int) -> tuple[str, ...]:
    return ("--workload-port", str(workload_port))


def cost(children: Children, work: Path, seconds: float, warmup: float) -> dict[str, float]:
    """Process CPU of `vigil up` with the default pack vs without, side by side over the same window."""
    runs: dict[str, tuple[LocalVigil, str]] = {}
    agents: list[subprocess.Popen[bytes]] = []
    for name, env in (("rules", {}), ("norules", {"VIGIL_DEFAULT_RULES": "0"})):
        data = work / f"cost-{name}"
        data.mkdir()
        token = secrets.token_urlsafe(16)
        v = LocalVigil(
            data, env={**env, "VIGIL_CONTROL_TOKEN": token, "VIGIL_WEBHOOK_URL": ""}, flags=up_flags(free_port())
        )
        children.vigil(v)
        agents.append(
            children.popen(  # 4 more simulated GPUs on a second node: 8 in all
                [
                    sys.executable,
                    "-m",
                    "vigil.cli",
                    "agent",
                    "--collector",
                    v.url,
                    "--simulate",
                    "4",
                    "--interval",
                    "1",
                    "--hostname",
                    f"bench-node2-{name}",
                ],
                work / f"agent2-{name}.log",
            )
        )
        runs[name] = (v, token)
    time.sleep(warmup)

    def eval_seconds(v: LocalVigil) -> float:
        text = httpx.get(f"{v.url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("vigil_alerting_evaluation_duration_seconds_sum")
        )

    before = {n: (cpu_seconds(v.pid), eval_seconds(v)) for n, (v, _) in runs.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    after = {n: (cpu_seconds(v.pid), eval_seconds(v)) for n, (v, _) in runs.items()}
    result = {f"{n}_cpu_pct": 100 * (after[n][0] - before[n][0]) / elapsed for n in runs} | {
        "seconds": elapsed,
        "eval_wall_pct": 100 * (after["rules"][1] - before["rules"][1]) / elapsed,
    }
    result["evaluator_cpu_pct"] = result["rules_cpu_pct"] - result["norules_cpu_pct"]
    result["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
    for agent in agents:
        agent.terminate()
    for v, _ in runs.values():
        children.stop(v)
    return result


def summarize(trials: list[dict[str, dict[str, float | None]]], key: str) -> dict[str, object]:
    fires = [t[key]["fire_s"] for t in trials if key in t]
    resolves = [t[key].get("resolve_s") for t in trials if key in t]
    got_f = [x for x in fires if x is not None]
    got_r = [x for x in resolves if x is not None]
    return {
        "trials": len(fires),
        "fire_p50_s": statistics.median(got_f) if got_f else None,
        "fire_p95_s": pct(got_f, 95) if got_f else None,
        "fire_max_s": max(got_f) if got_f else None,
        "fire_missed": len(fires) - len(got_f),
        "resolve_p50_s": statistics.median(got_r) if got_r else None,
        "resolve_max_s": max(got_r) if got_r else None,
        "resolve_missed": len(resolves) - len(got_r),
        "refired": sum(int(t[key].get("refired") or 0) for t in trials if key in t),
        "fire_s": fires,
        "resolve_s": resolves,
    }


def fmt(x: object) -> str:
    return f"{x:6.1f}" if isinstance(x, float) else f"{x!s:>6}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5, help="Vigil-only trials (>= 5 for the issue)")
    ap.add_argument("--peer-trials", type=int, default=3, help="trials timing the peer (and Vigil again)")
    ap.add_argument("--peer-resolve-timeout", type=float, default=660.0, help="longest wait for the peer's resolve")
    ap.add_argument("--warmup", type=float, default=45.0, help="healthy traffic before the first fault, seconds")
    ap.add_argument("--cost-seconds", type=float, default=60.0)
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 peer trial (resolve waited 420 s at most), the cost measured during it",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.peer_trials, args.peer_resolve_timeout = 1, min(args.peer_resolve_timeout, 420.0)
    for tool in ("prometheus", "prometheus-alertmanager", "promtool"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install prometheus prometheus-alertmanager")

    children = Children()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    started = time.monotonic()
    report: dict[str, object] = {"loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="vigil-alert-bench-") as tmp:
        work = Path(tmp)
        try:
            rx = Receiver()
            hook = rx.start()
            rules = work / "rules"
            rules.mkdir()
            (rules / "bench.yaml").write_text(VIGIL_RULES)
            check = subprocess.run(
                [sys.executable, "-m", "vigil.cli", "alerting", "check", str(rules / "bench.yaml")],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if check.returncode:
                raise RuntimeError(f"rule file refused: {check.stdout}{check.stderr}")
            token, workload_port = secrets.token_urlsafe(16), free_port()
            (work / "vigil").mkdir()
            vigil = children.vigil(
                LocalVigil(
                    work / "vigil",
                    env={
                        "VIGIL_CONTROL_TOKEN": token,
                        "VIGIL_WEBHOOK_URL": f"{hook}/vigil",
                        "VIGIL_RULES_DIR": str(rules),
                    },
                    flags=up_flags(workload_port),
                )
            )
            wl = Workload(workload_port, token)
            wait_http(f"{wl.url}/health", 240)
            prom, _ = start_peer(children, work, workload_port, hook)  # warms up during Vigil's trials
            print(f"vigil up on {vigil.url}, workload {wl.url}, prometheus {prom}", flush=True)
            cost_result: dict[str, float] = {}
            cost_thread = None
            if not args.no_cost:
                if args.quick:  # the peer mostly waits on its 1 m intervals: measure the cost meanwhile
                    cost_thread = threading.Thread(
                        target=lambda: cost_result.update(cost(children, work, args.cost_seconds, 40)), daemon=True
                    )
                    cost_thread.start()
                else:
                    cost_result = cost(children, work, args.cost_seconds, 40)
            # The peer first: Prometheus needs two 1 m scrapes of healthy traffic, and Vigil's own trials
            # would keep its 2 m window erroring for minutes.
            if args.peer_trials == 0:
                time.sleep(args.warmup)
            vigil_names = [("vigil", VIGIL_RULE), ("vigil", OUTAGE_RULE)]
            peer_trials = []
            for i in range(args.peer_trials):
                peer_quiet(prom, rx, warmup_s=max(args.warmup, PEER_WARMUP_S) if i == 0 else 0.0, timeout=900)
                peer_trials.append(
                    trial(
                        rx,
                        wl,
                        [("peer", PEER_RULE), *vigil_names],
                        fire_timeout=300,
                        resolve_timeout=args.peer_resolve_timeout,
                    )
                )
                print(f"peer trial {i + 1}: {json.dumps(peer_trials[-1])}", flush=True)
            trials = []
            for i in range(args.trials):
                trials.append(trial(rx, wl, vigil_names, fire_timeout=60, resolve_timeout=120))
                print(f"vigil trial {i + 1}: {json.dumps(trials[-1])}", flush=True)
            if cost_thread is not None:
                cost_thread.join(600)
            report |= {
                "vigil": summarize(trials + peer_trials, f"vigil:{VIGIL_RULE}"),
                "vigil_outage": summarize(trials + peer_trials, f"vigil:{OUTAGE_RULE}"),
                "peer": summarize(peer_trials, f"peer:{PEER_RULE}"),
                "cost": cost_result,
                "trial_loadavg_1m": [t["_load"]["loadavg_1m"] for t in trials + peer_trials],
                "loadavg_end": loadavg(),
                "wall_s": round(time.monotonic() - started),
                "cores": os.cpu_count(),
            }
        finally:
            children.close()
    print_report(report, args.json)
    return 0


def print_report(r: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(r, indent=2))
        return
    print(
        f"\n{r['cores']} cores, load average at start {r['loadavg_start']}, at end {r['loadavg_end']}, {r['wall_s']} s"
    )
    print(
        f"{'':34}{'trials':>7}{'fire p50':>9}{'p95':>7}{'max':>7}{'resolved p50':>13}{'max':>7}  missed f/r  re-fired"
    )
    rows = (
        ("Vigil  rate[30s] ratio > 0.05", "vigil"),
        ("Vigil  InferenceOutage (pack)", "vigil_outage"),
        ("Prom+AM rate[2m] ratio, defaults", "peer"),
    )
    for label, key in rows:
        s = r[key]
        assert isinstance(s, dict)
        print(
            f"{label:34}{s['trials']:>7}{fmt(s['fire_p50_s']):>9}{fmt(s['fire_p95_s']):>7}{fmt(s['fire_max_s']):>7}"
            f"{fmt(s['resolve_p50_s']):>13}{fmt(s['resolve_max_s']):>7}"
            f"  {s['fire_missed']}/{s['resolve_missed']}{s['refired']:>10}"
        )
    v, p = r["vigil"], r["peer"]
    assert isinstance(v, dict) and isinstance(p, dict)
    if v["fire_p50_s"] and p["fire_p50_s"]:
        print(f"peer/Vigil time to page: p50 {p['fire_p50_s'] / v['fire_p50_s']:.0f}x", end="")
        print(f", p95 {p['fire_p95_s'] / v['fire_p95_s']:.0f}x" if v["fire_p95_s"] and p["fire_p95_s"] else "")
    c = r["cost"]
    if isinstance(c, dict) and c:
        print(
            f"cost over {c['seconds']:.0f} s (8 simulated GPUs + workload):"
            f" vigil up {c['rules_cpu_pct']:.1f} % of a core"
            f" with the default pack, {c['norules_cpu_pct']:.1f} % without -> evaluator {c['evaluator_cpu_pct']:.1f} %"
            f" (its evaluations' wall time {c['eval_wall_pct']:.1f} % of the window); load {c['loadavg_1m']}"
        )
    print(
        f"goals: Vigil p95 <= {GOAL_FIRE_P95_S:.0f} s, resolved <= {GOAL_RESOLVE_S:.0f} s after the clear,"
        f" evaluator <= {GOAL_CPU_PCT:.0f} % of a core"
    )


if __name__ == "__main__":
    sys.exit(main())
