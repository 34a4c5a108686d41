"""One collection per cycle: points, start times, resource, and the sampling loop that drives it."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricsData, Sum

from gpu_agent.agent import SamplingLoop, resource_attributes
from gpu_agent.model import ProbeReport, Snapshot
from gpu_agent.settings import AgentSettings
from gpu_agent.simulated import SimulatedBackend
from gpu_agent.spool import MemorySpool
from gpu_agent.telemetry import StartTimes, Telemetry, count_points
from vigil import names as n

A = {n.GPU_INDEX: "0"}
B = {n.GPU_INDEX: "1"}


def metrics(data: MetricsData) -> dict[str, Any]:
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_each_collection_has_exactly_one_point_per_reading_and_nothing_else() -> None:
    t = Telemetry({"service.name": "vigil-gpu-agent"})
    for cycle in range(3):
        s = Snapshot()
        s.add(n.GPU_UTILIZATION, 10 + cycle, A)
        s.add(n.GPU_UTILIZATION, 20 + cycle, B)
        if cycle == 0:
            s.add(n.GPU_ECC_CORRECTED, 5, A)  # a slow field, read on the first cycle only
        by_name = metrics(t.collect(s, []))
        util = by_name[n.GPU_UTILIZATION.name]
        assert [p.value for p in util.data.data_points] == [10 + cycle, 20 + cycle]
        assert util.unit == "%" and util.description == n.GPU_UTILIZATION.description
        assert (n.GPU_ECC_CORRECTED.name in by_name) == (cycle == 0)  # not repeated from memory
    t.shutdown()


def test_counters_are_cumulative_with_a_start_that_moves_only_on_reset() -> None:
    t = Telemetry({})
    starts = []
    for value in (100, 150, 20):  # the driver was reloaded before the third reading
        s = Snapshot()
        s.add(n.GPU_ENERGY, value, A)
        m = metrics(t.collect(s, [], now_ns=len(starts) * 10**9 + 5 * 10**18))[n.GPU_ENERGY.name]
        assert isinstance(m.data, Sum) and m.data.is_monotonic and m.data.aggregation_temporality == 2
        starts.append(m.data.data_points[0].start_time_unix_nano)
    assert starts[0] == starts[1] == t.first_seen_ns
    assert starts[2] == 5 * 10**18 + 10**9 + 1
    t.shutdown()


def test_non_finite_readings_never_leave() -> None:
    t = Telemetry({})
    s = Snapshot()
    s.add(n.GPU_POWER_DRAW, math.nan, A)
    s.add(n.GPU_POWER_DRAW, 300.0, B)
    s.add(n.GPU_TEMPERATURE, math.inf, A)
    by_name = metrics(t.collect(s, []))
    assert [p.value for p in by_name[n.GPU_POWER_DRAW.name].data.data_points] == [300.0]
    assert n.GPU_TEMPERATURE.name not in by_name
    t.shutdown()


def test_a_reading_under_a_name_string_is_logged_and_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    t = Telemetry({})
    s = Snapshot()
    s.add(n.GPU_TEMPERATURE, 60.0, A)
    s["gpu.not_in_the_catalogue"] = [(1.0, A)]  # type: ignore[index]  # a backend's bug
    for _ in range(2):
        by_name = metrics(t.collect(s, []))
        assert [p.value for p in by_name[n.GPU_TEMPERATURE.name].data.data_points] == [60.0]
        assert "gpu.not_in_the_catalogue" not in by_name
    assert [r.getMessage() for r in caplog.records].count("reading_skipped") == 1  # said once, not every cycle
    t.shutdown()


def test_the_agents_own_metrics_are_collected_with_the_cycle_and_a_flush_adds_no_collection() -> None:
    t = Telemetry({})
    t.set_gauge(n.AGENT_SPOOL_BATCHES, [(3, {})])
    t.dropped.add(2, {"reason": "spool_full"})
    assert t.provider.force_flush()
    by_name = metrics(t.collect(Snapshot(), []))
    assert [p.value for p in by_name[n.AGENT_SPOOL_BATCHES.name].data.data_points] == [3]
    assert [p.value for p in by_name[n.AGENT_BATCHES_DROPPED.name].data.data_points] == [2]
    t.shutdown()


def test_start_times_forget_series_that_went_away() -> None:
    starts = StartTimes(forget_after=5)
    starts.start("gone", 1, 10, 0)
    for _ in range(200):
        starts.start("stays", 1, 10, 0)
        starts.sweep()
    assert len(starts) == 1


def test_simulated_data_carries_vigil_simulated_true_and_real_data_false() -> None:
    report = ProbeReport("simulated", {n.AGENT_BACKEND: "simulated"}, [])
    config = AgentSettings(labels={"team": "inference", "k8s.cluster.name": "eu-1"}, hostname="node-7")
    attrs = resource_attributes(config, report, simulated=True)
    assert attrs[n.SIMULATED] == "true"
    assert attrs[n.HOST_NAME] == "node-7" and attrs["team"] == "inference" and attrs["k8s.cluster.name"] == "eu-1"
    assert attrs["service.name"] == "vigil-gpu-agent"
    assert resource_attributes(config, report, simulated=False)[n.SIMULATED] == "false"


class Collecting:
    """Stands in for the exporter in the loop: keeps what it is handed."""

    def __init__(self) -> None:
        self.spool = MemorySpool(10**6)
        self.batches: list[MetricsData] = []

    def submit(self, data: MetricsData) -> None:
        self.batches.append(data)


def test_k_cycles_are_k_collections_with_one_point_per_gpu_each() -> None:
    backend = SimulatedBackend(4, "node-1", seed=3)
    t = Telemetry(resource_attributes(AgentSettings(), backend.start(), True))
    exporter = Collecting()
    loop = SamplingLoop(backend, t, exporter, [], 0.001, slow_interval_s=0.003, probe_interval_s=0)  # type: ignore[arg-type]
    assert loop.run(7, threading.Event()) == 7
    t.shutdown()
    assert len(exporter.batches) == 7
    for i, data in enumerate(exporter.batches):
        by_name = metrics(data)
        assert len(by_name[n.GPU_UTILIZATION.name].data.data_points) == 4
        assert (n.GPU_ECC_CORRECTED.name in by_name) == (i % 3 == 0)  # slow fields every third cycle
        assert data.resource_metrics[0].resource.attributes[n.SIMULATED] == "true"
        encoded = encode_metrics(data)
        assert count_points(data) == sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for rm in encoded.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
    assert loop.costs()["cycle_p50_us"] > 0


def test_a_series_that_appears_after_the_first_reading_starts_just_after_the_reading_before() -> None:
    """An XID code's count first read at 1 was 0 at the reading before: its start says so, and a
    series there from the first reading keeps the process's start."""
    starts = StartTimes()
    assert starts.start("power", 1, 100, 50) == 50
    assert starts.start("power", 2, 200, 50) == 50
    assert starts.start("xid79", 1, 200, 50) == 101  # absent at 100
    assert starts.start("xid79", 2, 300, 50) == 101
    assert starts.start("created", 1, 300, 50, created_ns=120) == 120  # a stated creation time wins
