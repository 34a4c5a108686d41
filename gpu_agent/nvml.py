"""The NVML backend: dcgm-exporter's default fields (`gpu_agent.nvml_fields`) through `pynvml`,
probed once per GPU.

At start every field is called once per GPU (and MIG instance). A field that answers NotSupported
(or FunctionNotFound on an older driver, or NoPermission) is left out for that device for good: it
is listed by `vigil agent --probe` and never called or logged again. A field that fails at run time
for another reason is skipped that cycle; its error is logged when it starts and when it clears,
never every cycle. A GPU that answers GpuIsLost reports `gpu.up 0` and nothing else, so no stale
value survives it.

XID events arrive on their own thread from an NVML event set (`gpu_agent.xid`); the sampling loop
reports their running counts as `gpu.xid.errors{xid}`.

`pynvml` functions are looked up on the module at each call (`pynvml.nvmlDeviceGet...`), so the
tests patch the real module's functions and raise its real error classes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from typing import Any

import pynvml

from gpu_agent.attribution import Attribution
from gpu_agent.model import BackendUnavailable, FieldProbe, ProbeReport, Snapshot, Support
from gpu_agent.nvml_fields import (
    FIELD_VALUES,
    NOT_SUPPORTED,
    Device,
    Field,
    FieldValue,
    build_fields,
    classify,
    field_value,
    us_since,
)
from gpu_agent.xid import XidWatcher
from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

_LOST = {pynvml.NVML_ERROR_GPU_IS_LOST}


def _address(handle: Any) -> int | None:
    """A device handle's pointer value: NVML hands out one stable handle per device."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


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
            dev.probes.append(FieldProbe(f.name, Support.SUPPORTED, cost_us=us_since(started)))
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
        cost = us_since(started)
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
            f.emit(value, dev, out, self.attribution)
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
        if exc.value in NOT_SUPPORTED:  # e.g. MIG was enabled under us: stop asking
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
