"""The fleet at a glance: every GPU's latest values, XID counts over a window, and XID events.

A fleet page at a thousand GPUs must answer in about 150 ms, so it costs two queries whatever the
fleet's size: the latest value of each fleet metric per GPU (`latest_per_gpu`) and the XID counts per
GPU and code over the window (`xid_counts`). Nodes are folded from the same GPUs in memory.

XID counts: `gpu.xid.errors{xid}` is the agent's running count per GPU and code since it started, and
a series first appears at its first XID. A code's count over the window is the newest value in the
window less the newest value before it (looked back one window); where there is none before it, or the
counter went down (the agent restarted), the newest value itself: every XID since the series began.
A restart inside the window therefore loses the XIDs reported between the window's start and the
restart, never counts one twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil import names as n
from vigil.store.client import Store
from vigil.store.columns import SUM
from vigil.store.read import GPU_MIG_UUID, MAX_ROWS, GpuLatest, filter_sql, latest_per_gpu, run_limited

FLEET_METRICS = (
    n.GPU_UP.name,
    n.GPU_UTILIZATION.name,
    n.GPU_MEMORY_USED.name,
    n.GPU_MEMORY_TOTAL.name,
    n.GPU_TEMPERATURE.name,
    n.GPU_POWER_DRAW.name,
    n.GPU_POWER_LIMIT.name,
    n.GPU_CLOCK_EVENT_REASONS.name,
    n.GPU_RECOVERY_ACTION.name,
)
LATEST_WINDOW_S = 120.0  # a GPU that has not reported for this long is no longer "current"
# Reasons that mean lost performance; idle and the application's own clock settings are not throttling.
THROTTLING = {0x4, 0x8, 0x20, 0x40, 0x80}
RECOVERY_ACTIONS = {1: "GPU reset", 2: "node reboot", 3: "drain P2P", 4: "drain and reset"}


@dataclass(frozen=True)
class XidCount:
    code: int
    count: int
    meaning: str
    action: str

    @classmethod
    def of(cls, code: int, count: int) -> XidCount:
        meaning, action = n.XIDS.get(code, ("not in the catalogue", "see NVIDIA's XID documentation"))
        return cls(code, count, meaning, action)


@dataclass
class FleetGpu:
    """One GPU as the fleet page shows it; a MIG instance sits in its parent's `mig`, never beside it."""

    uuid: str
    mig_uuid: str
    resource: dict[str, str]
    attributes: dict[str, str]
    values: dict[str, float]
    time_ns: int
    xids: list[XidCount] = field(default_factory=list)
    mig: list[FleetGpu] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.resource.get(n.HOST_NAME, "")

    @property
    def simulated(self) -> bool:
        return self.resource.get(n.SIMULATED, "").lower() == "true"

    @property
    def throttle_reasons(self) -> list[str]:
        mask = int(self.values.get(n.GPU_CLOCK_EVENT_REASONS.name, 0))
        return [name for bit, name in n.CLOCK_EVENT_REASONS.items() if mask & bit and bit in THROTTLING]

    @property
    def health(self) -> str:
        """`lost` (fell off), `action` (the driver or an XID asks for a reset or drain), `throttled`, `ok`."""
        if self.values.get(n.GPU_UP.name, 1.0) == 0:
            return "lost"
        if self.values.get(n.GPU_RECOVERY_ACTION.name, 0) > 0:
            return "action"
        if any(("reset" in x.action or "drain" in x.action) for x in self.xids):
            return "action"
        return "throttled" if self.throttle_reasons else "ok"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            n.GPU_UUID: self.uuid,
            n.HOST_NAME: self.host,
            n.GPU_INDEX: self.attributes.get(n.GPU_INDEX, ""),
            n.GPU_MODEL: self.attributes.get(n.GPU_MODEL, self.resource.get(n.GPU_MODEL, "")),
            "team": self.resource.get("team", self.attributes.get("team", "")),
            "k8s.cluster.name": self.resource.get("k8s.cluster.name", ""),
            n.SIMULATED: self.simulated,
            "health": self.health,
            "throttle_reasons": self.throttle_reasons,
            "xids": [x.__dict__ for x in self.xids],
            "values": self.values,
            "time": self.time_ns / 1e9,
            "resource": self.resource,
            "attributes": self.attributes,
        }
        if self.mig_uuid:
            body[GPU_MIG_UUID] = self.mig_uuid
            body[n.GPU_MIG_PROFILE] = self.attributes.get(n.GPU_MIG_PROFILE, "")
        else:
            body["mig"] = [m.to_json() for m in self.mig]
        return body


@dataclass(frozen=True)
class Node:
    host: str
    gpus: int
    utilization: float | None  # mean over its GPUs that report one
    temperature_max: float | None
    power: float  # sum of its GPUs' draw, W
    memory_used: float
    memory_total: float
    xids: int  # all XIDs of its GPUs in the window
    unhealthy: int  # GPUs whose health is not ok
    simulated: bool
    resource: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "host"}, n.HOST_NAME: self.host}


def xid_sql(start_ns: int, end_ns: int, filters: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The SQL of `xid_counts`: per GPU, MIG instance and code, the newest value in the window and before it."""
    params: dict[str, Any] = {
        "metric": n.GPU_XID_ERRORS.name,
        "uuid_key": n.GPU_UUID,
        "mig_key": GPU_MIG_UUID,
        "xid_key": n.XID,
        "before": start_ns - (end_ns - start_ns),
        "start": start_ns,
        "end": end_ns,
    }
    sql = (
        "SELECT Attributes[{uuid_key:String}] AS uuid, Attributes[{mig_key:String}] AS mig,"
        " Attributes[{xid_key:String}] AS xid,\n"
        "    argMaxIf(Value, TimeUnix, TimeUnix >= fromUnixTimestamp64Nano({start:Int64})) AS last,\n"
        "    argMaxIf(Value, TimeUnix, TimeUnix < fromUnixTimestamp64Nano({start:Int64})) AS prior,\n"
        "    countIf(TimeUnix < fromUnixTimestamp64Nano({start:Int64})) AS n_prior\n"
        f"FROM {SUM}\n"
        "WHERE MetricName = {metric:String} AND mapContains(Attributes, {uuid_key:String})\n"
        "    AND TimeUnix >= fromUnixTimestamp64Nano({before:Int64})"
        " AND TimeUnix <= fromUnixTimestamp64Nano({end:Int64})"
        f"{filter_sql(filters, params)}\n"
        "GROUP BY uuid, mig, xid\n"
        "HAVING countIf(TimeUnix >= fromUnixTimestamp64Nano({start:Int64})) > 0"
    )
    return sql, params


def xid_counts(
    store: Store, start: float, end: float, filters: Mapping[str, str] | None = None, *, max_rows: int = MAX_ROWS
) -> dict[tuple[str, str], list[XidCount]]:
    """(gpu.uuid, gpu.mig.uuid or "") → the XIDs counted in [start, end], by code, codes with none left out."""
    sql, params = xid_sql(int(start * 1e9), int(end * 1e9), filters or {})
    out: dict[tuple[str, str], list[XidCount]] = {}
    for uuid, mig, xid, last, prior, n_prior in run_limited(store, sql, params, max_rows):
        count = last - prior if n_prior and last >= prior else last
        if count > 0 and str(xid).isdigit():
            out.setdefault((uuid, mig), []).append(XidCount.of(int(xid), round(count)))
    for counts in out.values():
        counts.sort(key=lambda x: x.code)
    return out


def fleet(store: Store, now: float, window_s: float, filters: Mapping[str, str] | None = None) -> list[FleetGpu]:
    """Every GPU that reported in the last `LATEST_WINDOW_S` seconds (matching `filters`, keys of
    point or resource attributes), with its XIDs over the last `window_s` and its MIG instances, in
    host and index order. Two queries whatever the fleet's size."""
    latest: Sequence[GpuLatest] = latest_per_gpu(store, FLEET_METRICS, now, window_s=LATEST_WINDOW_S, filters=filters)
    xids = xid_counts(store, now - window_s, now, filters)
    parents: dict[str, FleetGpu] = {}  # by gpu.uuid, in latest_per_gpu's (host, index) order
    instances: list[FleetGpu] = []
    for g in latest:
        gpu = FleetGpu(g.uuid, g.mig_uuid, g.resource, g.attributes, g.values, g.time_ns)
        gpu.xids = xids.get((g.uuid, g.mig_uuid), [])
        if g.mig_uuid:
            instances.append(gpu)
        else:
            parents[g.uuid] = gpu
    for inst in instances:
        parent = parents.get(inst.uuid)
        if parent is None:  # the parent reported nothing itself (utilization is NotSupported under MIG)
            parent = FleetGpu(inst.uuid, "", inst.resource, _parent_attributes(inst), {}, inst.time_ns)
            parent.xids = xids.get((inst.uuid, ""), [])
            parents[inst.uuid] = parent
        parent.mig.append(inst)
    return sorted(parents.values(), key=_order)


def _order(gpu: FleetGpu) -> tuple[str, int, str]:
    index = gpu.attributes.get(n.GPU_INDEX, "")
    return gpu.host, int(index) if index.isdigit() else -1, gpu.uuid


def _parent_attributes(instance: FleetGpu) -> dict[str, str]:
    return {k: v for k, v in instance.attributes.items() if not k.startswith("gpu.mig.")}


def nodes(gpus: Sequence[FleetGpu]) -> list[Node]:
    """One row per host, folded from its GPUs (MIG instances count with their parent)."""
    by_host: dict[str, list[FleetGpu]] = {}
    for gpu in gpus:
        by_host.setdefault(gpu.host, []).append(gpu)
    out = []
    for host, group in sorted(by_host.items()):
        utils = [g.values[n.GPU_UTILIZATION.name] for g in group if n.GPU_UTILIZATION.name in g.values]
        temps = [g.values[n.GPU_TEMPERATURE.name] for g in group if n.GPU_TEMPERATURE.name in g.values]
        out.append(
            Node(
                host=host,
                gpus=len(group),
                utilization=sum(utils) / len(utils) if utils else None,
                temperature_max=max(temps) if temps else None,
                power=sum(g.values.get(n.GPU_POWER_DRAW.name, 0.0) for g in group),
                memory_used=sum(g.values.get(n.GPU_MEMORY_USED.name, 0.0) for g in group),
                memory_total=sum(g.values.get(n.GPU_MEMORY_TOTAL.name, 0.0) for g in group),
                xids=sum(x.count for g in group for x in [*g.xids, *(x for m in g.mig for x in m.xids)]),
                unhealthy=sum(g.health != "ok" for g in group),
                simulated=any(g.simulated for g in group),
                resource=group[0].resource,
            )
        )
    return out


@dataclass(frozen=True)
class Mark:
    t: float
    label: str
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "label": self.label, "kind": self.kind}


def xid_events(
    store: Store, start: float, end: float, filters: Mapping[str, str], *, max_rows: int = 100_000
) -> list[Mark]:
    """One mark per rise of an XID counter inside [start, end) of the GPUs `filters` pick, in time order.

    Reads one window's length before `start`, so a counter already running is not taken for new XIDs;
    a series' first point (a counter appears at its first XID) or one after a restart counts in full."""
    params: dict[str, Any] = {
        "metric": n.GPU_XID_ERRORS.name,
        "uuid_key": n.GPU_UUID,
        "mig_key": GPU_MIG_UUID,
        "xid_key": n.XID,
        "before": int((2 * start - end) * 1e9),
        "end": int(end * 1e9),
    }
    sql = (
        "SELECT Attributes[{uuid_key:String}] AS uuid, Attributes[{mig_key:String}] AS mig,"
        " Attributes[{xid_key:String}] AS xid, ResourceAttributes['host.name'] AS host,\n"
        "    toUnixTimestamp64Nano(TimeUnix) / 1e9 AS t, Value\n"
        f"FROM {SUM}\n"
        "WHERE MetricName = {metric:String} AND mapContains(Attributes, {uuid_key:String})\n"
        "    AND TimeUnix >= fromUnixTimestamp64Nano({before:Int64})"
        " AND TimeUnix < fromUnixTimestamp64Nano({end:Int64})"
        f"{filter_sql(filters, params)}\n"
        "ORDER BY uuid, mig, xid, host, t"
    )
    marks: list[Mark] = []
    previous: tuple[tuple[str, ...], float] | None = None
    for uuid, mig, xid, host, t, value in run_limited(store, sql, params, max_rows):
        key = (uuid, mig, xid, host)
        rise = value if previous is None or previous[0] != key or value < previous[1] else value - previous[1]
        previous = (key, value)
        if rise > 0 and t >= start and str(xid).isdigit():
            meaning, _ = n.XIDS.get(int(xid), ("not in the catalogue", ""))
            times = f" x{round(rise)}" if rise > 1 else ""
            marks.append(Mark(float(t), f"XID {xid}{times}: {meaning}", "xid"))
    marks.sort(key=lambda m: m.t)
    return marks
