"""XID critical errors from an NVML event set, waited on by a thread of their own.

`XidWatcher.register` adds every full GPU to one event set (its result is each GPU's probe of
the `xid_events` field); the thread hands each event's device handle and XID code to `on_xid`,
which the backend counts as `gpu.xid.errors{xid}`. A failing wait is logged once, not every
half second.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pynvml

from gpu_agent.model import FieldProbe, Support
from gpu_agent.nvml_fields import Device, classify, us_since
from vigil.logs import event

log = logging.getLogger(__name__)


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
            probes[dev.key] = FieldProbe("xid_events", Support.SUPPORTED, cost_us=us_since(started))
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
