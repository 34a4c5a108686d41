"""The NVML backend: dcgm-exporter's default fields through `pynvml`, probed once per GPU.

At start every field is called once per GPU (and MIG instance). A field that answers NotSupported
(or FunctionNotFound on an older driver, or NoPermission) is left out for that device for good: it
is listed by `vigil agent --probe` and never called or logged again. A field that fails at run time
for another reason is skipped that cycle; its error is logged when it starts and when it clears,
never every cycle. A GPU that answers GpuIsLost reports `gpu.up 0` and nothing else, so no stale
value survives it.

XID events arrive on their own thread from an NVML event set; the sampling loop reports their
running counts as `gpu.xid.errors{xid}`.

`pynvml` functions are looked up on the module at each call (`pynvml.nvmlDeviceGet...`), so the
tests patch the real module's functions and raise its real error classes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from gpu_agent.attribution import Attribution
from gpu_agent.model import Attributes, BackendUnavailable, DeviceInfo, FieldProbe, ProbeReport, Snapshot, Support
from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

_NOT_SUPPORTED = {pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}
_LOST = {pynvml.NVML_ERROR_GPU_IS_LOST}


def _address(handle: Any) -> int | None:
    """A device handle's pointer value: NVML hands out one stable handle per device."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def classify(exc: pynvml.NVMLError) -> Support:
    code = getattr(exc, "value", None)
    if code in _NOT_SUPPORTED:
        return Support.NOT_SUPPORTED
    if code == pynvml.NVML_ERROR_NO_PERMISSION:
        return Support.NO_PERMISSION
    return Support.ERROR


# ---- fields ----------------------------------------------------------------------------------------


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

    def emit(self, value: Any, dev: Device, out: Snapshot, backend: NvmlBackend) -> None:
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

    def emit(self, value: Any, dev: Device, out: Snapshot, backend: NvmlBackend) -> None:
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
        if exc.value not in (*_NOT_SUPPORTED, pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
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

    def emit(self, value: Any, dev: Device, out: Snapshot, backend: NvmlBackend) -> None:
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

    def emit(self, value: Any, dev: Device, out: Snapshot, backend: NvmlBackend) -> None:
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

    def emit(self, value: Any, dev: Device, out: Snapshot, backend: NvmlBackend) -> None:
        out.add(n.GPU_PROCESSES, len(value), dev.attributes)
        for proc in value:
            used = getattr(proc, "usedGpuMemory", None)
            if used is None:  # not available (WDDM, some MIG setups): no reading rather than a false 0
                continue
            attrs = {**dev.attributes, **backend.attribution.process(int(proc.pid))}
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

    def emit(self, value: Any, dev: Device, out: Snapshot, backend: NvmlBackend) -> None:
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


# ---- XID events ------------------------------------------------------------------------------------


class XidWatcher:
    """Waits on an NVML event set for XID critical errors, on its own thread, and counts them."""

    def __init__(self, on_xid: Callable[[Any, int], None], wait_ms: int = 500) -> None:
        self.on_xid = on_xid
        self.wait_ms = wait_ms
        self.event_set: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, devices: Iterable[Device]) -> dict[str, FieldProbe]:
        """Register every full GPU for XID events; return each device's probe of the `xid_events` field."""
        probes: dict[str, FieldProbe] = {}
        if self.event_set is None:
            try:
                self.event_set = pynvml.nvmlEventSetCreate()
            except pynvml.NVMLError as exc:
                for dev in devices:
                    probes[dev.key] = FieldProbe("xid_events", classify(exc), str(exc))
                return probes
        xid_type = pynvml.nvmlEventTypeXidCriticalError
        for dev in devices:
            started = time.perf_counter()
            try:
                if not pynvml.nvmlDeviceGetSupportedEventTypes(dev.handle) & xid_type:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
                pynvml.nvmlDeviceRegisterEvents(dev.handle, xid_type, self.event_set)
            except pynvml.NVMLError as exc:
                probes[dev.key] = FieldProbe("xid_events", classify(exc), str(exc))
                continue
            probes[dev.key] = FieldProbe("xid_events", Support.SUPPORTED, cost_us=_us_since(started))
        return probes

    def start(self) -> None:
        if self.event_set is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="xid-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = ""
        while not self._stop.is_set():
            try:
                data = pynvml.nvmlEventSetWait_v2(self.event_set, self.wait_ms)
            except pynvml.NVMLError as exc:
                if exc.value == pynvml.NVML_ERROR_TIMEOUT:
                    continue
                if str(exc) != failing:  # log a failing wait once, not every half second
                    failing = str(exc)
                    event(log, "xid_wait_failed", level=logging.WARNING, error=failing)
                self._stop.wait(1.0)
                continue
            failing = ""
            if data.eventType & pynvml.nvmlEventTypeXidCriticalError:
                self.on_xid(data.device, int(data.eventData))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_ms / 1000 + 2)
        if self.event_set is not None:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlEventSetFree(self.event_set)
            self.event_set = None


def _us_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1e6, 1)


# ---- the backend -----------------------------------------------------------------------------------


class NvmlBackend:
    name = "nvml"
    simulated = False

    def __init__(self, attribution: Attribution, xid_wait_ms: int = 500) -> None:
        self.attribution = attribution
        self.devices: list[Device] = []
        self.host: dict[str, str] = {}
        self.notes: list[str] = []
        self._field_list = build_fields()
        self._xid_lock = threading.Lock()
        self._xids: dict[tuple[str, int], int] = {}
        self._by_address: dict[int | None, Device] = {}
        self.xid_watcher = XidWatcher(self._on_xid, xid_wait_ms)
        self._started = False

    # -- life cycle

    def start(self) -> ProbeReport:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise BackendUnavailable(
                f"NVML did not initialise ({exc}): is the NVIDIA driver installed and are /dev/nvidia* and "
                "libnvidia-ml.so.1 visible to this process? Use --simulate N to run without a GPU"
            ) from None
        self._started = True
        self.host = {n.AGENT_BACKEND: "nvml"}
        try:
            self.host[n.GPU_DRIVER_VERSION] = _text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError as exc:
            self.notes.append(f"driver version unavailable: {exc}")
        try:
            cuda = int(pynvml.nvmlSystemGetCudaDriverVersion())
            self.host[n.GPU_CUDA_VERSION] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except (pynvml.NVMLError, TypeError, ValueError):
            pass
        self.devices = self._enumerate(self.notes)
        for dev in self.devices:
            self._probe(dev)
        full = [d for d in self.devices if d.mig_parent is None]
        for key, probe in self.xid_watcher.register(full).items():
            next(d for d in full if d.key == key).probes.append(probe)
        self.xid_watcher.start()
        self.attribution.refresh()
        self._apply_assignments()
        return self.report()

    def close(self) -> None:
        self.xid_watcher.stop()
        for dev in self.devices:
            for f in dev.fields:
                f.close(dev)
        if self._started:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
            self._started = False

    def report(self) -> ProbeReport:
        return ProbeReport("nvml", dict(self.host), [d.info() for d in self.devices], list(self.notes))

    # -- enumeration and probing

    def _enumerate(self, notes: list[str] | None = None) -> list[Device]:
        """Every GPU and MIG instance that answers; `notes` collects what did not (at start only)."""
        devices: list[Device] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            except pynvml.NVMLError as exc:
                if notes is not None:
                    notes.append(f"GPU {index} did not answer at enumeration: {exc}")
                    event(log, "gpu_enumeration_failed", level=logging.WARNING, gpu=index, error=str(exc))
                continue
            base = {
                n.GPU_INDEX: str(index),
                n.GPU_UUID: uuid,
                n.GPU_PCI_BUS_ID: self._bus_id(handle),
                n.GPU_MODEL: self._model(handle),
            }
            parent = Device(uuid, handle, base, dict(base))
            devices.append(parent)
            devices.extend(self._mig_devices(parent, notes))
        self._by_address = {_address(d.handle): d for d in devices if d.mig_parent is None}
        return devices

    @staticmethod
    def _bus_id(handle: Any) -> str:
        try:
            return _text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
        except pynvml.NVMLError:
            return ""

    @staticmethod
    def _model(handle: Any) -> str:
        try:
            return _text(pynvml.nvmlDeviceGetName(handle))
        except pynvml.NVMLError:
            return ""

    def _mig_devices(self, parent: Device, notes: list[str] | None) -> list[Device]:
        try:
            current, _pending = pynvml.nvmlDeviceGetMigMode(parent.handle)
        except pynvml.NVMLError:
            return []  # not MIG-capable
        if current != pynvml.NVML_DEVICE_MIG_ENABLE:
            return []
        parent.state["mig_enabled"] = True
        out: list[Device] = []
        try:
            count = pynvml.nvmlDeviceGetMaxMigDeviceCount(parent.handle)
        except pynvml.NVMLError:
            return out
        for i in range(count):
            try:
                handle = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, i)
            except pynvml.NVMLError:
                continue  # an empty slot answers NotFound
            try:
                mig_uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
                gi = int(pynvml.nvmlDeviceGetGpuInstanceId(handle))
                ci = int(pynvml.nvmlDeviceGetComputeInstanceId(handle))
            except pynvml.NVMLError as exc:
                if notes is not None:
                    notes.append(f"MIG device {i} of GPU {parent.base[n.GPU_INDEX]} did not answer: {exc}")
                continue
            name = self._model(handle)
            profile = name.split("MIG", 1)[1].strip() if "MIG" in name else name
            base = {
                **parent.base,
                n.GPU_MIG_GPU_INSTANCE: str(gi),
                n.GPU_MIG_COMPUTE_INSTANCE: str(ci),
                n.GPU_MIG_PROFILE: profile,
                "gpu.mig.uuid": mig_uuid,
            }
            out.append(Device(mig_uuid, handle, base, dict(base), mig_parent=parent, mig_gpu_instance=gi))
        return out

    def _candidates(self, dev: Device) -> tuple[list[Field], list[FieldValue]]:
        if dev.mig_parent is not None:
            return [f for f in self._field_list if f.mig], []
        fields = self._field_list
        if dev.state.get("mig_enabled"):  # processes and activity are reported per MIG instance
            fields = [f for f in fields if not f.mig or f.name == "memory"]
        return list(fields), list(FIELD_VALUES)

    def _probe(self, dev: Device, known_lost: bool = False) -> None:
        """Call each candidate field once; keep those that answer (or fail for a reason worth retrying)."""
        fields, values = self._candidates(dev)
        dev.fields, dev.field_values, dev.probes = [], [], []
        for f in fields:
            started = time.perf_counter()
            try:
                f.setup(dev)
                f.read(dev)
            except pynvml.NVMLError as exc:
                support = classify(exc)
                dev.probes.append(FieldProbe(f.name, support, str(exc)))
                if exc.value in _LOST:
                    dev.lost = True
                    if not known_lost:  # said when it was lost, not again at every probe
                        event(log, "gpu_lost", level=logging.ERROR, gpu=dev.base[n.GPU_INDEX], uuid=dev.key)
                    return
                if support is Support.ERROR:
                    dev.fields.append(f)
                continue
            dev.probes.append(FieldProbe(f.name, Support.SUPPORTED, cost_us=_us_since(started)))
            dev.fields.append(f)
        if values:
            self._probe_values(dev, values)

    def _probe_values(self, dev: Device, values: list[FieldValue]) -> None:
        started = time.perf_counter()
        try:
            result = pynvml.nvmlDeviceGetFieldValues(dev.handle, [v.field_id for v in values])
        except pynvml.NVMLError as exc:
            dev.probes.extend(FieldProbe(v.name, classify(exc), str(exc)) for v in values)
            return
        cost = _us_since(started)
        for spec, fv in zip(values, result, strict=False):
            if fv.nvmlReturn == pynvml.NVML_SUCCESS:
                dev.field_values.append(spec)
                dev.probes.append(FieldProbe(spec.name, Support.SUPPORTED, cost_us=cost))
            else:
                support = classify(pynvml.NVMLError(fv.nvmlReturn))
                dev.probes.append(FieldProbe(spec.name, support, str(pynvml.NVMLError(fv.nvmlReturn))))

    def reprobe(self) -> None:
        """Pick up GPUs and MIG instances that appeared, and lost GPUs that answer again."""
        try:
            found = self._enumerate_keys()
        except pynvml.NVMLError as exc:
            event(log, "reprobe_failed", level=logging.WARNING, error=str(exc))
            return
        known = {d.key: d for d in self.devices}
        if set(found) == set(known) and not any(d.lost for d in self.devices):
            return
        fresh = self._enumerate()
        by_key = {d.key: d for d in fresh}
        devices: list[Device] = []
        for dev in fresh:
            old = known.get(dev.key)
            if old is not None and not old.lost:
                old.handle = dev.handle  # keep its probe: fields are probed once per GPU
                devices.append(old)
                continue
            if old is not None:
                for f in old.fields:  # the lost device's allocations (GPM samples) go with it
                    f.close(old)
            self._probe(dev, known_lost=old is not None)
            if dev.mig_parent is None and not dev.lost:
                dev.probes.extend(self.xid_watcher.register([dev]).values())
            if old is not None and not dev.lost:
                event(log, "gpu_recovered", gpu=dev.base[n.GPU_INDEX], uuid=dev.key)
            elif old is None:
                event(log, "gpu_found", gpu=dev.base[n.GPU_INDEX], uuid=dev.key)
            devices.append(dev)
        for key, old in known.items():
            if key not in by_key:
                if old.mig_parent is not None:
                    for f in old.fields:
                        f.close(old)
                    continue  # a MIG instance that was destroyed: its series end
                old.lost = True
                devices.append(old)
        self.devices = devices
        self._by_address.update({_address(d.handle): d for d in devices if d.mig_parent is None})
        self.xid_watcher.start()
        self._apply_assignments()

    def _enumerate_keys(self) -> list[str]:
        keys = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            keys.append(_text(pynvml.nvmlDeviceGetUUID(handle)))
        for dev in self.devices:
            if dev.mig_parent is not None:
                keys.append(dev.key)  # MIG changes need a GPU reset; they are picked up with it
        return keys

    # -- sampling

    def sample(self, out: Snapshot, slow: bool) -> None:
        if slow:
            self.attribution.refresh()
            self._apply_assignments()
        for dev in self.devices:
            if dev.lost:
                out.add(n.GPU_UP, 0, dev.attributes)
                continue
            self._sample_device(dev, out, slow)
            out.add(n.GPU_UP, 0 if dev.lost else 1, dev.attributes)
        with self._xid_lock:
            xids = list(self._xids.items())
        for (key, code), count in xids:
            dev = next((d for d in self.devices if d.key == key), None)
            if dev is not None:
                out.add(n.GPU_XID_ERRORS, count, {**dev.attributes, n.XID: str(code)})

    def _sample_device(self, dev: Device, out: Snapshot, slow: bool) -> None:
        for f in dev.fields:
            if f.slow and not slow:
                continue
            try:
                value = f.read(dev)
            except pynvml.NVMLError as exc:
                if self._field_failed(dev, f.name, exc):
                    return
                continue
            if dev.failing.pop(f.name, None) is not None:
                event(log, "gpu_field_recovered", gpu=dev.base[n.GPU_INDEX], field=f.name)
            f.emit(value, dev, out, self)
        values = [v for v in dev.field_values if slow or not v.slow]
        if not values:
            return
        try:
            result = pynvml.nvmlDeviceGetFieldValues(dev.handle, [v.field_id for v in values])
        except pynvml.NVMLError as exc:
            self._field_failed(dev, "field_values", exc)
            return
        for spec, fv in zip(values, result, strict=False):
            if fv.nvmlReturn == pynvml.NVML_SUCCESS:
                out.add(spec.metric, field_value(fv) * spec.scale, dev.attributes)

    def _field_failed(self, dev: Device, name: str, exc: pynvml.NVMLError) -> bool:
        """Record a run-time failure; return True when the device is lost (stop sampling it)."""
        gpu = dev.base[n.GPU_INDEX]
        if exc.value in _LOST:
            dev.lost = True
            event(log, "gpu_lost", level=logging.ERROR, gpu=gpu, uuid=dev.key, field=name, error=str(exc))
            return True
        if exc.value in _NOT_SUPPORTED:  # e.g. MIG was enabled under us: stop asking
            dev.fields = [f for f in dev.fields if f.name != name]
            dev.probes = [p for p in dev.probes if p.field != name]
            dev.probes.append(FieldProbe(name, Support.NOT_SUPPORTED, str(exc)))
            event(log, "gpu_field_unsupported", level=logging.WARNING, gpu=gpu, field=name, error=str(exc))
            return False
        if dev.failing.get(name) != str(exc):
            dev.failing[name] = str(exc)
            event(log, "gpu_field_failing", level=logging.WARNING, gpu=gpu, field=name, error=str(exc))
        return False

    def _on_xid(self, handle: Any, code: int) -> None:
        dev = self._by_address.get(_address(handle))
        if dev is None:
            try:
                uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            except pynvml.NVMLError:
                uuid = ""
            dev = next((d for d in self.devices if d.key == uuid), None)
        key = dev.key if dev is not None else "unknown"
        with self._xid_lock:
            self._xids[(key, code)] = self._xids.get((key, code), 0) + 1
        meaning, action = n.XIDS.get(code, ("", ""))
        event(
            log,
            "gpu_xid",
            level=logging.WARNING,
            gpu=dev.base[n.GPU_INDEX] if dev is not None else "?",
            uuid=key,
            xid=code,
            meaning=meaning or "see NVIDIA's XID catalogue",
            action=action or "-",
        )

    def _apply_assignments(self) -> None:
        """Put the Kubernetes pod holding each GPU on its series (from the kubelet's pod-resources)."""
        for dev in self.devices:
            labels = self.attribution.gpu(dev.base.get("gpu.mig.uuid") or dev.key)
            attrs = {**dev.base, **labels} if labels else dev.base
            if attrs != dev.attributes:
                dev.attributes = dict(attrs)

    def lost_gpus(self) -> list[str]:
        return [d.base[n.GPU_INDEX] for d in self.devices if d.lost]
