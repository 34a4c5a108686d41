"""The simulated backend: N GPUs with correlated dynamics and injectable faults.

It emits the same metric names and attributes as the NVML backend; the exporter marks every
series it sends with the resource attribute `vigil.simulated=true`, and the model name says
`(simulated)`, so simulated data cannot pass for real data.

Dynamics, per GPU, each a first-order lag toward a target:
- utilization follows the inference load scraped from the engines (running and waiting
  requests); with no engine scraped it follows a slow synthetic wave;
- power follows utilization between idle and the power limit; temperature follows power
  (slower); SM clocks drop at idle, near the power cap and under thermal throttling, with the
  matching clock event reasons and violation counters;
- memory follows the engine's KV cache usage on top of the model's weights.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from gpu_agent.model import DeviceInfo, Fault, FaultKind, FieldProbe, Load, ProbeReport, Snapshot, Support
from gpu_agent.nvml_fields import reason_attributes
from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

MODEL = "NVIDIA H100 80GB HBM3 (simulated)"
MEMORY_TOTAL = 85_520_809_984  # what NVML reports for an 80 GB H100
MEMORY_RESERVED = 567_279_616
POWER_IDLE_W, POWER_LIMIT_W = 72.0, 700.0
SM_CLOCK_MAX, SM_CLOCK_IDLE, SM_CLOCK_THROTTLED = 1980, 345, 1095
MEM_CLOCK = 2619
AMBIENT_C, THROTTLE_C = 28.0, 92.0
THERMAL_TAU_S = 2.0  # how fast a GPU with failed cooling heats (a first-order lag's time constant)
WEIGHTS_FRACTION, KV_POOL_FRACTION = 0.2, 0.68  # of total memory, as an engine preallocates it
FIELDS = (
    "utilization",
    "memory",
    "clock.sm",
    "clock.memory",
    "temperature",
    "power.draw",
    "energy",
    "pcie.replay",
    "encoder",
    "decoder",
    "clock_event_reasons",
    *(f"violation.{p}" for p in n.VIOLATION_POLICIES),
    "gpm",
    "power.limit",
    "ecc",
    "remapped_rows",
    "pcie.throughput",
    "processes",
    "memory.temperature",
    "power.instant",
    "nvlink.tx",
    "nvlink.rx",
    "recovery_action",
    "xid_events",
)

IDLE, SW_POWER_CAP, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x20, 0x40


def _lag(current: float, target: float, dt: float, tau: float) -> float:
    return current + (target - current) * (1.0 - math.exp(-dt / tau))


@dataclass
class SimGpu:
    index: int
    attributes: dict[str, str]
    share: float  # this GPU's share of the load relative to the others (tensor-parallel skew)
    phase: float
    utilization: float = 0.0
    power: float = POWER_IDLE_W
    temperature: float = AMBIENT_C + 6.0
    memory_temperature: float = AMBIENT_C + 10.0
    energy_j: float = 0.0
    memory_used: float = 0.0
    sm_clock: float = SM_CLOCK_IDLE
    reasons: int = IDLE
    violations: dict[str, float] = field(default_factory=lambda: dict.fromkeys(n.VIOLATION_POLICIES, 0.0))
    nvlink_tx: float = 0.0
    nvlink_rx: float = 0.0
    ecc: dict[tuple[str, str], int] = field(default_factory=dict)
    remapped_correctable: int = 0
    remapped_uncorrectable: int = 0
    remap_pending: bool = False
    xids: dict[int, int] = field(default_factory=dict)
    thermal: bool = False
    lost: bool = False
    reason_attrs: list[tuple[int, dict[str, str]]] = field(default_factory=list)


class SimulatedBackend:
    name = "simulated"
    simulated = True

    def __init__(
        self,
        count: int,
        host: str,
        faults: list[Fault] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError("the simulated backend needs at least one GPU")
        self.clock = clock
        self.rng = random.Random(seed if seed is not None else host)
        self.gpus = [self._gpu(i, host) for i in range(count)]
        self.load: Load | None = None
        self._lock = threading.Lock()  # faults arrive from the control endpoint's thread
        self._pending: list[tuple[float, Fault]] = []
        self._active: list[Fault] = []
        self._started_at = clock()
        self._last: float | None = None
        for fault in faults or ():
            self.inject(fault)

    def _gpu(self, index: int, host: str) -> SimGpu:
        gpu_uuid = f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{host}.simulated.vigil/{index}')}"
        attrs = {
            n.GPU_INDEX: str(index),
            n.GPU_UUID: gpu_uuid,
            n.GPU_PCI_BUS_ID: f"00000000:{0x18 + 0x10 * index:02X}:00.0",
            n.GPU_MODEL: MODEL,
        }
        gpu = SimGpu(index, attrs, share=self.rng.uniform(0.9, 1.05), phase=self.rng.uniform(0, 2 * math.pi))
        gpu.ecc = {(kind, counter): 0 for kind in ("corrected", "uncorrected") for counter in ("volatile", "aggregate")}
        gpu.reason_attrs = reason_attributes(attrs)
        return gpu

    # -- the backend interface

    def start(self) -> ProbeReport:
        return self.report()

    def report(self) -> ProbeReport:
        devices = [
            DeviceInfo(
                g.attributes[n.GPU_UUID],
                dict(g.attributes),
                [FieldProbe(f, Support.SUPPORTED, "simulated") for f in FIELDS],
            )
            for g in self.gpus
        ]
        host = {n.AGENT_BACKEND: "simulated", n.GPU_DRIVER_VERSION: "simulated"}
        return ProbeReport("simulated", host, devices, [f"{len(self.gpus)} simulated GPUs"])

    def reprobe(self) -> None:
        """Nothing to discover: the simulated GPUs are fixed."""

    def close(self) -> None:
        pass

    def lost_gpus(self) -> list[str]:
        return [str(g.index) for g in self.gpus if g.lost]

    def observe_load(self, load: Load | None) -> None:
        self.load = load

    # -- faults

    def inject(self, fault: Fault) -> None:
        if fault.gpu >= len(self.gpus):
            raise ValueError(
                f"gpu={fault.gpu} is out of range: {len(self.gpus)} simulated GPUs (0..{len(self.gpus) - 1})"
            )
        with self._lock:
            self._pending.append((self.clock() + fault.after_s, fault))

    def faults(self) -> list[dict[str, object]]:
        with self._lock:
            active = [{**f.as_dict(), "state": "active"} for f in self._active]
            pending = [{**f.as_dict(), "state": "pending"} for _, f in self._pending]
        return active + pending

    def clear_faults(self) -> None:
        """Repair every simulated GPU as a GPU reset would: throttling ends, fallen GPUs come back, pending
        remaps are done, and what counts since the last reset starts again from 0: the volatile ECC
        counters (as NVML's do at a reset; the aggregate ones keep their counts) and the XIDs counted
        (series kept at 0, so a rule reading "XIDs since the last reset" sees the reset at once)."""
        with self._lock:
            self._pending.clear()
            self._active.clear()
            for gpu in self.gpus:
                gpu.thermal = False
                gpu.remap_pending = False
                gpu.xids = dict.fromkeys(gpu.xids, 0)
                for kind in ("corrected", "uncorrected"):
                    gpu.ecc[(kind, "volatile")] = 0
                if gpu.lost:
                    gpu.lost = False
                    event(log, "gpu_recovered", gpu=gpu.index, simulated=True)

    def _apply_due_faults(self, now: float) -> None:
        with self._lock:
            due = [f for at, f in self._pending if at <= now]
            self._pending = [(at, f) for at, f in self._pending if at > now]
            for fault in due:
                self._apply(fault)

    def _apply(self, fault: Fault) -> None:
        gpu = self.gpus[fault.gpu]
        if fault.kind is FaultKind.XID:
            self._xid(gpu, fault.code, fault.count)
        elif fault.kind is FaultKind.THERMAL:
            gpu.thermal = True
            self._active.append(fault)
        elif fault.kind is FaultKind.ECC:
            for counter in ("volatile", "aggregate"):
                gpu.ecc[(fault.ecc, counter)] += fault.count
            if fault.ecc == "uncorrected":
                gpu.remapped_uncorrectable += 1
                gpu.remap_pending = True
                self._xid(gpu, 48, 1)
            else:
                gpu.remapped_correctable += fault.count // 8
        elif fault.kind is FaultKind.FALL_OFF_BUS:
            self._xid(gpu, 79, 1)
            gpu.lost = True
            self._active.append(fault)
            event(log, "gpu_lost", level=logging.ERROR, gpu=gpu.index, simulated=True)
        event(log, "fault_injected", simulated=True, **fault.as_dict())

    def _xid(self, gpu: SimGpu, code: int, count: int) -> None:
        gpu.xids[code] = gpu.xids.get(code, 0) + count
        meaning, action = n.XIDS.get(code, ("", ""))
        event(
            log,
            "gpu_xid",
            level=logging.WARNING,
            gpu=gpu.index,
            uuid=gpu.attributes[n.GPU_UUID],
            xid=code,
            meaning=meaning or "see NVIDIA's XID catalogue",
            action=action or "-",
            simulated=True,
        )

    # -- sampling

    def _target_utilization(self, gpu: SimGpu, now: float) -> float:
        load = self.load
        if load is not None:
            # One running request already keeps kernels busy most of the time (decode steps back to
            # back); more requests fill the rest. Waiting requests mean the batch is full.
            demand = load.running + 0.5 * load.waiting
            busy = 100.0 * (1.0 - math.exp(-demand / 1.5))
        else:  # nothing scraped: a ten-minute wave, so an idle demo still moves
            busy = 55.0 + 35.0 * math.sin(2 * math.pi * (now - self._started_at) / 600.0 + gpu.phase)
        noise = self.rng.gauss(0.0, 2.0) if busy > 1.0 else 0.0  # an idle GPU reads a flat 0
        return min(100.0, max(0.0, busy * gpu.share + noise))

    def _step(self, gpu: SimGpu, now: float, dt: float) -> None:
        rng = self.rng
        gpu.utilization = min(100.0, max(0.0, _lag(gpu.utilization, self._target_utilization(gpu, now), dt, 2.0)))
        u = gpu.utilization / 100.0
        power_target = POWER_IDLE_W + (POWER_LIMIT_W - POWER_IDLE_W) * u**1.3
        if gpu.thermal:
            power_target *= 0.7  # throttled clocks draw less
        gpu.power = max(POWER_IDLE_W * 0.8, _lag(gpu.power, power_target, dt, 1.0) + rng.gauss(0.0, 3.0))
        gpu.energy_j += gpu.power * dt
        # the thermal fault is a cooling failure: the die heats in seconds, past the slowdown threshold
        # (THROTTLE_C - 4) within about 3 s of any load, so the page rule's 5 s of slowdown start at once
        temp_target = THROTTLE_C + 8.0 if gpu.thermal else AMBIENT_C + gpu.power * 0.066
        gpu.temperature = _lag(gpu.temperature, temp_target, dt, THERMAL_TAU_S if gpu.thermal else 20.0)
        gpu.memory_temperature = _lag(gpu.memory_temperature, gpu.temperature + 6.0, dt, 30.0)

        reasons = 0
        if gpu.thermal and gpu.temperature >= THROTTLE_C - 4.0:
            reasons |= SW_THERMAL | (HW_THERMAL if gpu.temperature >= THROTTLE_C else 0)
            gpu.violations["thermal"] += dt
            clock = SM_CLOCK_THROTTLED
        elif gpu.utilization < 0.5:
            reasons |= IDLE
            clock = SM_CLOCK_IDLE
        elif power_target >= 0.97 * POWER_LIMIT_W:
            reasons |= SW_POWER_CAP
            gpu.violations["power"] += dt
            clock = SM_CLOCK_MAX - 225
        else:
            clock = SM_CLOCK_MAX
        gpu.reasons = reasons
        gpu.sm_clock = clock
        if reasons & (SW_THERMAL | HW_THERMAL | SW_POWER_CAP):
            gpu.violations["base_clocks"] += dt

        kv = self.load.kv_cache_usage if self.load is not None else min(1.0, u * 0.8)
        gpu.memory_used = MEMORY_TOTAL * (WEIGHTS_FRACTION + KV_POOL_FRACTION * max(0.0, min(1.0, kv))) + 512 * 2**20
        nvlink_bytes = 45e9 * u * dt
        gpu.nvlink_tx += nvlink_bytes * rng.uniform(0.95, 1.05)
        gpu.nvlink_rx += nvlink_bytes * rng.uniform(0.95, 1.05)

    def sample(self, out: Snapshot, slow: bool) -> None:
        now = self.clock()
        dt = 1.0 if self._last is None else max(1e-3, now - self._last)
        self._last = now
        self._apply_due_faults(now)
        with self._lock:
            for gpu in self.gpus:
                self._emit(gpu, out, slow, now, dt)

    def _emit(self, gpu: SimGpu, out: Snapshot, slow: bool, now: float, dt: float) -> None:
        a = gpu.attributes
        add = out.add
        if gpu.lost:
            add(n.GPU_UP, 0, a)
            self._emit_xids(gpu, out)
            return
        self._step(gpu, now, dt)
        u = gpu.utilization
        add(n.GPU_UP, 1, a)
        add(n.GPU_UTILIZATION, round(u), a)
        add(n.GPU_MEMORY_UTILIZATION, round(u * 0.6), a)
        add(n.GPU_ENCODER_UTILIZATION, 0, a)
        add(n.GPU_DECODER_UTILIZATION, 0, a)
        used = int(gpu.memory_used)
        add(n.GPU_MEMORY_USED, used, a)
        add(n.GPU_MEMORY_FREE, MEMORY_TOTAL - MEMORY_RESERVED - used, a)
        add(n.GPU_MEMORY_RESERVED, MEMORY_RESERVED, a)
        add(n.GPU_MEMORY_TOTAL, MEMORY_TOTAL, a)
        add(n.GPU_CLOCK_SM, gpu.sm_clock, a)
        add(n.GPU_CLOCK_MEMORY, MEM_CLOCK, a)
        add(n.GPU_TEMPERATURE, round(gpu.temperature), a)
        add(n.GPU_MEMORY_TEMPERATURE, round(gpu.memory_temperature), a)
        add(n.GPU_POWER_DRAW, round(gpu.power, 3), a)
        add(n.GPU_POWER_INSTANT, round(gpu.power + self.rng.gauss(0.0, 8.0), 3), a)
        add(n.GPU_ENERGY, round(gpu.energy_j, 3), a)
        add(n.GPU_PCIE_REPLAY, 0, a)
        add(n.GPU_CLOCK_EVENT_REASONS, gpu.reasons, a)
        for bit, attrs in gpu.reason_attrs:
            add(n.GPU_CLOCK_EVENT_REASON_ACTIVE, 1 if gpu.reasons & bit else 0, attrs)
        for policy, seconds in gpu.violations.items():
            add(n.GPU_VIOLATIONS[policy], round(seconds, 6), a)
        add(n.GPU_NVLINK_TX, int(gpu.nvlink_tx), a)
        add(n.GPU_NVLINK_RX, int(gpu.nvlink_rx), a)
        ratio = u / 100.0
        add(n.GPU_SM_ACTIVE, round(ratio * 0.85, 4), a)
        add(n.GPU_SM_OCCUPANCY, round(ratio * 0.5, 4), a)
        add(n.GPU_TENSOR_ACTIVE, round(ratio * 0.45, 4), a)
        add(n.GPU_DRAM_ACTIVE, round(ratio * 0.55, 4), a)
        self._emit_xids(gpu, out)
        if not slow:
            return
        add(n.GPU_POWER_LIMIT, POWER_LIMIT_W, a)
        for (kind, counter), count in gpu.ecc.items():
            metric = n.GPU_ECC_CORRECTED if kind == "corrected" else n.GPU_ECC_UNCORRECTED
            add(metric, count, {**a, n.ECC_COUNTER: counter})
        add(n.GPU_REMAPPED_CORRECTABLE, gpu.remapped_correctable, a)
        add(n.GPU_REMAPPED_UNCORRECTABLE, gpu.remapped_uncorrectable, a)
        add(n.GPU_REMAPPED_PENDING, 1 if gpu.remap_pending else 0, a)
        add(n.GPU_REMAPPED_FAILURE, 0, a)
        add(n.GPU_RECOVERY_ACTION, 1 if gpu.remap_pending else 0, a)
        add(n.GPU_PCIE_TX, int(2.0e9 * ratio * self.rng.uniform(0.8, 1.2)), a)
        add(n.GPU_PCIE_RX, int(1.2e9 * ratio * self.rng.uniform(0.8, 1.2)), a)
        busy = u > 1.0 or self.load is not None
        add(n.GPU_PROCESSES, 1 if busy else 0, a)
        if busy:
            process = {**a, n.PROCESS_PID: str(100_000 + gpu.index), n.PROCESS_NAME: "simulated-engine"}
            add(n.GPU_PROCESS_MEMORY, used - 512 * 2**20, process)

    @staticmethod
    def _emit_xids(gpu: SimGpu, out: Snapshot) -> None:
        for code, count in gpu.xids.items():
            out.add(n.GPU_XID_ERRORS, count, {**gpu.attributes, n.XID: str(code)})
