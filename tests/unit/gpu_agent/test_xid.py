"""XID events: an NVML event set waited on by its own thread, counted by GPU and code."""

from __future__ import annotations

import time

import pynvml
import pytest

from gpu_agent.model import Support
from gpu_agent.nvml_fields import Device
from gpu_agent.xid import XidWatcher
from tests.unit.gpu_agent.nvml_patch import Gpu, NvmlPatch, backend_for, handle, index_of, sample
from vigil import names as n


def test_xid_events_arrive_on_their_own_thread_and_are_counted_by_code(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, patch = backend_for(monkeypatch, [Gpu(), Gpu()])
    report = backend.start()
    try:
        assert patch.registered == [0, 1]
        assert all(
            any(f.field == "xid_events" and f.support is Support.SUPPORTED for f in d.fields) for d in report.devices
        )
        patch.events.extend([(1, 79), (1, 79), (0, 13)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = sample(backend, slow=False)
            if sum(v for v, _ in out.get(n.GPU_XID_ERRORS, [])) == 3:
                break
            time.sleep(0.01)
    finally:
        backend.close()
    counts = {(a[n.GPU_INDEX], a[n.XID]): v for v, a in out[n.GPU_XID_ERRORS]}
    assert counts == {("1", "79"): 2, ("0", "13"): 1}
    assert backend.xid_watcher._thread is not None and not backend.xid_watcher._thread.is_alive()


def test_xid_events_not_supported_are_listed_by_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = Gpu()
    gpu.errors["nvmlDeviceRegisterEvents"] = pynvml.NVMLError_NotSupported()
    backend, _ = backend_for(monkeypatch, [gpu])
    report = backend.start()
    backend.close()
    (probe,) = [f for f in report.devices[0].fields if f.field == "xid_events"]
    assert probe.support is Support.NOT_SUPPORTED


def test_the_watcher_hands_each_event_to_its_callback_and_logs_a_failing_wait_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    patch = NvmlPatch([Gpu(), Gpu()]).install(monkeypatch)
    devices = [Device(f"GPU-{i}", handle(i), {}, {}) for i in range(2)]
    seen: list[tuple[int, int]] = []
    watcher = XidWatcher(lambda h, code: seen.append((index_of(h), code)), wait_ms=10)
    probes = watcher.register(devices)
    assert {k: p.support for k, p in probes.items()} == {"GPU-0": Support.SUPPORTED, "GPU-1": Support.SUPPORTED}
    patch.events.extend([(1, 48), (0, 94)])
    failures = 0

    def failing_wait(event_set: object, timeout_ms: int) -> object:
        nonlocal failures
        failures += 1
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        monkeypatch.setattr(pynvml, "nvmlEventSetWait_v2", failing_wait)
        while failures < 2 and time.monotonic() < deadline:  # the watcher waits 1 s between failing waits
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert seen == [(1, 48), (0, 94)]
    assert failures >= 2
    assert [r.getMessage() for r in caplog.records].count("xid_wait_failed") == 1
    assert watcher.event_set is None
