"""The NVML field catalogue: each query of dcgm-exporter's default set and the readings it becomes.

A `Field` is one NVML call (or a few that belong together) with `read` (the call) and `emit` (its
value → catalogue readings on the device's series). `FieldValue`s are the NVML field ids read
together in one `nvmlDeviceGetFieldValues` call. `build_fields()` lists them in sampling order.
Which fields a device answers is decided by the backend's probe (`gpu_agent.nvml`).

`pynvml` functions are looked up on the module at each call, so the tests patch the real
module's functions and raise its real error classes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from gpu_agent.attribution import Attribution
from gpu_agent.model import Attributes, DeviceInfo, FieldProbe, Snapshot, Support
from vigil import names as n

NOT_SUPPORTED = {pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}


def classify(exc: pynvml.NVMLError) -> Support:
    code = getattr(exc, "value", None)
    if code in NOT_SUPPORTED:
        return Support.NOT_SUPPORTED
    if code == pynvml.NVML_ERROR_NO_PERMISSION:
        return Support.NO_PERMISSION
    return Support.ERROR


def us_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1e6, 1)


@dataclass
class Device:
    """A GPU or MIG instance the backend samples."""

    key: str
    handle: Any
    base: dict[str, str]  # identity labels
    attributes: dict[str, str]  # base plus Kubernetes labels, rebuilt when assignments change
    mig_parent: Device | None = None
    mig_gpu_instance: int | None = None
    fields: list[Field] = field(default_factory=list)
    field_values: list[FieldValue] = field(default_factory=list)
    probes: list[FieldProbe] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)  # field -> error, while it fails
    lost: bool = False
    state: dict[str, Any] = field(default_factory=dict)  # per-field state (GPM samples)

    def info(self) -> DeviceInfo:
        return DeviceInfo(
            self.key, dict(self.base), list(self.probes), self.mig_parent.key if self.mig_parent else None
        )


class Field:
    """One NVML query and the readings it becomes. `slow` fields run every slow interval only."""

    name = ""
    slow = False
    mig = False  # also sampled on MIG instances

    def setup(self, dev: Device) -> None:
        """Called once per device before the probe call (allocations)."""

    def read(self, dev: Device) -> Any:
        raise NotImplementedError

    def emit(self, value: Any, dev: Device, out: Snapshot, attribution: Attribution) -> None:
        raise NotImplementedError

    def close(self, dev: Device) -> None:
        """Release what `setup` allocated."""


class Simple(Field):
    def __init__(
        self,
        name: str,
        read: Callable[[Any], Any],
        emit: Callable[[Any, Attributes, Snapshot], None],
        *,
        slow: bool = False,
        mig: bool = False,
    ) -> None:
        self.name, self._read, self._emit, self.slow, self.mig = name, read, emit, slow, mig

    def read(self, dev: Device) -> Any:
        return self._read(dev.handle)

    def emit(self, value: Any, dev: Device, out: Snapshot, attribution: Attribution) -> None:
        self._emit(value, dev.attributes, out)


def _one(metric: n.Metric, scale: float = 1.0) -> Callable[[Any, Attributes, Snapshot], None]:
    def emit(value: Any, attrs: Attributes, out: Snapshot) -> None:
        out.add(metric, value * scale if scale != 1.0 else value, attrs)

    return emit


def _emit_utilization(value: Any, attrs: Attributes, out: Snapshot) -> None:
    out.add(n.GPU_UTILIZATION, value.gpu, attrs)
    out.add(n.GPU_MEMORY_UTILIZATION, value.memory, attrs)


def _read_memory(handle: Any) -> Any:
    try:  # v2 adds `reserved`; drivers before R510 only have v1
        return pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    except pynvml.NVMLError as exc:
        if exc.value not in (*NOT_SUPPORTED, pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
            raise
        return pynvml.nvmlDeviceGetMemoryInfo(handle)


def _emit_memory(value: Any, attrs: Attributes, out: Snapshot) -> None:
    out.add(n.GPU_MEMORY_USED, value.used, attrs)
    out.add(n.GPU_MEMORY_FREE, value.free, attrs)
    out.add(n.GPU_MEMORY_TOTAL, value.total, attrs)
    reserved = getattr(value, "reserved", None)
    if reserved is not None:
        out.add(n.GPU_MEMORY_RESERVED, reserved, attrs)


def _read_reasons(handle: Any) -> int:
    try:
        return pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    except pynvml.NVMLError as exc:
        if exc.value != pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
            raise
        return pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)  # drivers before R535


def reason_attributes(attrs: Attributes) -> list[tuple[int, dict[str, str]]]:
    return [(bit, {**attrs, n.REASON: name}) for bit, name in n.CLOCK_EVENT_REASONS.items()]


class ClockEventReasons(Field):
    name = "clock_event_reasons"

    def read(self, dev: Device) -> Any:
        return _read_reasons(dev.handle)

    def emit(self, value: Any, dev: Device, out: Snapshot, attribution: Attribution) -> None:
        out.add(n.GPU_CLOCK_EVENT_REASONS, value, dev.attributes)
        cached = dev.state.get("reason_attrs")
        if cached is None or cached[0] is not dev.attributes:
            cached = dev.state["reason_attrs"] = (dev.attributes, reason_attributes(dev.attributes))
        for bit, attrs in cached[1]:
            out.add(n.GPU_CLOCK_EVENT_REASON_ACTIVE, 1 if value & bit else 0, attrs)


def _read_encoder(handle: Any) -> int:
    return pynvml.nvmlDeviceGetEncoderUtilization(handle)[0]


def _read_decoder(handle: Any) -> int:
    return pynvml.nvmlDeviceGetDecoderUtilization(handle)[0]


_POLICIES = {
    "power": "NVML_PERF_POLICY_POWER",
    "thermal": "NVML_PERF_POLICY_THERMAL",
    "sync_boost": "NVML_PERF_POLICY_SYNC_BOOST",
    "board_limit": "NVML_PERF_POLICY_BOARD_LIMIT",
    "low_utilization": "NVML_PERF_POLICY_LOW_UTILIZATION",
    "reliability": "NVML_PERF_POLICY_RELIABILITY",
    "app_clocks": "NVML_PERF_POLICY_TOTAL_APP_CLOCKS",
    "base_clocks": "NVML_PERF_POLICY_TOTAL_BASE_CLOCKS",
}


def _violation(policy: str) -> Simple:
    constant = getattr(pynvml, _POLICIES[policy])

    def read(handle: Any) -> int:
        return pynvml.nvmlDeviceGetViolationStatus(handle, constant).violationTime

    return Simple(f"violation.{policy}", read, _one(n.GPU_VIOLATIONS[policy], 1e-9))


class Ecc(Field):
    name = "ecc"
    slow = True
    _KINDS = (
        (n.GPU_ECC_CORRECTED, "NVML_MEMORY_ERROR_TYPE_CORRECTED"),
        (n.GPU_ECC_UNCORRECTED, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED"),
    )
    _COUNTERS = (("volatile", "NVML_VOLATILE_ECC"), ("aggregate", "NVML_AGGREGATE_ECC"))

    def read(self, dev: Device) -> list[tuple[n.Metric, str, int]]:
        return [
            (
                metric,
                counter,
                pynvml.nvmlDeviceGetTotalEccErrors(dev.handle, getattr(pynvml, et), getattr(pynvml, ct)),
            )
            for metric, et in self._KINDS
            for counter, ct in self._COUNTERS
        ]

    def emit(self, value: Any, dev: Device, out: Snapshot, attribution: Attribution) -> None:
        for metric, counter, count in value:
            out.add(metric, count, {**dev.attributes, n.ECC_COUNTER: counter})


def _emit_remapped(value: Any, attrs: Attributes, out: Snapshot) -> None:
    corrected, uncorrected, pending, failure = value
    out.add(n.GPU_REMAPPED_CORRECTABLE, corrected, attrs)
    out.add(n.GPU_REMAPPED_UNCORRECTABLE, uncorrected, attrs)
    out.add(n.GPU_REMAPPED_PENDING, 1 if pending else 0, attrs)
    out.add(n.GPU_REMAPPED_FAILURE, 1 if failure else 0, attrs)


def _read_pcie(handle: Any) -> tuple[int, int]:
    # Each call samples the link for 20 ms inside the driver: this field is slow by nature.
    return (
        pynvml.nvmlDeviceGetPcieThroughput(handle, pynvml.NVML_PCIE_UTIL_TX_BYTES),
        pynvml.nvmlDeviceGetPcieThroughput(handle, pynvml.NVML_PCIE_UTIL_RX_BYTES),
    )


def _emit_pcie(value: Any, attrs: Attributes, out: Snapshot) -> None:
    out.add(n.GPU_PCIE_TX, value[0] * 1024, attrs)  # NVML gives KB/s
    out.add(n.GPU_PCIE_RX, value[1] * 1024, attrs)


class Processes(Field):
    name = "processes"
    slow = True
    mig = True

    def read(self, dev: Device) -> list[Any]:
        return pynvml.nvmlDeviceGetComputeRunningProcesses(dev.handle)

    def emit(self, value: Any, dev: Device, out: Snapshot, attribution: Attribution) -> None:
        out.add(n.GPU_PROCESSES, len(value), dev.attributes)
        for proc in value:
            used = getattr(proc, "usedGpuMemory", None)
            if used is None:  # not available (WDDM, some MIG setups): no reading rather than a false 0
                continue
            attrs = {**dev.attributes, **attribution.process(int(proc.pid))}
            out.add(n.GPU_PROCESS_MEMORY, used, attrs)


@dataclass(frozen=True)
class FieldValue:
    """One NVML field id, read with others of its device in one `nvmlDeviceGetFieldValues` call."""

    name: str
    field_id: int
    metric: n.Metric
    scale: float = 1.0
    slow: bool = False


FIELD_VALUES = (
    FieldValue("memory.temperature", pynvml.NVML_FI_DEV_MEMORY_TEMP, n.GPU_MEMORY_TEMPERATURE),
    FieldValue("power.instant", pynvml.NVML_FI_DEV_POWER_INSTANT, n.GPU_POWER_INSTANT, 1e-3),
    FieldValue("nvlink.tx", pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, n.GPU_NVLINK_TX, 1024.0),
    FieldValue("nvlink.rx", pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, n.GPU_NVLINK_RX, 1024.0),
    FieldValue("recovery_action", getattr(pynvml, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", 230), n.GPU_RECOVERY_ACTION),
)

_VALUE_FIELDS = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
}


def field_value(fv: Any) -> float:
    return getattr(fv.value, _VALUE_FIELDS.get(fv.valueType, "ullVal"))


class Gpm(Field):
    """SM/tensor/DRAM activity from GPM (Hopper and newer): two samples, metrics between them."""

    name = "gpm"
    mig = True
    METRICS = (
        ("NVML_GPM_METRIC_SM_UTIL", n.GPU_SM_ACTIVE),
        ("NVML_GPM_METRIC_SM_OCCUPANCY", n.GPU_SM_OCCUPANCY),
        ("NVML_GPM_METRIC_ANY_TENSOR_UTIL", n.GPU_TENSOR_ACTIVE),
        ("NVML_GPM_METRIC_DRAM_BW_UTIL", n.GPU_DRAM_ACTIVE),
    )

    def _sample(self, dev: Device, sample: Any) -> None:
        if dev.mig_parent is not None:
            pynvml.nvmlGpmMigSampleGet(dev.mig_parent.handle, dev.mig_gpu_instance, sample)
        else:
            pynvml.nvmlGpmSampleGet(dev.handle, sample)

    def setup(self, dev: Device) -> None:
        target = dev.mig_parent.handle if dev.mig_parent is not None else dev.handle
        if not pynvml.nvmlGpmQueryDeviceSupport(target).isSupportedDevice:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        samples = [pynvml.nvmlGpmSampleAlloc(), pynvml.nvmlGpmSampleAlloc()]
        dev.state["gpm"] = samples
        self._sample(dev, samples[0])

    def read(self, dev: Device) -> list[tuple[n.Metric, float]]:
        previous, current = dev.state["gpm"]
        self._sample(dev, current)
        request = pynvml.c_nvmlGpmMetricsGet_t()
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(self.METRICS)
        request.sample1 = previous
        request.sample2 = current
        for i, (constant, _) in enumerate(self.METRICS):
            request.metrics[i].metricId = getattr(pynvml, constant)
        pynvml.nvmlGpmMetricsGet(request)
        dev.state["gpm"] = [current, previous]  # the newer sample is the next cycle's baseline
        return [
            (metric, request.metrics[i].value / 100.0)
            for i, (_, metric) in enumerate(self.METRICS)
            if request.metrics[i].nvmlReturn == pynvml.NVML_SUCCESS
        ]

    def emit(self, value: Any, dev: Device, out: Snapshot, attribution: Attribution) -> None:
        for metric, ratio in value:
            out.add(metric, ratio, dev.attributes)

    def close(self, dev: Device) -> None:
        for sample in dev.state.pop("gpm", ()):
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlGpmSampleFree(sample)


def _power_draw(handle: Any) -> int:
    return pynvml.nvmlDeviceGetPowerUsage(handle)


def build_fields() -> list[Field]:
    """Every field, in sampling order (cheap ones first)."""
    return [
        Simple("utilization", lambda h: pynvml.nvmlDeviceGetUtilizationRates(h), _emit_utilization),
        Simple("memory", _read_memory, _emit_memory, mig=True),
        Simple("clock.sm", lambda h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM), _one(n.GPU_CLOCK_SM)),
        Simple(
            "clock.memory",
            lambda h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            _one(n.GPU_CLOCK_MEMORY),
        ),
        Simple(
            "temperature",
            lambda h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            _one(n.GPU_TEMPERATURE),
        ),
        Simple("power.draw", _power_draw, _one(n.GPU_POWER_DRAW, 1e-3)),
        Simple("energy", lambda h: pynvml.nvmlDeviceGetTotalEnergyConsumption(h), _one(n.GPU_ENERGY, 1e-3)),
        Simple("pcie.replay", lambda h: pynvml.nvmlDeviceGetPcieReplayCounter(h), _one(n.GPU_PCIE_REPLAY)),
        Simple("encoder", _read_encoder, _one(n.GPU_ENCODER_UTILIZATION)),
        Simple("decoder", _read_decoder, _one(n.GPU_DECODER_UTILIZATION)),
        ClockEventReasons(),
        *(_violation(policy) for policy in n.VIOLATION_POLICIES),
        Gpm(),
        Simple(
            "power.limit",
            lambda h: pynvml.nvmlDeviceGetEnforcedPowerLimit(h),
            _one(n.GPU_POWER_LIMIT, 1e-3),
            slow=True,
        ),
        Ecc(),
        Simple("remapped_rows", lambda h: pynvml.nvmlDeviceGetRemappedRows(h), _emit_remapped, slow=True),
        Simple("pcie.throughput", _read_pcie, _emit_pcie, slow=True),
        Processes(),
    ]
