"""A small fleet's utilization history for the usage tests, and the numbers its rules give, computed
here in Python from the points themselves (an oracle that shares no SQL with the store)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from vigil.store import Store
from vigil.store import usage as u
from vigil.store.read import NONE_LABEL
from vigil.store.schema import GAUGE

DAY, HOUR, INTERVAL = 86_400, 3600, 60
DAYS = 2
NASTY = "<script>alert(1)</script>'); DROP TABLE otel_metrics_gauge; --"
# (uuid, host, model, resource attributes, first hour it reports): two teams, one GPU without a team,
# one that joins late (so allocated hours differ), and a team whose name is hostile markup and SQL.
GPUS = [
    ("GPU-a0", "n1", "H100", {"team": "ml", "k8s.cluster.name": "east"}, 0),
    ("GPU-a1", "n1", "H100", {"team": "ml", "k8s.cluster.name": "east"}, 0),
    ("GPU-b0", "n2", "A100", {"team": "infra", "k8s.cluster.name": "west"}, 0),
    ("GPU-b1", "n2", "A100", {"team": "infra", "k8s.cluster.name": "west"}, 30),
    ("GPU-c0", "n3", "A100", {"k8s.cluster.name": "west"}, 0),
    ("GPU-x0", "n4", "L4", {"team": NASTY, "k8s.cluster.name": "east"}, 40),
]


@dataclass(frozen=True)
class Point:
    uuid: str
    resource: dict[str, str]
    model: str
    t: int  # unix seconds
    value: float


def fleet(base: int, seed: int = 7) -> list[Point]:
    """`DAYS` days from `base` at one point per `INTERVAL` s. Each GPU-hour is either idle (0 to 3 %)
    or busy (20 to 100 %), so no hour's mean sits near the 5 % threshold and the idle count is exact."""
    rng = random.Random(seed)
    points = []
    for uuid, host, model, attrs, first_hour in GPUS:
        resource = {"host.name": host, "vigil.simulated": "true", **attrs}
        for hour in range(first_hour, DAYS * 24):
            low, high = (0.0, 3.0) if rng.random() < 0.3 else (20.0, 100.0)
            for s in range(0, HOUR, INTERVAL):
                points.append(Point(uuid, resource, model, base + hour * HOUR + s, rng.uniform(low, high)))
    rng.shuffle(points)
    return points


def insert(store: Store, points: list[Point]) -> None:
    """Through the store's insert path, in several blocks so the rollups merge partial states."""
    for i in range(0, len(points), 2500):
        part = points[i : i + 2500]
        store.insert_columns(
            GAUGE,
            [
                ["gpu.utilization"] * len(part),
                [p.resource for p in part],
                [{"gpu.uuid": p.uuid, "gpu.index": "0", "gpu.model": p.model} for p in part],
                [p.t * 10**9 for p in part],
                [p.value for p in part],
            ],
            ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
        )


def group_of(p: Point, key: str) -> str:
    if key == "gpu.model":
        return p.model
    return p.resource.get(key, NONE_LABEL)


def expected(points: list[Point], key: str, step: int, threshold: float = 5.0) -> dict[str, object]:
    """Per group: the series of sample means, and allocated/busy/idle GPU-hours and GPU count."""
    samples: dict[tuple[str, int], list[float]] = defaultdict(list)
    per_gpu: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for p in points:
        bucket = p.t // step * step
        samples[(group_of(p, key), bucket)].append(p.value)
        per_gpu[(group_of(p, key), p.uuid, bucket)].append(p.value)
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (g, bucket), values in sorted(samples.items()):
        series[g].append((bucket, sum(values) / len(values)))
    hours: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    gpus: dict[str, set[str]] = defaultdict(set)
    for (g, uuid, _), values in per_gpu.items():
        mean = sum(values) / len(values)
        hours[g][0] += step / HOUR
        hours[g][1] += mean / 100 * step / HOUR
        hours[g][2] += step / HOUR if mean < threshold else 0.0
        gpus[g].add(uuid)
    return {"series": dict(series), "hours": {g: (*h, len(gpus[g])) for g, h in hours.items()}}


def answers(store: Store, q: u.UsageQuery) -> dict[str, Any]:
    """Every history answer to `q`: the three series measures, GPU-hours, and the idlest and hottest GPUs."""
    out: dict[str, Any] = {
        m: [(s.labels, s.points) for s in u.series(store, q, m).series]  # type: ignore[arg-type]
        for m in ("avg", "busy", "allocated")
    }
    out["hours"] = u.gpu_hours(store, q)
    out["idle"] = u.top_gpus(store, q, "idle")
    out["hot"] = u.top_gpus(store, q, "hot")
    return out


def load_fresh(store: Store) -> int:
    """Empty the gauge tables and their rollups, load the fleet two days back; return its base time."""
    from vigil.store.schema import ROLLUP_1H, ROLLUP_1M
    from vigil.store.schema_history import GAUGE_HISTORY

    for table in (GAUGE, ROLLUP_1M, ROLLUP_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    base = (int(time.time()) // DAY - DAYS - 1) * DAY
    insert(store, fleet(base))
    return base
