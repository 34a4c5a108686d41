"""The NVML field catalogue: what each field reads and the catalogue readings it becomes, through
the backend, against the real `pynvml` module with its functions patched (see nvml_patch.py)."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

from gpu_agent.nvml_fields import FIELD_VALUES, build_fields, reason_attributes
from tests.unit.gpu_agent.nvml_patch import Gpu, backend_for, sample, values
from vigil import names as n


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


def test_the_catalogue_has_unique_field_names_and_emits_only_catalogue_metrics() -> None:
    fields = build_fields()
    names = [f.name for f in fields] + [v.name for v in FIELD_VALUES]
    assert len(names) == len(set(names))
    assert all(v.metric in n.GPU_METRICS for v in FIELD_VALUES)
    assert [f.name for f in fields if f.slow] == ["power.limit", "ecc", "remapped_rows", "pcie.throughput", "processes"]


def test_reason_attributes_give_one_series_per_clock_event_reason() -> None:
    attrs = {n.GPU_INDEX: "0"}
    reasons = reason_attributes(attrs)
    assert [bit for bit, _ in reasons] == list(n.CLOCK_EVENT_REASONS)
    assert reasons[0][1] == {n.GPU_INDEX: "0", n.REASON: "gpu_idle"}
