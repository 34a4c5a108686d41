"""The NVML backend (probing, run-time failures, lost GPUs, MIG, re-probing) against the real `pynvml`
module, its functions patched (see nvml_patch.py)."""

from __future__ import annotations

import logging

import pynvml
import pytest

from gpu_agent.model import BackendUnavailable, Support
from tests.unit.gpu_agent.nvml_patch import Gpu, backend_for, sample, values
from vigil import names as n


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
