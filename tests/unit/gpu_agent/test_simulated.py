"""The simulated backend: correlated dynamics, the workload's load, faults, and its labels."""

from __future__ import annotations

from statistics import mean

import pytest

from gpu_agent.model import Fault, FaultKind, Load, Snapshot
from gpu_agent.simulated import MODEL, SimulatedBackend
from vigil import names as n


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(backend: SimulatedBackend, clock: Clock, seconds: int, slow: bool = False) -> list[Snapshot]:
    out = []
    for _ in range(seconds):
        clock.now += 1.0
        s = Snapshot()
        backend.sample(s, slow=slow)
        out.append(s)
    return out


def value(snapshot: Snapshot, metric: n.Metric, gpu: int = 0, **match: str) -> float:
    (v,) = [
        v for v, a in snapshot[metric] if a[n.GPU_INDEX] == str(gpu) and all(a.get(k) == x for k, x in match.items())
    ]
    return v


def sim(count: int = 2, faults: list[Fault] | None = None) -> tuple[SimulatedBackend, Clock]:
    clock = Clock()
    return SimulatedBackend(count, "node-1", faults, seed=1, clock=clock), clock


def test_it_emits_the_catalogue_names_with_simulated_identity() -> None:
    backend, clock = sim(3)
    report = backend.start()
    (snapshot,) = run(backend, clock, 1, slow=True)
    assert set(snapshot) <= set(n.CATALOGUE.values())
    gpu_metrics = set(n.GPU_METRICS) - {n.GPU_XID_ERRORS}
    assert gpu_metrics <= set(snapshot), gpu_metrics - set(snapshot)
    assert len(report.devices) == 3 and report.backend == "simulated"
    attrs = [a for _, a in snapshot[n.GPU_UTILIZATION]]
    assert [a[n.GPU_INDEX] for a in attrs] == ["0", "1", "2"]
    assert {a[n.GPU_MODEL] for a in attrs} == {MODEL} and "(simulated)" in MODEL
    assert len({a[n.GPU_UUID] for a in attrs}) == 3
    # the same host gets the same GPUs across restarts (series continue)
    again = SimulatedBackend(3, "node-1", seed=1, clock=clock)
    assert [g.attributes for g in again.gpus] == [g.attributes for g in backend.gpus]


def test_utilization_follows_the_load_and_power_temperature_clocks_memory_follow_it() -> None:
    backend, clock = sim(1)
    backend.observe_load(Load(running=0, waiting=0, kv_cache_usage=0.0))
    idle = run(backend, clock, 120)[-10:]
    backend.observe_load(Load(running=24, waiting=6, kv_cache_usage=0.9))
    busy = run(backend, clock, 120)[-10:]

    def avg(snaps: list[Snapshot], metric: n.Metric) -> float:
        return mean(value(s, metric) for s in snaps)

    assert avg(idle, n.GPU_UTILIZATION) < 5 < 90 < avg(busy, n.GPU_UTILIZATION)
    assert avg(idle, n.GPU_POWER_DRAW) + 400 < avg(busy, n.GPU_POWER_DRAW)
    assert avg(idle, n.GPU_TEMPERATURE) + 20 < avg(busy, n.GPU_TEMPERATURE)
    assert avg(idle, n.GPU_CLOCK_SM) < 500 < 1500 < avg(busy, n.GPU_CLOCK_SM)
    assert avg(idle, n.GPU_MEMORY_USED) + 40 * 2**30 < avg(busy, n.GPU_MEMORY_USED)
    assert value(idle[-1], n.GPU_CLOCK_EVENT_REASONS) & 0x1  # gpu_idle
    energy = [value(s, n.GPU_ENERGY) for s in busy]
    assert energy == sorted(energy) and energy[-1] - energy[0] > 9 * 400  # joules: about power times seconds


def test_without_an_engine_it_follows_its_own_wave() -> None:
    backend, clock = sim(1)
    utilization = [value(s, n.GPU_UTILIZATION) for s in run(backend, clock, 600)]
    assert max(utilization) - min(utilization) > 40


def test_thermal_throttling_raises_temperature_drops_clocks_and_sets_reasons() -> None:
    backend, clock = sim(2)
    backend.observe_load(Load(running=20, waiting=0, kv_cache_usage=0.5))
    run(backend, clock, 60)
    backend.inject(Fault(FaultKind.THERMAL, gpu=1))
    hot = run(backend, clock, 60)[-1]
    assert value(hot, n.GPU_TEMPERATURE, 1) >= 90
    assert value(hot, n.GPU_CLOCK_SM, 1) < value(hot, n.GPU_CLOCK_SM, 0)
    assert value(hot, n.GPU_CLOCK_EVENT_REASONS, 1) & 0x60 == 0x60
    assert value(hot, n.GPU_CLOCK_EVENT_REASON_ACTIVE, 1, reason="sw_thermal_slowdown") == 1
    assert value(hot, n.GPU_CLOCK_EVENT_REASON_ACTIVE, 0, reason="sw_thermal_slowdown") == 0
    assert value(hot, n.GPU_VIOLATIONS["thermal"], 1) > 30
    backend.clear_faults()
    cool = run(backend, clock, 120)[-1]
    assert value(cool, n.GPU_CLOCK_EVENT_REASONS, 1) & 0x60 == 0


def test_xid_ecc_and_falling_off_the_bus() -> None:
    backend, clock = sim(4)
    backend.inject(Fault(FaultKind.XID, gpu=0, code=31))
    backend.inject(Fault(FaultKind.ECC, gpu=1, ecc="uncorrected", count=2))
    backend.inject(Fault(FaultKind.ECC, gpu=2, ecc="corrected", count=40))
    backend.inject(Fault(FaultKind.FALL_OFF_BUS, gpu=3, after_s=5))
    first, *_, later = run(backend, clock, 10, slow=True)
    xids = {(a[n.GPU_INDEX], a[n.XID]): v for v, a in later[n.GPU_XID_ERRORS]}
    assert xids == {("0", "31"): 1, ("1", "48"): 1, ("3", "79"): 1}
    assert value(later, n.GPU_ECC_UNCORRECTED, 1, **{n.ECC_COUNTER: "volatile"}) == 2
    assert value(later, n.GPU_REMAPPED_PENDING, 1) == 1
    assert value(later, n.GPU_ECC_CORRECTED, 2, **{n.ECC_COUNTER: "aggregate"}) == 40
    assert value(first, n.GPU_UP, 3) == 1  # `after=5`: not yet
    assert value(later, n.GPU_UP, 3) == 0
    assert all(a[n.GPU_INDEX] != "3" for _, a in later[n.GPU_UTILIZATION])  # nothing stale from a lost GPU
    assert backend.lost_gpus() == ["3"]
    backend.clear_faults()
    (back,) = run(backend, clock, 1, slow=True)
    assert value(back, n.GPU_UP, 3) == 1
    assert value(back, n.GPU_REMAPPED_PENDING, 1) == 0  # the reset a pending remap waited for
    # a reset: XIDs and volatile ECC counts start again from 0 (series kept), aggregate ECC keeps its count
    assert {(a[n.GPU_INDEX], a[n.XID]): v for v, a in back[n.GPU_XID_ERRORS]} == dict.fromkeys(xids, 0)
    assert value(back, n.GPU_ECC_UNCORRECTED, 1, **{n.ECC_COUNTER: "volatile"}) == 0
    assert value(back, n.GPU_ECC_UNCORRECTED, 1, **{n.ECC_COUNTER: "aggregate"}) == 2


def test_faults_parse_from_the_command_line_form() -> None:
    assert Fault.parse("xid:gpu=1,code=48") == Fault(FaultKind.XID, gpu=1, code=48)
    assert Fault.parse("fall-off-bus:gpu=2,after=30") == Fault(FaultKind.FALL_OFF_BUS, gpu=2, code=79, after_s=30)
    assert Fault.parse("thermal") == Fault(FaultKind.THERMAL)
    for bad, message in (
        ("melt:gpu=1", "unknown fault kind 'melt'"),
        ("xid:gpu=1", "needs code=N"),
        ("ecc:ecc=double", "corrected or uncorrected"),
        ("xid:code", "expected key=value"),
        ("xid:code=4,colour=red", "unknown fault option"),
    ):
        with pytest.raises(ValueError, match=message):
            Fault.parse(bad)
    backend, _ = sim(2)
    with pytest.raises(ValueError, match="out of range"):
        backend.inject(Fault(FaultKind.THERMAL, gpu=5))


@pytest.mark.parametrize("running", [0, 20])
def test_a_thermal_fault_reaches_slowdown_within_a_few_seconds_idle_or_busy(running: int) -> None:
    # the page rule wants 5 s of slowdown and the drill 10 s from injection to the page: the cooling
    # failure must bring the slowdown bit within about 3 s, and keep it while the fault lasts
    backend, clock = sim(1)
    backend.observe_load(Load(running=running, waiting=0, kv_cache_usage=0.2))
    run(backend, clock, 120)
    backend.inject(Fault(FaultKind.THERMAL, gpu=0))
    seen = run(backend, clock, 10)
    active = [value(s, n.GPU_CLOCK_EVENT_REASON_ACTIVE, 0, reason="sw_thermal_slowdown") for s in seen]
    assert active.index(1) <= 3 and all(active[active.index(1) :]), active
