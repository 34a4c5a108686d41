"""Patch the real `pynvml` module's functions for a machine without a GPU.

Each patched function has the real name and signature and returns the real pynvml structures
(`c_nvmlUtilization_t`, `c_nvmlMemory_v2_t`, `nvmlPciInfo_t`, ...) or raises the real error classes
(`pynvml.NVMLError_NotSupported`, `pynvml.NVMLError(code)`), so the backend under test runs exactly
the calls it runs on a GPU. Calls are counted per function and GPU.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml
import pytest

from gpu_agent.attribution import Attribution
from gpu_agent.model import Snapshot
from gpu_agent.nvml import NvmlBackend
from vigil import names as n

BASE = 0x5000


def handle(index: int) -> Any:
    """A device handle of the real pointer type, as NVML hands them out."""
    return ctypes.cast(ctypes.c_void_p(BASE + index), pynvml.c_nvmlDevice_t)


def index_of(h: Any) -> int:
    return ctypes.cast(h, ctypes.c_void_p).value - BASE


@dataclass
class Gpu:
    util: int = 50
    mem_util: int = 20
    total: int = 80 * 2**30
    used: int = 30 * 2**30
    reserved: int = 512 * 2**20
    sm_clock: int = 1980
    mem_clock: int = 2619
    temp: int = 61
    power_mw: int = 350_000
    energy_mj: int = 9_000_000
    replay: int = 3
    reasons: int = 0x4
    violation_ns: int = 2_500_000_000
    ecc: dict[tuple[int, int], int] = field(default_factory=lambda: {(0, 0): 7, (0, 1): 70, (1, 0): 0, (1, 1): 1})
    remapped: tuple[int, int, int, int] = (2, 0, 0, 0)
    pcie_kbs: tuple[int, int] = (1000, 2000)
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    # field id -> (value, nvml return)
    field_values: dict[int, tuple[int, int]] = field(
        default_factory=lambda: {
            82: (70, 0),
            186: (351_000, 0),
            138: (4, 0),
            139: (8, 0),
            230: (0, 0),
        }
    )
    errors: dict[str, BaseException] = field(default_factory=dict)  # function name -> error it raises
    mig: list[tuple[int, int, str]] = field(default_factory=list)  # (gpu instance, compute instance, profile)


class NvmlPatch:
    def __init__(self, gpus: list[Gpu]) -> None:
        self.gpus = gpus
        self.calls: Counter[tuple[str, int]] = Counter()
        self.init_error: BaseException | None = None
        self.events: list[tuple[int, int]] = []  # (gpu index, xid) queued for nvmlEventSetWait_v2
        self.registered: list[int] = []

    def _gpu(self, name: str, h: Any) -> Gpu:
        i = index_of(h)
        self.calls[(name, i)] += 1
        gpu = self.gpus[i % 100]
        error = gpu.errors.get(name)
        if error is not None:
            raise error
        return gpu

    def count(self, name: str) -> int:
        return sum(n for (fn, _), n in self.calls.items() if fn == name)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NvmlPatch:
        p = pynvml
        s = self

        def init() -> None:
            if s.init_error is not None:
                raise s.init_error

        def memory(h: Any, version: int | None = None) -> Any:
            g = s._gpu("nvmlDeviceGetMemoryInfo", h)
            m = p.c_nvmlMemory_v2_t()
            m.version, m.total, m.reserved, m.used = version or 0, g.total, g.reserved, g.used
            m.free = g.total - g.used - g.reserved
            return m

        def util(h: Any) -> Any:
            g = s._gpu("nvmlDeviceGetUtilizationRates", h)
            return p.c_nvmlUtilization_t(gpu=g.util, memory=g.mem_util)

        def pci(h: Any) -> Any:
            s._gpu("nvmlDeviceGetPciInfo", h)
            info = p.nvmlPciInfo_t()
            info.busId = f"00000000:{0x18 + index_of(h) % 100:02X}:00.0".encode()
            return info

        def clock(h: Any, kind: int) -> int:
            g = s._gpu("nvmlDeviceGetClockInfo", h)
            return g.sm_clock if kind == p.NVML_CLOCK_SM else g.mem_clock

        def violation(h: Any, policy: int) -> Any:
            g = s._gpu("nvmlDeviceGetViolationStatus", h)
            v = p.c_nvmlViolationTime_t()
            v.referenceTime, v.violationTime = 1, g.violation_ns * (policy + 1)
            return v

        def field_values(h: Any, ids: list[int]) -> Any:
            g = s._gpu("nvmlDeviceGetFieldValues", h)
            values = (p.c_nvmlFieldValue_t * len(ids))()
            for i, fid in enumerate(ids):
                value, ret = g.field_values.get(fid, (0, p.NVML_ERROR_NOT_SUPPORTED))
                values[i].fieldId = fid
                values[i].nvmlReturn = ret
                values[i].valueType = p.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                values[i].value.ullVal = value
            return values

        def processes(h: Any) -> list[Any]:
            g = s._gpu("nvmlDeviceGetComputeRunningProcesses", h)
            out = []
            for pid, used in g.processes:
                info = p.c_nvmlProcessInfo_v3_t()
                info.pid, info.usedGpuMemory = pid, used if used is not None else 0
                obj = p.nvmlStructToFriendlyObject(info)
                if used is None:
                    obj.usedGpuMemory = None  # what pynvml does for NVML_VALUE_NOT_AVAILABLE
                out.append(obj)
            return out

        def mig_mode(h: Any) -> list[int]:
            g = s._gpu("nvmlDeviceGetMigMode", h)
            if index_of(h) >= 100:
                raise p.NVMLError(p.NVML_ERROR_NOT_SUPPORTED)
            return [1, 1] if g.mig else [0, 0]

        def mig_handle(h: Any, i: int) -> Any:
            g = s._gpu("nvmlDeviceGetMigDeviceHandleByIndex", h)
            if i >= len(g.mig):
                raise p.NVMLError(p.NVML_ERROR_NOT_FOUND)
            return handle(100 * (i + 1) + index_of(h))

        def uuid(h: Any) -> str:
            i = index_of(h)
            s.calls[("nvmlDeviceGetUUID", i)] += 1
            if i >= 100:
                return f"MIG-{i:04d}-0000-0000-0000-000000000000"
            return f"GPU-{i:08d}-aaaa-bbbb-cccc-dddddddddddd"

        def name(h: Any) -> str:
            i = index_of(h)
            if i >= 100:
                _gi, _ci, profile = s.gpus[i % 100].mig[i // 100 - 1]
                return f"NVIDIA A100-SXM4-80GB MIG {profile}"
            return "NVIDIA A100-SXM4-80GB"

        def gi_id(h: Any) -> int:
            i = index_of(h)
            return s.gpus[i % 100].mig[i // 100 - 1][0]

        def ci_id(h: Any) -> int:
            i = index_of(h)
            return s.gpus[i % 100].mig[i // 100 - 1][1]

        def simple(fn: str, get: Any) -> Any:
            def call(h: Any, *args: Any) -> Any:
                return get(s._gpu(fn, h), *args)

            return call

        def event_set_create() -> Any:
            return ctypes.c_void_p(0xE7E7)

        def register(h: Any, types: int, event_set: Any) -> None:
            s._gpu("nvmlDeviceRegisterEvents", h)
            s.registered.append(index_of(h))

        def wait(event_set: Any, timeout_ms: int) -> Any:
            if not s.events:
                raise p.NVMLError_Timeout()
            gpu, xid = s.events.pop(0)
            data = p.c_nvmlEventData_t()
            data.device = handle(gpu)
            data.eventType = p.nvmlEventTypeXidCriticalError
            data.eventData = xid
            return data

        patches = {
            "nvmlInit": init,
            "nvmlShutdown": lambda: None,
            "nvmlSystemGetDriverVersion": lambda: "550.54.15",
            "nvmlSystemGetCudaDriverVersion": lambda: 12040,
            "nvmlDeviceGetCount": lambda: len(s.gpus),
            "nvmlDeviceGetHandleByIndex": lambda i: handle(i),
            "nvmlDeviceGetUUID": uuid,
            "nvmlDeviceGetName": name,
            "nvmlDeviceGetPciInfo": pci,
            "nvmlDeviceGetMigMode": mig_mode,
            "nvmlDeviceGetMaxMigDeviceCount": simple("nvmlDeviceGetMaxMigDeviceCount", lambda g: 7),
            "nvmlDeviceGetMigDeviceHandleByIndex": mig_handle,
            "nvmlDeviceGetGpuInstanceId": gi_id,
            "nvmlDeviceGetComputeInstanceId": ci_id,
            "nvmlDeviceGetUtilizationRates": util,
            "nvmlDeviceGetMemoryInfo": memory,
            "nvmlDeviceGetClockInfo": clock,
            "nvmlDeviceGetTemperature": simple("nvmlDeviceGetTemperature", lambda g, sensor: g.temp),
            "nvmlDeviceGetPowerUsage": simple("nvmlDeviceGetPowerUsage", lambda g: g.power_mw),
            "nvmlDeviceGetEnforcedPowerLimit": simple("nvmlDeviceGetEnforcedPowerLimit", lambda g: 400_000),
            "nvmlDeviceGetTotalEnergyConsumption": simple("nvmlDeviceGetTotalEnergyConsumption", lambda g: g.energy_mj),
            "nvmlDeviceGetPcieReplayCounter": simple("nvmlDeviceGetPcieReplayCounter", lambda g: g.replay),
            "nvmlDeviceGetEncoderUtilization": simple("nvmlDeviceGetEncoderUtilization", lambda g: [5, 167000]),
            "nvmlDeviceGetDecoderUtilization": simple("nvmlDeviceGetDecoderUtilization", lambda g: [6, 167000]),
            "nvmlDeviceGetCurrentClocksEventReasons": simple(
                "nvmlDeviceGetCurrentClocksEventReasons", lambda g: g.reasons
            ),
            "nvmlDeviceGetCurrentClocksThrottleReasons": simple(
                "nvmlDeviceGetCurrentClocksThrottleReasons", lambda g: g.reasons
            ),
            "nvmlDeviceGetViolationStatus": violation,
            "nvmlDeviceGetTotalEccErrors": simple("nvmlDeviceGetTotalEccErrors", lambda g, et, ct: g.ecc[(et, ct)]),
            "nvmlDeviceGetRemappedRows": simple("nvmlDeviceGetRemappedRows", lambda g: g.remapped),
            "nvmlDeviceGetPcieThroughput": simple("nvmlDeviceGetPcieThroughput", lambda g, c: g.pcie_kbs[c]),
            "nvmlDeviceGetComputeRunningProcesses": processes,
            "nvmlDeviceGetFieldValues": field_values,
            "nvmlGpmQueryDeviceSupport": simple(
                "nvmlGpmQueryDeviceSupport", lambda g: p.c_nvmlGpmSupport_t(version=1, isSupportedDevice=0)
            ),
            "nvmlEventSetCreate": event_set_create,
            "nvmlDeviceGetSupportedEventTypes": simple(
                "nvmlDeviceGetSupportedEventTypes", lambda g: p.nvmlEventTypeXidCriticalError | 0x1
            ),
            "nvmlDeviceRegisterEvents": register,
            "nvmlEventSetWait_v2": wait,
            "nvmlEventSetFree": lambda event_set: None,
        }
        for fn, impl in patches.items():
            assert hasattr(p, fn), f"pynvml has no {fn}: the patch must use real names"
            monkeypatch.setattr(p, fn, impl)
        return self


def backend_for(
    monkeypatch: pytest.MonkeyPatch, gpus: list[Gpu], proc_root: Path | None = None
) -> tuple[NvmlBackend, NvmlPatch]:
    """An NVML backend over patched GPUs (not started)."""
    patch = NvmlPatch(gpus).install(monkeypatch)
    return NvmlBackend(Attribution(proc_root or Path("/nonexistent"), None), xid_wait_ms=10), patch


def sample(backend: NvmlBackend, slow: bool = True) -> Snapshot:
    out = Snapshot()
    backend.sample(out, slow=slow)
    return out


def values(snapshot: Snapshot, metric: n.Metric, **match: str) -> list[float]:
    return [v for v, a in snapshot.get(metric, []) if all(a.get(k) == x for k, x in match.items())]
