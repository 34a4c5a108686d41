"""The simulated fleet: who is in it, what its values look like, and that chunking never changes them."""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pytest

from vigil import backfill as b
from vigil.names import GPU_UTILIZATION
from vigil.openmetrics import write_openmetrics

END = 1_767_225_600  # 2026-01-01 00:00 UTC, a Thursday
UTIL = GPU_UTILIZATION.name


def fleet(**kw: object) -> b.Fleet:
    spec = {"gpus": 40, "teams": 3, "days": 7, "step": 300, "clusters": 2, "seed": 7, **kw}
    return b.Fleet(b.FleetSpec(**spec), END)  # type: ignore[arg-type]


def test_teams_have_different_sizes_and_every_node_one_team() -> None:
    assert b.team_sizes(32, 4) == [15, 8, 5, 4]
    assert sum(b.team_sizes(125, 7)) == 125
    assert b.team_sizes(3, 4) == [1, 1, 1, 0]  # fewer nodes than teams: the smallest team has none


def test_every_gpu_has_team_cluster_host_and_the_simulated_label() -> None:
    f = fleet()
    assert len(f.resources) == 40
    for g, (resource, attributes) in enumerate(zip(f.resources, f.attributes, strict=True)):
        assert resource["vigil.simulated"] == "true"
        assert resource["team"] in f.team_names
        assert resource["k8s.cluster.name"] in b.CLUSTERS[:2]
        assert attributes["gpu.index"] == str(g % 8)
        assert "(simulated)" in attributes["gpu.model"]
    hosts = [r["host.name"] for r in f.resources]
    assert all(hosts.count(h) == 8 for h in set(hosts))  # 8 GPUs per node
    assert len({a["gpu.uuid"] for a in f.attributes}) == 40
    assert len({r["team"] for r in f.resources if r["host.name"] == hosts[0]}) == 1  # a node is one team's


def test_values_do_not_depend_on_chunking_or_on_the_metrics_chosen() -> None:
    f = fleet()
    whole = f.values(0, f.steps)
    pieces = np.concatenate([f.values(i0, i1)[UTIL] for i0, i1 in f.chunks(40 * 5 * 64)])
    assert np.array_equal(whole[UTIL], pieces)
    only = fleet(metrics=(UTIL,))
    assert np.array_equal(only.values(0, f.steps)[UTIL], whole[UTIL])
    assert not np.array_equal(fleet(seed=8).values(0, f.steps)[UTIL], whole[UTIL])


def test_utilization_is_whole_percent_follows_the_day_and_the_week_and_some_gpus_idle() -> None:
    f = fleet(gpus=256, teams=4, days=14, step=600)
    util = f.values(0, f.steps)[UTIL]
    assert util.min() >= 0 and util.max() <= 100 and np.array_equal(util, np.rint(util))
    t = f.times(0, f.steps)
    hour = (t % 86_400) // 3600
    weekday = (t // 86_400 + 3) % 7 < 5
    assert util[(hour == 15) & weekday].mean() > 1.5 * util[(hour == 3) & weekday].mean()
    assert util[(hour == 15) & ~weekday].mean() < 0.8 * util[(hour == 15) & weekday].mean()
    assert 0.03 < f.never_busy.mean() < 0.2  # about a tenth is allocated but never works
    assert (util[:, f.never_busy] <= 3).all()
    assert (util.max(axis=0) <= 3).mean() < 0.4  # others idle only while their team's demand is low
    idle_share = (util < 5).mean()
    assert 0.2 < idle_share < 0.8


def test_other_metrics_follow_utilization() -> None:
    f = fleet()
    v = f.values(0, f.steps)
    busy = v[UTIL] > 50
    assert v["gpu.power.draw"][busy].mean() > v["gpu.power.draw"][~busy].mean() + 100
    assert v["gpu.temperature"][busy].mean() > v["gpu.temperature"][~busy].mean()
    assert (v["gpu.memory.used"] <= v["gpu.memory.total"]).all()


def test_arrow_rows_carry_the_exporter_columns_in_series_order() -> None:
    f = fleet(gpus=16, teams=2, days=1, metrics=(UTIL, "gpu.power.draw"))
    table = b.ArrowBuilder(f).table(0, 64, f.values(0, 64))
    assert table.num_rows == 16 * 64 * 2
    assert table.column("TimeUnix").type == pa.timestamp("ns")
    assert table.column("MetricName").to_pylist()[:1] == [UTIL]
    assert table.column("MetricUnit").to_pylist()[-1] == "W"
    first = table.slice(0, 64)
    assert len({str(a) for a in first.column("Attributes").to_pylist()}) == 1  # one GPU's series first
    times = first.column("TimeUnix").cast(pa.int64()).to_pylist()
    assert times == sorted(times) and times[1] - times[0] == 300 * 10**9


def test_openmetrics_has_the_same_values_under_prometheus_names() -> None:
    f = fleet(gpus=8, teams=1, days=1, step=3600, metrics=(UTIL,))
    out = io.StringIO()
    assert write_openmetrics(f, out) == 8 * 24
    lines = out.getvalue().splitlines()
    assert lines[0] == "# TYPE gpu_utilization gauge" and lines[-1] == "# EOF"
    sample = re.compile(r"^gpu_utilization\{(.+)\} (\d+(?:\.\d+)?) (\d+)$")
    values = f.values(0, f.steps)[UTIL]
    first = sample.match(lines[1])
    assert first is not None
    assert 'gpu_uuid="GPU-' in first.group(1) and 'k8s_cluster_name="' in first.group(1)
    assert 'vigil_simulated="true"' in first.group(1)
    assert float(first.group(2)) == values[0, 0] and int(first.group(3)) == f.start
    assert float(sample.match(lines[8]).group(2)) == values[0, 7]  # time-major: 8 GPUs per time  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"gpus": 0}, "--gpus"),
        ({"step": 0}, "--step"),
        ({"days": 0}, "--days"),
        ({"metrics": ("gpu.nope",)}, "gpu.nope"),
        ({"gpus": 16, "teams": 3}, "--teams 3: at most one team per node"),
    ],
)
def test_a_bad_spec_names_its_flag(kw: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        fleet(**kw)
