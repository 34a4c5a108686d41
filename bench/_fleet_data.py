"""The fleet bench/dashboard.py reads: the last hour of N simulated GPUs at 10 s, made with numpy.

Run as a child (`python -m bench._fleet_data PATH GPUS END`): the embedded store opens in one
process only, so the data goes in here and `vigil up` opens it afterwards. It inserts through
`Store.insert_arrow` (the call the collector's writer makes), in time order and in blocks of about
the collector's batch size, so the rollup views fill as they would from a live fleet; then it times
the fleet's store reads alone on the same data and prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from vigil import names as n
from vigil.store import Store, open_store
from vigil.store.columns import GAUGE, SUM, arrow_types
from vigil.store.fleet import FLEET_METRICS, LATEST_WINDOW_S, fleet, xid_counts
from vigil.store.read import latest_per_gpu
from vigil.store.schema import SchemaContext, migrate

GPUS_PER_NODE = 8
STEP_S = 10
HISTORY_S = 3600
TEAMS = ("ml-research", "inference", "training", "platform", "search", "ads", "speech")
CLUSTERS = ("us-east-1", "us-west-2", "eu-central-1")
MODELS = ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
AGENT = "vigil-gpu-agent"
XID_GPUS = 0.02  # share of GPUs with an XID counter in the hour
TYPES = arrow_types()


def identities(gpus: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(resource, point attributes) per GPU: 8 GPUs a node, teams and clusters by node."""
    resources, attributes = [], []
    for g in range(gpus):
        node = g // GPUS_PER_NODE
        resources.append(
            {
                "host.name": f"gpu-node-{node:04d}",
                "k8s.cluster.name": CLUSTERS[node % len(CLUSTERS)],
                "service.name": AGENT,
                "team": TEAMS[node % len(TEAMS)],
                n.SIMULATED: "true",
            }
        )
        attributes.append(
            {
                n.GPU_INDEX: str(g % GPUS_PER_NODE),
                n.GPU_MODEL: MODELS[node % 4 == 3],
                n.GPU_UUID: f"GPU-{node:04d}{g % GPUS_PER_NODE:02d}-bench-{g:06d}",
            }
        )
    return resources, attributes


def _maps(maps: list[dict[str, str]], index: np.ndarray) -> pa.Array:
    distinct = pa.array([sorted(m.items()) for m in maps], type=TYPES["Attributes"])
    return distinct.take(pa.array(index.astype(np.int32)))


def values_at(metric: str, gpu: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    phase = (gpu * 0.37 + t / 600.0) % (2 * np.pi)
    if metric == n.GPU_UP.name:
        return np.ones(len(gpu))
    if metric == n.GPU_UTILIZATION.name:
        return np.clip(55 + 40 * np.sin(phase) + rng.normal(0, 5, len(gpu)), 0, 100).round()
    if metric == n.GPU_MEMORY_USED.name:
        return np.clip(40e9 + 30e9 * np.sin(phase), 1e9, 80e9).round()
    if metric == n.GPU_MEMORY_TOTAL.name:
        return np.full(len(gpu), 80e9)
    if metric == n.GPU_TEMPERATURE.name:
        return (55 + 20 * np.sin(phase) + rng.normal(0, 1, len(gpu))).round()
    if metric == n.GPU_POWER_DRAW.name:
        return 350 + 300 * np.sin(phase) ** 2
    if metric == n.GPU_POWER_LIMIT.name:
        return np.full(len(gpu), 700.0)
    if metric == n.GPU_CLOCK_EVENT_REASONS.name:
        return np.where(gpu % 97 == 5, 0x20, 0x1).astype(float)  # a few GPUs thermally throttled
    return np.zeros(len(gpu))  # recovery action: none


def gauge_blocks(gpus: int, end_s: int, block_rows: int, seed: int = 7) -> list[pa.Table]:
    """The hour up to `end_s` of every fleet metric of every GPU, one table per block of whole timestamps."""
    rng = np.random.default_rng(seed)
    resources, attributes = identities(gpus)
    times = np.arange(end_s - HISTORY_S + STEP_S, end_s + 1, STEP_S, dtype=np.int64)
    per_t = gpus * len(FLEET_METRICS)
    t_per_block = max(1, block_rows // per_t)
    gpu_idx = np.tile(np.arange(gpus), len(FLEET_METRICS))
    metric_idx = np.repeat(np.arange(len(FLEET_METRICS)), gpus)
    names = pa.array(FLEET_METRICS).take(pa.array(metric_idx.astype(np.int32)))
    res_col, attr_col = _maps(resources, gpu_idx), _maps(attributes, gpu_idx)
    blocks = []
    for first in range(0, len(times), t_per_block):
        ts = times[first : first + t_per_block]
        k = len(ts)
        t_all = np.repeat(ts, per_t)
        g_all = np.tile(gpu_idx, k)
        value = np.empty(len(t_all))
        for m, metric in enumerate(FLEET_METRICS):
            mask = np.tile(metric_idx == m, k)
            value[mask] = values_at(metric, g_all[mask], t_all[mask], rng)
        jitter = (g_all * 7919) % 1_000_000_000  # agents do not sample in lockstep
        blocks.append(
            pa.table(
                {
                    "ResourceAttributes": pa.concat_arrays([res_col] * k),
                    "ServiceName": pa.array([AGENT] * len(t_all)),
                    "ScopeName": pa.array(["vigil.gpu_agent"] * len(t_all)),
                    "MetricName": pa.concat_arrays([names] * k),
                    "Attributes": pa.concat_arrays([attr_col] * k),
                    "TimeUnix": pa.array(t_all * 1_000_000_000 - jitter, type=TYPES["TimeUnix"]),
                    "Value": pa.array(value, type=pa.float64()),
                }
            )
        )
    return blocks


def xid_table(gpus: int, end_s: int, seed: int = 7) -> pa.Table:
    """A running XID counter for a few GPUs: one code each, rising inside the hour."""
    rng = np.random.default_rng(seed)
    resources, attributes = identities(gpus)
    codes = (13, 31, 48, 63, 79, 94)
    rows: list[tuple[dict[str, str], dict[str, str], int, float]] = []
    for g in rng.choice(gpus, max(1, int(gpus * XID_GPUS)), replace=False):
        attrs = {**attributes[g], n.XID: str(codes[g % len(codes)])}
        first = end_s - int(rng.integers(60, HISTORY_S))
        for i, t in enumerate(range(first, end_s + 1, 60)):
            rows.append((resources[g], attrs, t, float(1 + i // 10)))
    return pa.table(
        {
            "ResourceAttributes": pa.array([sorted(r[0].items()) for r in rows], type=TYPES["ResourceAttributes"]),
            "ServiceName": pa.array([AGENT] * len(rows)),
            "MetricName": pa.array([n.GPU_XID_ERRORS.name] * len(rows)),
            "Attributes": pa.array([sorted(r[1].items()) for r in rows], type=TYPES["Attributes"]),
            "TimeUnix": pa.array([r[2] * 1_000_000_000 for r in rows], type=TYPES["TimeUnix"]),
            "Value": pa.array([r[3] for r in rows], type=pa.float64()),
            "AggregationTemporality": pa.array([2] * len(rows), type=pa.int32()),
            "IsMonotonic": pa.array([True] * len(rows), type=pa.bool_()),
        }
    )


def load(store: Store, gpus: int, end_s: int, block_rows: int) -> dict[str, float]:
    started = time.perf_counter()
    blocks = gauge_blocks(gpus, end_s, block_rows)
    made = time.perf_counter()
    for i, block in enumerate(blocks):
        store.insert_arrow(GAUGE, block, dedup_token=f"bench-fleet-{end_s}-{i}")
    store.insert_arrow(SUM, xid_table(gpus, end_s), dedup_token=f"bench-xid-{end_s}")
    done = time.perf_counter()
    rows = sum(b.num_rows for b in blocks)
    return {"rows": rows, "generate_s": made - started, "insert_s": done - made, "rows_per_s": rows / (done - made)}


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm-up: first-read caches (marks, uncompressed blocks) are not what a busy page sees
    samples, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)  # all threads, the engine's included
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": samples[int(0.95 * (len(samples) - 1))],
        "cpu_p50_ms": statistics.median(cpu),
    }


def query_times(store: Store, now: float, runs: int) -> dict[str, dict[str, float]]:
    """The fleet's store reads alone, without HTTP or rendering: which one dominates."""
    return {
        "select_1": timed(lambda: store.query_rows("SELECT 1"), runs),
        "latest_per_gpu": timed(lambda: latest_per_gpu(store, FLEET_METRICS, now, window_s=LATEST_WINDOW_S), runs),
        "xid_counts": timed(lambda: xid_counts(store, now - 3600, now), runs),
        "fleet": timed(lambda: fleet(store, now, 3600), runs),
    }


def main() -> None:
    path, gpus, end_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    store = open_store(f"chdb://{path}")
    try:
        migrate(store, SchemaContext())
        loaded = load(store, gpus, end_s, block_rows=250_000)
        found = len(fleet(store, time.time(), 3600))
        queries = query_times(store, time.time(), runs)
    finally:
        store.close()
    print(json.dumps({"load": loaded, "gpus_found": found, "queries": queries}))


if __name__ == "__main__":
    main()
