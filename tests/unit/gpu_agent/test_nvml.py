"""The NVML backend against the real `pynvml` module, its functions patched (see nvml_patch.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pynvml
import pytest

from gpu_agent.attribution import Attribution
from gpu_agent.model import BackendUnavailable, Snapshot, Support
from gpu_agent.nvml import NvmlBackend
from tests.unit.gpu_agent.nvml_patch import Gpu, NvmlPatch
from vigil import names as n


def backend_for(
    monkeypatch: pytest.MonkeyPatch, gpus: list[Gpu], proc_root: Path | None = None
) -> tuple[NvmlBackend, NvmlPatch]:
    patch = NvmlPatch(gpus).install(monkeypatch)
    return NvmlBackend(Attribution(proc_root or Path("/nonexistent"), None), xid_wait_ms=10), patch


def sample(backend: NvmlBackend, slow: bool = True) -> Snapshot:
    out = Snapshot()
    backend.sample(out, slow=slow)
    return out


def values(snapshot: Snapshot, metric: n.Metric, **match: str) -> list[float]:
    return [v for v, a in snapshot.get(metric, []) if all(a.get(k) == x for k, x in match.items())]


def test_every_field_reads_into_catalogue_names_with_labels_and_units(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = backend_for(monkeypatch, [Gpu(), Gpu(util=90)])
    report = backend.start()
    try:
        out = sample(backend)
    finally:
        backend.close()
    assert report.host_attributes[n.GPU_DRIVER_VERSION] == "550.54.15"
    assert report.host_attributes[n.GPU_CUDA_VERSION] == "12.4"
    assert set(out) <= set(n.CATALOGUE.values())
    (_, attrs), _ = out[n.GPU_UTILIZATION]
    assert attrs == {
        n.GPU_INDEX: "0",
        n.GPU_UUID: "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
        n.GPU_PCI_BUS_ID: "00000000:18:00.0",
        n.GPU_MODEL: "NVIDIA A100-SXM4-80GB",
    }
    assert values(out, n.GPU_UTILIZATION) == [50, 90]
    assert values(out, n.GPU_MEMORY_UTILIZATION, **{n.GPU_INDEX: "0"}) == [20]
    assert values(out, n.GPU_MEMORY_USED, **{n.GPU_INDEX: "0"}) == [30 * 2**30]
    assert values(out, n.GPU_MEMORY_RESERVED, **{n.GPU_INDEX: "0"}) == [512 * 2**20]
    assert values(out, n.GPU_MEMORY_FREE, **{n.GPU_INDEX: "0"}) == [(80 - 30) * 2**30 - 512 * 2**20]
    assert values(out, n.GPU_POWER_DRAW, **{n.GPU_INDEX: "0"}) == [350.0]  # mW → W
    assert values(out, n.GPU_POWER_LIMIT, **{n.GPU_INDEX: "0"}) == [400.0]
    assert values(out, n.GPU_ENERGY, **{n.GPU_INDEX: "0"}) == [9000.0]  # mJ → J
    assert values(out, n.GPU_CLOCK_SM, **{n.GPU_INDEX: "0"}) == [1980]
    assert values(out, n.GPU_CLOCK_MEMORY, **{n.GPU_INDEX: "0"}) == [2619]
    assert values(out, n.GPU_TEMPERATURE, **{n.GPU_INDEX: "0"}) == [61]
    assert values(out, n.GPU_MEMORY_TEMPERATURE, **{n.GPU_INDEX: "0"}) == [70]  # field 82
    assert values(out, n.GPU_POWER_INSTANT, **{n.GPU_INDEX: "0"}) == [351.0]  # field 186, mW → W
    assert values(out, n.GPU_NVLINK_TX, **{n.GPU_INDEX: "0"}) == [4 * 1024]  # KiB → B
    assert values(out, n.GPU_RECOVERY_ACTION, **{n.GPU_INDEX: "0"}) == [0]
    assert values(out, n.GPU_PCIE_REPLAY, **{n.GPU_INDEX: "0"}) == [3]
    assert values(out, n.GPU_PCIE_TX, **{n.GPU_INDEX: "0"}) == [1000 * 1024]  # KB/s → B/s
    assert values(out, n.GPU_PCIE_RX, **{n.GPU_INDEX: "0"}) == [2000 * 1024]
    assert values(out, n.GPU_ENCODER_UTILIZATION, **{n.GPU_INDEX: "0"}) == [5]
    assert values(out, n.GPU_DECODER_UTILIZATION, **{n.GPU_INDEX: "0"}) == [6]
    assert values(out, n.GPU_VIOLATIONS["power"], **{n.GPU_INDEX: "0"}) == [2.5]  # ns → s
    assert values(out, n.GPU_VIOLATIONS["thermal"], **{n.GPU_INDEX: "0"}) == [5.0]
    assert values(out, n.GPU_ECC_CORRECTED, **{n.GPU_INDEX: "0", n.ECC_COUNTER: "volatile"}) == [7]
    assert values(out, n.GPU_ECC_CORRECTED, **{n.GPU_INDEX: "0", n.ECC_COUNTER: "aggregate"}) == [70]
    assert values(out, n.GPU_ECC_UNCORRECTED, **{n.GPU_INDEX: "0", n.ECC_COUNTER: "aggregate"}) == [1]
    assert values(out, n.GPU_REMAPPED_CORRECTABLE, **{n.GPU_INDEX: "0"}) == [2]
    assert values(out, n.GPU_REMAPPED_PENDING, **{n.GPU_INDEX: "0"}) == [0]
    assert values(out, n.GPU_UP) == [1, 1]


def test_clock_event_reasons_give_the_bitmask_and_one_flag_per_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = backend_for(monkeypatch, [Gpu(reasons=0x4 | 0x40)])
    backend.start()
    out = sample(backend, slow=False)
    backend.close()
    assert values(out, n.GPU_CLOCK_EVENT_REASONS) == [0x44]
    flags = {a[n.REASON]: v for v, a in out[n.GPU_CLOCK_EVENT_REASON_ACTIVE]}
    assert flags == {name: int(bit in (0x4, 0x40)) for bit, name in n.CLOCK_EVENT_REASONS.items()}


def test_an_older_driver_without_the_event_reasons_call_falls_back_to_throttle_reasons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu = Gpu(reasons=0x1)
    gpu.errors["nvmlDeviceGetCurrentClocksEventReasons"] = pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    backend, patch = backend_for(monkeypatch, [gpu])
    backend.start()
    out = sample(backend, slow=False)
    backend.close()
    assert values(out, n.GPU_CLOCK_EVENT_REASONS) == [0x1]
    assert patch.count("nvmlDeviceGetCurrentClocksThrottleReasons") == 2  # probe, then one cycle


def test_not_supported_fields_are_probed_once_listed_and_never_called_or_logged_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gpu = Gpu()
    gpu.errors["nvmlDeviceGetTotalEccErrors"] = pynvml.NVMLError_NotSupported()  # no ECC on this board
    gpu.errors["nvmlDeviceGetRemappedRows"] = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # pre-Ampere
    gpu.errors["nvmlDeviceGetEncoderUtilization"] = pynvml.NVMLError_FunctionNotFound()  # old driver
    gpu.errors["nvmlDeviceGetPcieThroughput"] = pynvml.NVMLError_NoPermission()
    gpu.field_values[138] = (0, pynvml.NVML_ERROR_NOT_SUPPORTED)  # no NVLink
    gpu.field_values[139] = (0, pynvml.NVML_ERROR_NOT_SUPPORTED)
    backend, patch = backend_for(monkeypatch, [gpu])
    report = backend.start()
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        for _ in range(5):
            out = sample(backend, slow=True)
    backend.close()

    probes = {p.field: p for p in report.devices[0].fields}
    assert probes["ecc"].support is Support.NOT_SUPPORTED
    assert probes["remapped_rows"].support is Support.NOT_SUPPORTED
    assert probes["encoder"].support is Support.NOT_SUPPORTED
    assert probes["pcie.throughput"].support is Support.NO_PERMISSION
    assert probes["nvlink.tx"].support is Support.NOT_SUPPORTED
    assert probes["utilization"].support is Support.SUPPORTED and probes["utilization"].cost_us is not None
    assert {p.field for p in report.devices[0].unsupported} == {
        "ecc",
        "remapped_rows",
        "encoder",
        "pcie.throughput",
        "nvlink.tx",
        "nvlink.rx",
        "gpm",
    }
    for fn in ("nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRemappedRows", "nvmlDeviceGetEncoderUtilization"):
        assert patch.count(fn) == 1, f"{fn} was called again after answering NotSupported"
    assert patch.count("nvmlDeviceGetPcieThroughput") == 1
    assert patch.count("nvmlDeviceGetUtilizationRates") == 6  # the probe and five cycles
    for metric in (n.GPU_ECC_CORRECTED, n.GPU_REMAPPED_CORRECTABLE, n.GPU_ENCODER_UTILIZATION, n.GPU_NVLINK_TX):
        assert metric.name not in out
    assert values(out, n.GPU_MEMORY_TEMPERATURE) == [70]  # the other field values still come
    assert caplog.records == [], "sampling logged for a field that was skipped at probe"


def test_a_field_failing_at_run_time_is_logged_when_it_starts_and_when_it_clears(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gpu = Gpu()
    backend, patch = backend_for(monkeypatch, [gpu])
    backend.start()
    gpu.errors["nvmlDeviceGetTemperature"] = pynvml.NVMLError_Unknown()
    with caplog.at_level(logging.INFO, logger="gpu_agent.nvml"):
        for _ in range(4):
            out = sample(backend, slow=False)
        assert n.GPU_TEMPERATURE not in out
        assert values(out, n.GPU_UTILIZATION) == [50]  # the rest of the GPU still reports
        del gpu.errors["nvmlDeviceGetTemperature"]
        out = sample(backend, slow=False)
    backend.close()
    events = [r.getMessage() for r in caplog.records]
    assert events == ["gpu_field_failing", "gpu_field_recovered"]
    assert values(out, n.GPU_TEMPERATURE) == [61]
    assert patch.count("nvmlDeviceGetTemperature") == 6  # transient errors are retried every cycle


def test_a_gpu_that_falls_off_the_bus_reports_up_0_and_nothing_stale(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lost = Gpu()
    backend, patch = backend_for(monkeypatch, [Gpu(), lost])
    backend.start()
    lost.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVMLError_GpuIsLost()
    with caplog.at_level(logging.ERROR, logger="gpu_agent.nvml"):
        outs = [sample(backend, slow=False) for _ in range(3)]
    backend.close()
    for out in outs:
        assert values(out, n.GPU_UP, **{n.GPU_INDEX: "1"}) == [0]
        assert values(out, n.GPU_UP, **{n.GPU_INDEX: "0"}) == [1]
        assert all(a[n.GPU_INDEX] == "0" for v, a in out[n.GPU_MEMORY_USED])
    assert [r.getMessage() for r in caplog.records] == ["gpu_lost"]
    assert patch.calls[("nvmlDeviceGetMemoryInfo", 1)] == 1  # the probe only: a lost GPU is not asked again
    assert backend.lost_gpus() == ["1"]


def test_nvml_that_does_not_initialise_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, patch = backend_for(monkeypatch, [])
    patch.init_error = pynvml.NVMLError_LibraryNotFound()
    with pytest.raises(
        BackendUnavailable, match=r"NVML did not initialise \(NVML Shared Library Not Found\).*--simulate"
    ):
        backend.start()


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


def test_mig_instances_are_their_own_series(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = Gpu(mig=[(1, 0, "3g.40gb"), (2, 0, "3g.40gb")])
    gpu.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVMLError_NotSupported()  # as with MIG on
    backend, _ = backend_for(monkeypatch, [gpu])
    report = backend.start()
    out = sample(backend)
    backend.close()
    assert len(report.devices) == 3
    migs = [a for _, a in out[n.GPU_MEMORY_USED] if n.GPU_MIG_GPU_INSTANCE in a]
    assert [(a[n.GPU_MIG_GPU_INSTANCE], a[n.GPU_MIG_PROFILE], a[n.GPU_UUID]) for a in migs] == [
        ("1", "3g.40gb", "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd"),
        ("2", "3g.40gb", "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd"),
    ]
    assert migs[0]["gpu.mig.uuid"] != migs[1]["gpu.mig.uuid"]
    assert n.GPU_UTILIZATION not in out
    assert values(out, n.GPU_POWER_DRAW) == [350.0]  # GPU-wide fields stay on the parent


def test_processes_are_attributed_to_their_container_and_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    container = "4f" * 32
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "comm").write_text("python3\n")
    (tmp_path / "4242" / "cgroup").write_text(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f6a_4b7c_8d9e_0a1b2c3d4e5f.slice/"
        f"cri-containerd-{container}.scope\n"
    )
    gpu = Gpu(processes=[(4242, 12 * 2**30), (777, None)])
    backend, _ = backend_for(monkeypatch, [gpu], proc_root=tmp_path)
    backend.start()
    out = sample(backend, slow=True)
    fast = sample(backend, slow=False)
    backend.close()
    assert values(out, n.GPU_PROCESSES) == [2]
    ((used, attrs),) = out[n.GPU_PROCESS_MEMORY]  # the process without a memory figure is left out
    assert used == 12 * 2**30
    assert attrs[n.PROCESS_PID] == "4242"
    assert attrs[n.PROCESS_NAME] == "python3"
    assert attrs[n.CONTAINER_ID] == container
    assert attrs[n.K8S_POD_UID] == "1b2c3d4e-5f6a-4b7c-8d9e-0a1b2c3d4e5f"
    assert attrs[n.GPU_UUID] == "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd"
    assert n.GPU_PROCESS_MEMORY not in fast  # process lists are a slow field


def test_gpm_activity_between_two_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = backend_for(monkeypatch, [Gpu()])
    metric_values = {
        pynvml.NVML_GPM_METRIC_SM_UTIL: 80.0,
        pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: 40.0,
        pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 30.0,
        pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: 55.0,
    }
    samples: list[object] = []

    def metrics_get(request: pynvml.c_nvmlGpmMetricsGet_t) -> pynvml.c_nvmlGpmMetricsGet_t:
        assert request.version == pynvml.NVML_GPM_METRICS_GET_VERSION
        for i in range(request.numMetrics):
            request.metrics[i].value = metric_values[request.metrics[i].metricId]
            request.metrics[i].nvmlReturn = pynvml.NVML_SUCCESS
        return request

    monkeypatch.setattr(
        pynvml, "nvmlGpmQueryDeviceSupport", lambda h: pynvml.c_nvmlGpmSupport_t(version=1, isSupportedDevice=1)
    )
    monkeypatch.setattr(pynvml, "nvmlGpmSampleAlloc", lambda: pynvml.c_nvmlGpmSample_t())
    monkeypatch.setattr(pynvml, "nvmlGpmSampleGet", lambda h, s: samples.append(s) or s)
    monkeypatch.setattr(pynvml, "nvmlGpmMetricsGet", metrics_get)
    monkeypatch.setattr(pynvml, "nvmlGpmSampleFree", lambda s: None)
    backend.start()
    out = sample(backend, slow=False)
    backend.close()
    assert values(out, n.GPU_SM_ACTIVE) == [0.8]
    assert values(out, n.GPU_SM_OCCUPANCY) == [0.4]
    assert values(out, n.GPU_TENSOR_ACTIVE) == [0.3]
    assert values(out, n.GPU_DRAM_ACTIVE) == [0.55]
    assert len(samples) == 3  # the baseline at setup, the probe's, the cycle's


def test_the_periodic_probe_finds_new_gpus_and_gpus_that_answer_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lost = Gpu()
    gpus = [lost]
    backend, patch = backend_for(monkeypatch, gpus)
    backend.start()
    lost.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVMLError_GpuIsLost()
    assert values(sample(backend, slow=False), n.GPU_UP) == [0]
    backend.reprobe()
    assert values(sample(backend, slow=False), n.GPU_UP) == [0]  # still lost: probed again, still failing
    del lost.errors["nvmlDeviceGetUtilizationRates"]
    gpus.append(Gpu(util=7))  # hot-added, or its driver came back
    with caplog.at_level(logging.INFO, logger="gpu_agent.nvml"):
        backend.reprobe()
        out = sample(backend, slow=False)
        backend.reprobe()  # nothing changed: nothing probed again
    backend.close()
    assert values(out, n.GPU_UP) == [1, 1]
    assert values(out, n.GPU_UTILIZATION) == [50, 7]
    assert [r.getMessage() for r in caplog.records] == ["gpu_lost", "gpu_recovered", "gpu_found"]
    assert patch.registered == [0, 0, 1]  # XID events registered for the GPUs that came
    assert patch.calls[("nvmlDeviceGetMemoryInfo", 1)] == 2  # its one probe, then one cycle
