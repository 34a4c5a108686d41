"""Ingest benchmark: OTLP points/s through `vigil up` against the store's own columnar insert rate.

    python bench/ingest.py [--seconds 15] [--threads 2] [--gzip] [--json]

Two client threads post OTLP/protobuf requests of 25,000 gauge points (1,000 GPUs x 25 metrics,
125 nodes of 8 GPUs) to `vigil up --no-agent --no-workload` for `--seconds`. Then, in the same
run, a separate process inserts the same rows (converted once, outside the clock) into a fresh
store with the same schema, in batches of the collector's batch size, and times only the inserts.
The figure is the ratio of the two rates. Goal: >= 250,000 points/s and a ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest  # noqa: E402

from tests.local import LocalVigil  # noqa: E402

NODES, GPUS_PER_NODE, METRICS = 125, 8, 25
POINTS = NODES * GPUS_PER_NODE * METRICS
SENTINEL_TS = 0x0123456789ABCDEF  # patched per request: the 8 bytes never occur elsewhere in the body
METRIC_NAMES = [
    "gpu.utilization",
    "gpu.memory.used",
    "gpu.memory.free",
    "gpu.power.draw",
    "gpu.temperature",
    "gpu.clock.sm",
    "gpu.clock.memory",
    "gpu.pcie.tx",
    "gpu.pcie.rx",
    "gpu.memory.temperature",
    "gpu.energy",
    "gpu.utilization.memory",
    "gpu.utilization.encoder",
    "gpu.utilization.decoder",
    "gpu.clock_event_reasons",
    "gpu.violation.power",
    "gpu.violation.thermal",
    "gpu.ecc.sbe",
    "gpu.ecc.dbe",
    "gpu.remapped_rows.correctable",
    "gpu.remapped_rows.uncorrectable",
    "gpu.pcie.replay",
    "gpu.nvlink.tx",
    "gpu.nvlink.rx",
    "gpu.memory.reserved",
]


def template() -> bytes:
    req = ExportMetricsServiceRequest()
    for node in range(NODES):
        rm = req.resource_metrics.add()
        for key, value in (
            ("service.name", "vigil-gpu-agent"),
            ("host.name", f"gpu-node-{node:04d}"),
            ("k8s.cluster.name", "bench"),
            ("team", f"team-{node % 7}"),
        ):
            rm.resource.attributes.add(key=key).value.string_value = value
        sm = rm.scope_metrics.add()
        sm.scope.name = "vigil.gpu_agent"
        for m, name in enumerate(METRIC_NAMES):
            metric = sm.metrics.add(name=name, unit="1")
            for gpu in range(GPUS_PER_NODE):
                dp = metric.gauge.data_points.add(time_unix_nano=SENTINEL_TS, as_double=float(gpu * 7 + m))
                for key, value in (
                    ("gpu.index", str(gpu)),
                    ("gpu.uuid", f"GPU-{node:04d}-{gpu}"),
                    ("gpu.model", "NVIDIA H100 80GB HBM3"),
                ):
                    dp.attributes.add(key=key).value.string_value = value
    return req.SerializeToString()


class Bodies:
    """Request bodies with unique timestamps, made by patching the template's fixed64 times."""

    def __init__(self) -> None:
        self.template = template()
        self.needle = struct.pack("<Q", SENTINEL_TS)
        assert self.template.count(self.needle) == POINTS
        self.base = time.time_ns()
        self.counter = 0
        self.lock = threading.Lock()

    def next(self) -> bytes:
        with self.lock:
            self.counter += 1
            ts = self.base + self.counter
        return self.template.replace(self.needle, struct.pack("<Q", ts))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_collector(seconds: float, threads: int, use_gzip: bool, data: Path) -> dict[str, float]:
    import gzip

    server = LocalVigil(data).start()
    pid, url = server.pid, server.url
    try:
        bodies = Bodies()
        headers = {"Content-Type": "application/x-protobuf"}
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        counts = {"ok": 0, "refused": 0, "failed": 0}
        latencies: list[float] = []
        lock = threading.Lock()
        stop_at = 0.0

        def client() -> None:
            with httpx.Client(timeout=60) as http:
                while time.monotonic() < stop_at:
                    body = bodies.next()
                    if use_gzip:
                        body = gzip.compress(body, 1)
                    started = time.monotonic()
                    status = http.post(f"{url}/v1/metrics", content=body, headers=headers).status_code
                    with lock:
                        latencies.append(time.monotonic() - started)
                        key = "ok" if status == 200 else "refused" if status in (429, 503) else "failed"
                        counts[key] += 1
                        if key == "refused":
                            time.sleep(0.05)

        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        stop_at = started + seconds
        workers = [threading.Thread(target=client) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
        rss = peak_rss_mb(pid)
        accepted = counts["ok"] * POINTS
        server.stop(timeout=30)
    finally:
        if server.running():
            server.stop(signal.SIGKILL)
    stored = int(server.query("SELECT count() FROM otel_metrics_gauge")[0][0])
    latencies.sort()
    return {
        "points_per_s": accepted / elapsed,
        "seconds": elapsed,
        "requests_ok": counts["ok"],
        "requests_refused": counts["refused"],
        "requests_failed": counts["failed"],
        "points_accepted": accepted,
        "rows_stored": stored,
        "cpu_s_per_million_points": cpu / (accepted / 1e6) if accepted else float("nan"),
        "server_cpu_cores": cpu / elapsed,
        "server_peak_rss_mb": rss,
        "request_p50_s": latencies[len(latencies) // 2] if latencies else float("nan"),
        "request_p99_s": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies (level 1)")
    parser.add_argument("--baseline-rows", type=int, default=2_000_000, help="rows the store baseline inserts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    try:
        collector = run_collector(args.seconds, args.threads, args.gzip, work / "collector")
        baseline = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench._store_insert",
                    str(work / "baseline" / "clickhouse"),
                    str(args.baseline_rows),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = collector["points_per_s"] / baseline["rows_per_s"]
    result = {"collector": collector, "store_baseline": baseline, "ratio": ratio}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c = collector
    print(
        f"requests of {POINTS:,} gauge points, {args.threads} client threads, {c['seconds']:.1f} s"
        f"{', gzip' if args.gzip else ''}"
    )
    print(
        f"  collector accepted      {c['points_per_s']:>12,.0f} points/s   ({c['requests_ok']} requests ok, "
        f"{c['requests_refused']} refused 429/503, {c['requests_failed']} failed)"
    )
    print(
        f"  collector CPU           {c['cpu_s_per_million_points']:>12.2f} s per million points "
        f"({c['server_cpu_cores']:.2f} cores busy, peak RSS {c['server_peak_rss_mb']:.0f} MB)"
    )
    print(f"  request latency         p50 {c['request_p50_s'] * 1000:.0f} ms, p99 {c['request_p99_s'] * 1000:.0f} ms")
    print(f"  rows stored             {c['rows_stored']:>12,}   (accepted {c['points_accepted']:,})")
    print(
        f"  store columnar insert   {baseline['rows_per_s']:>12,.0f} rows/s     "
        f"({baseline['rows']:,} rows in batches of {baseline['batch_rows']:,}, same schema)"
    )
    print(f"  ratio collector/store   {ratio:>12.2f}   (goal >= 0.5; points/s goal >= 250,000)")
    print("  peer: OpenTelemetry Collector sizing ~20,000 points/s per core")


if __name__ == "__main__":
    main()
