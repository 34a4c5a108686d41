"""`vigil backfill`: days of simulated fleet history written straight into the store's raw gauge table.

The points are older than the collector accepts (`VIGIL_MAX_POINT_AGE_HOURS`), so they go through
`Store.insert_arrow`, the collector writer's own call, and reach the 1-minute and 1-hour rollups
through the same materialized views as live data; rows past the raw TTL then leave the raw table
by its TTL, as live rows would. Each point carries the step as its `IntervalSeconds`, as the
collector records a series' interval: at a step of a minute or more a point is its own 1-minute
row, kept in the raw table rather than copied into the rollup (`vigil.store.schema_minutes`).

The fleet (deterministic for a seed, so the Prometheus benchmark can load the very same values):
- 8 GPUs per node; nodes spread over clusters round-robin; whole nodes per team, teams of Zipf
  sizes (the first about twice the second), every series with `team`, `k8s.cluster.name`,
  `host.name` and `vigil.simulated=true`;
- each team's demand follows the day (low at 03:00 UTC, high at 15:00) and the week (weekends
  about half); a GPU is busy while its rank in its team is under the demand, so GPUs idle by
  night first; a tenth of the GPUs never work (allocated but idle);
- utilization is a whole percent, as the agent reports it; power, temperature and memory follow it.

Noise comes from a generator seeded by (seed, block of `BLOCK` steps), never by chunk size, so
any chunking, and any subset of metrics, gives the same value for the same GPU and time.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vigil import names as n
from vigil.store import Store
from vigil.store.columns import GAUGE, INTERVAL, arrow_types
from vigil.store.schema import ROLLUP_1H
from vigil.store.schema_history import GAUGE_HISTORY

GPUS_PER_NODE = 8
BLOCK = 64  # steps per noise block: the unit the random stream is keyed by
DAY, WEEK_DAY_OFFSET = 86_400, 3  # 1970-01-01 was a Thursday: (days + 3) % 7 == 0 on Mondays
SERVICE_NAME, SCOPE_NAME = "vigil-gpu-agent", "vigil.gpu_agent.gpu"
MEMORY_TOTAL = 85_520_809_984  # what NVML reports for an 80 GB card
CONTEXT_BYTES = 512 * 2**20
POWER_IDLE_W, POWER_LIMIT_W = 72.0, 700.0
MODELS = ("NVIDIA H100 80GB HBM3 (simulated)", "NVIDIA A100-SXM4-80GB (simulated)")
TEAMS = ("ml-platform", "search", "recsys", "speech", "vision", "research", "ads", "safety")
CLUSTERS = ("prod-us-east", "prod-eu-west", "prod-ap-south", "research-us-central")
METRICS: tuple[n.Metric, ...] = (
    n.GPU_UTILIZATION,
    n.GPU_MEMORY_USED,
    n.GPU_MEMORY_TOTAL,
    n.GPU_TEMPERATURE,
    n.GPU_POWER_DRAW,
)
METRIC_NAMES = tuple(m.name for m in METRICS)
_ARROW = arrow_types()


@dataclass(frozen=True)
class FleetSpec:
    gpus: int
    teams: int
    days: float
    step: int
    clusters: int = 1
    seed: int = 1
    metrics: tuple[str, ...] = METRIC_NAMES

    def __post_init__(self) -> None:
        checks = (
            (self.gpus >= 1, f"--gpus {self.gpus}: at least 1"),
            (self.teams >= 1, f"--teams {self.teams}: at least 1"),
            (
                self.teams <= -(-self.gpus // GPUS_PER_NODE),
                f"--teams {self.teams}: at most one team per node ({GPUS_PER_NODE} GPUs each; "
                f"--gpus {self.gpus} makes {-(-self.gpus // GPUS_PER_NODE)}): a team holds whole nodes",
            ),
            (self.clusters >= 1, f"--clusters {self.clusters}: at least 1"),
            (self.days > 0, f"--days {self.days}: more than 0"),
            (1 <= self.step <= DAY, f"--step {self.step}: from 1 to {DAY} seconds"),
            (bool(self.metrics), "name at least one metric"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        unknown = sorted(set(self.metrics) - set(METRIC_NAMES))
        if unknown:
            raise ValueError(f"metrics {', '.join(unknown)}: backfill simulates {', '.join(METRIC_NAMES)}")


def team_sizes(nodes: int, teams: int) -> list[int]:
    """Nodes per team: Zipf weights (1, 1/2, 1/3, ...) by largest remainder, each team at least one
    node while there are nodes enough."""
    weights = np.array([1.0 / (i + 1) for i in range(teams)])
    exact = weights / weights.sum() * nodes
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes))[: nodes - int(sizes.sum())]:
        sizes[i] += 1
    for i in range(teams):  # a team with no node takes one from the largest
        if sizes[i] == 0 and sizes.max() > 1:
            sizes[int(np.argmax(sizes))] -= 1
            sizes[i] = 1
    return [int(s) for s in sizes]


@dataclass
class Fleet:
    """The simulated GPUs of a spec, over `steps` points ending before `end` (unix seconds)."""

    spec: FleetSpec
    end: int
    team: np.ndarray = field(init=False)  # per GPU: index into team_names
    rank: np.ndarray = field(init=False)  # per GPU: busy while under its team's demand
    never_busy: np.ndarray = field(init=False)  # per GPU: allocated but never working
    share: np.ndarray = field(init=False)  # per GPU: how hard it works when busy
    team_base: np.ndarray = field(init=False)  # per team: its peak demand
    resources: list[dict[str, str]] = field(init=False)  # per GPU
    attributes: list[dict[str, str]] = field(init=False)  # per GPU
    team_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        self.end = self.end // spec.step * spec.step
        nodes = -(-spec.gpus // GPUS_PER_NODE)
        self.team_names = [_name(TEAMS, i, "team") for i in range(spec.teams)]
        node_team = np.repeat(np.arange(spec.teams), team_sizes(nodes, spec.teams))
        rng = np.random.default_rng([spec.seed, 0])
        team_list, self.resources, self.attributes = [], [], []
        for g in range(spec.gpus):
            node, index = divmod(g, GPUS_PER_NODE)
            cluster = node % spec.clusters
            host = f"gpu-{_name(CLUSTERS, cluster, 'cluster')}-{node:04d}"
            team_list.append(int(node_team[node]))
            self.resources.append(
                {
                    "service.name": SERVICE_NAME,
                    n.HOST_NAME: host,
                    "k8s.cluster.name": _name(CLUSTERS, cluster, "cluster"),
                    "team": self.team_names[node_team[node]],
                    n.SIMULATED: "true",
                }
            )
            self.attributes.append(
                {
                    n.GPU_INDEX: str(index),
                    n.GPU_UUID: f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{host}.backfill.vigil/{index}')}",
                    n.GPU_MODEL: MODELS[cluster % len(MODELS)],
                }
            )
        self.team = np.array(team_list)
        self.rank = rng.random(spec.gpus)  # busy while rank < the team's demand: low ranks work most
        self.never_busy = rng.random(spec.gpus) < 0.1
        self.share = rng.uniform(0.85, 1.1, spec.gpus)
        self.team_base = rng.uniform(0.55, 0.95, spec.teams)

    @property
    def steps(self) -> int:
        return int(self.spec.days * DAY) // self.spec.step

    @property
    def start(self) -> int:
        return self.end - self.steps * self.spec.step

    @property
    def samples(self) -> int:
        return self.steps * self.spec.gpus * len(self.spec.metrics)

    def times(self, i0: int, i1: int) -> np.ndarray:
        return self.start + np.arange(i0, i1, dtype=np.int64) * self.spec.step

    def chunks(self, rows: int) -> Iterator[tuple[int, int]]:
        """Step ranges [i0, i1) of about `rows` rows, whole noise blocks, at most a day each (an
        insert then touches at most two daily partitions)."""
        per_step = self.spec.gpus * len(self.spec.metrics)
        span = max(1, min(rows // per_step, DAY // self.spec.step) // BLOCK) * BLOCK
        for i0 in range(0, self.steps, span):
            yield i0, min(self.steps, i0 + span)

    def values(self, i0: int, i1: int) -> dict[str, np.ndarray]:
        """Each metric's values, shape (steps, gpus), for steps [i0, i1); i0 a multiple of BLOCK."""
        spec, g = self.spec, self.spec.gpus
        noise = np.concatenate(
            [np.random.default_rng([spec.seed, 1, b]).standard_normal((3, BLOCK, g)) for b in _blocks(i0, i1)], axis=1
        )[:, i0 % BLOCK : i0 % BLOCK + i1 - i0]
        t = self.times(i0, i1)
        hour = (t % DAY) / 3600.0
        daily = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3.0) / 24.0)
        weekend = ((t // DAY + WEEK_DAY_OFFSET) % 7) >= 5
        demand = (self.team_base[None, :] * (0.3 + 0.7 * daily)[:, None]) * np.where(weekend, 0.5, 1.0)[:, None]
        gpu_demand = demand[:, self.team]  # (steps, gpus)
        busy = (self.rank[None, :] < gpu_demand) & ~self.never_busy[None, :]
        working = np.clip(np.rint(45.0 + 50.0 * self.share * gpu_demand + 6.0 * noise[0]), 1, 100)
        idle = np.clip(np.rint(0.6 + 0.8 * noise[0]), 0, 3)
        util = np.where(busy, working, idle)
        out: dict[str, np.ndarray] = {}
        for name in spec.metrics:
            if name == n.GPU_UTILIZATION.name:
                out[name] = util
            elif name == n.GPU_MEMORY_USED.name:
                kv = np.where(busy, np.clip(util / 100.0 * 0.9, 0, 1), 0.0)
                loaded = np.where(self.never_busy, 0.0, 0.2)[None, :]
                used = MEMORY_TOTAL * (loaded + 0.68 * kv) + CONTEXT_BYTES
                out[name] = np.rint(used / 2**21) * 2**21  # whole 2 MiB pages, as the allocator hands out
            elif name == n.GPU_MEMORY_TOTAL.name:
                out[name] = np.full(util.shape, float(MEMORY_TOTAL))
            elif name == n.GPU_POWER_DRAW.name:
                out[name] = self._power(util, noise[1])
            elif name == n.GPU_TEMPERATURE.name:
                out[name] = np.rint(28.0 + self._power(util, noise[1]) * 0.066 + 0.5 * noise[2])
        return out

    @staticmethod
    def _power(util: np.ndarray, noise: np.ndarray) -> np.ndarray:
        watts = POWER_IDLE_W + (POWER_LIMIT_W - POWER_IDLE_W) * (util / 100.0) ** 1.3 + 3.0 * noise
        return np.round(np.maximum(POWER_IDLE_W * 0.8, watts), 1)


def _name(names: Sequence[str], i: int, prefix: str) -> str:
    return names[i] if i < len(names) else f"{prefix}-{i}"


def _blocks(i0: int, i1: int) -> range:
    return range(i0 // BLOCK, -(-i1 // BLOCK))


class ArrowBuilder:
    """Builds the gauge table's Arrow rows for a fleet: per-GPU maps converted once, then taken."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        metrics = {m.name: m for m in METRICS}
        chosen = [metrics[name] for name in fleet.spec.metrics]
        self.resources = pa.array([list(r.items()) for r in fleet.resources], type=_ARROW["ResourceAttributes"])
        self.attributes = pa.array([list(a.items()) for a in fleet.attributes], type=_ARROW["Attributes"])
        self.names = _per_metric([m.name for m in chosen])
        self.units = _per_metric([m.unit for m in chosen])
        self.descriptions = _per_metric([m.description for m in chosen])
        self.service = pa.array([SERVICE_NAME])
        self.scope = pa.array([SCOPE_NAME])

    def table(self, i0: int, i1: int, values: dict[str, np.ndarray]) -> pa.Table:
        """Rows ordered metric, GPU, time: the raw table's sort order, so the engine's sort is cheap."""
        spec = self.fleet.spec
        k, g, m = i1 - i0, spec.gpus, len(spec.metrics)
        gpu = np.tile(np.repeat(np.arange(g, dtype=np.int32), k), m)
        metric = np.repeat(np.arange(m, dtype=np.int32), g * k)
        times = pa.array(np.tile(self.fleet.times(i0, i1) * 10**9, g * m), type=pa.timestamp("ns"))
        value = np.concatenate([values[name].T.ravel() for name in spec.metrics])
        zeros = pa.array(np.zeros(g * k * m, dtype=np.int32))
        metric_index = pa.array(metric)
        # every point is `step` after its series' previous one: at a minute or more, its own minute row
        interval = pa.array(np.full(g * k * m, spec.step, dtype=np.uint32))
        # Constant strings as dictionaries: no copy per row, and the engine reads them into String.
        return pa.Table.from_arrays(
            [
                self.resources.take(gpu),
                pa.DictionaryArray.from_arrays(zeros, self.service),
                pa.DictionaryArray.from_arrays(zeros, self.scope),
                self.names(metric_index),
                self.descriptions(metric_index),
                self.units(metric_index),
                self.attributes.take(gpu),
                times,
                pa.array(value, type=pa.float64()),
                interval,
            ],
            names=[
                "ResourceAttributes",
                "ServiceName",
                "ScopeName",
                "MetricName",
                "MetricDescription",
                "MetricUnit",
                "Attributes",
                "TimeUnix",
                "Value",
                INTERVAL,
            ],
        )


def _per_metric(values: list[str]) -> Callable[[pa.Array], pa.DictionaryArray]:
    """A column of one string per metric, as a dictionary (the engine refuses one with duplicates)."""
    distinct = sorted(set(values))
    slot = pa.array([distinct.index(v) for v in values], type=pa.int32())
    dictionary = pa.array(distinct)
    return lambda metric: pa.DictionaryArray.from_arrays(slot.take(metric), dictionary)


@dataclass(frozen=True)
class BackfillReport:
    rows: int
    seconds: float
    store_rows_per_s: float | None = None  # --measure: the store's insert alone, on prebuilt tables
    backfill_rows_per_s: float | None = None  # --measure: generation and insert, the rest of the run
    merged_s: float = 0.0  # merging the history tables afterwards (`settle`), not in the rates

    def as_dict(self) -> dict[str, float | int | None]:
        ratio = (
            self.backfill_rows_per_s / self.store_rows_per_s
            if self.store_rows_per_s and self.backfill_rows_per_s
            else None
        )
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows / self.seconds) if self.seconds else None,
            "store_rows_per_s": round(self.store_rows_per_s) if self.store_rows_per_s else None,
            "backfill_rows_per_s": round(self.backfill_rows_per_s) if self.backfill_rows_per_s else None,
            "ratio": round(ratio, 3) if ratio else None,
            "merged_s": round(self.merged_s, 3),
        }


Progress = Callable[[int], None]  # called with the rows just written


def _produce(fleet: Fleet, builder: ArrowBuilder, chunks: list[tuple[int, int]], out: queue.Queue) -> None:
    try:
        for i0, i1 in chunks:
            out.put((i0, builder.table(i0, i1, fleet.values(i0, i1))))
        out.put(None)
    except BaseException as exc:  # handed to the consumer, which raises it
        out.put(exc)


def write(
    store: Store,
    fleet: Fleet,
    *,
    chunk_rows: int = 1_000_000,
    progress: Progress | None = None,
    measure: bool = False,
) -> BackfillReport:
    """Write the fleet's history into the raw gauge table.

    Tables are built in a thread while the previous one is inserted (numpy, Arrow and the engine
    release the interpreter lock), at most two ahead, so memory stays at a few chunks.
    `measure`: the first and the last tenth of the chunks are each built before its clock starts and
    timed on the insert alone (the store's own columnar rate: the same chunk size, the same table);
    the chunks between are timed end to end. Bracketing the run this way lets both rates see an empty
    table and a full one with its background merges, so neither is measured on the easier half.
    """
    builder = ArrowBuilder(fleet)
    chunks = list(fleet.chunks(chunk_rows))
    started = time.perf_counter()
    head: list[tuple[int, int]] = []
    tail: list[tuple[int, int]] = []
    if measure and len(chunks) > 2:
        k = max(1, len(chunks) // 10)
        head, chunks, tail = chunks[:k], chunks[k:-k], chunks[-k:]
    store_rows, store_s = _insert_alone(store, fleet, builder, head, progress)
    rest_started = time.perf_counter()
    rest_rows = _insert_pipelined(store, fleet, builder, chunks, progress)
    rest_s = time.perf_counter() - rest_started
    more_rows, more_s = _insert_alone(store, fleet, builder, tail, progress)
    store_rows, store_s = store_rows + more_rows, store_s + more_s
    ended = time.perf_counter()
    store_rate = store_rows / store_s if store_s else None
    backfill_rate = rest_rows / rest_s if measure and store_rows and rest_rows else None
    merged_s = settle(store)
    return BackfillReport(store_rows + rest_rows, ended - started, store_rate, backfill_rate, merged_s)


# What history reads read: a bulk load leaves them merged, so the first reads after it do not pay for
# parts the background merges would fold over the server's first minutes (the series table held each
# series four times after a 30-day load, and a read merges those copies on the fly).
SETTLED = (*GAUGE_HISTORY, ROLLUP_1H)


def settle(store: Store) -> float:
    """Merge the history tables' parts (an embedded store only: a server merges on its own); the seconds it took."""
    if not store.embedded:
        return 0.0
    started = time.perf_counter()
    for table in SETTLED:
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    return time.perf_counter() - started


def _insert_alone(
    store: Store, fleet: Fleet, builder: ArrowBuilder, chunks: list[tuple[int, int]], progress: Progress | None
) -> tuple[int, float]:
    """Insert `chunks`, each built before the clock starts: (rows, seconds spent inserting)."""
    rows, seconds = 0, 0.0
    for i0, i1 in chunks:
        table = builder.table(i0, i1, fleet.values(i0, i1))
        timed = time.perf_counter()
        store.insert_arrow(GAUGE, table, dedup_token=_token(fleet, i0))
        seconds += time.perf_counter() - timed
        rows += table.num_rows
        if progress:
            progress(table.num_rows)
    return rows, seconds


def _insert_pipelined(
    store: Store, fleet: Fleet, builder: ArrowBuilder, chunks: list[tuple[int, int]], progress: Progress | None
) -> int:
    """Insert `chunks` built in a thread, at most two ahead; the rows written."""
    rows = 0
    pending: queue.Queue = queue.Queue(maxsize=2)
    producer = threading.Thread(target=_produce, args=(fleet, builder, chunks, pending), daemon=True)
    producer.start()
    while (item := pending.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        i0, table = item
        store.insert_arrow(GAUGE, table, dedup_token=_token(fleet, i0))
        rows += table.num_rows
        if progress:
            progress(table.num_rows)
    producer.join()
    return rows


def _token(fleet: Fleet, i0: int) -> str:
    # The same backfill run twice writes nothing the second time (the table remembers recent tokens).
    s = fleet.spec
    return (
        f"backfill:{s.seed}:{s.gpus}:{s.teams}:{s.clusters}:{s.step}:{fleet.start + i0 * s.step}:{','.join(s.metrics)}"
    )
