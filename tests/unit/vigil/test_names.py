"""The metric catalogue: every `Metric` registers itself, names are unique, lookups by object."""

from __future__ import annotations

import pytest

from vigil import names as n


def test_every_metric_defined_in_the_module_is_in_the_catalogue() -> None:
    defined = [v for v in vars(n).values() if isinstance(v, n.Metric)] + list(n.GPU_VIOLATIONS.values())
    assert defined and all(n.CATALOGUE[m.name] is m for m in defined)
    assert len(n.CATALOGUE) == len({m.name for m in defined})


def test_a_name_defined_twice_is_refused_where_it_is_defined() -> None:
    with pytest.raises(ValueError, match=r"'gpu\.utilization' is defined twice"):
        n.Metric("gpu.utilization", "%", n.Kind.GAUGE, "a second definition")
    assert n.CATALOGUE["gpu.utilization"] is n.GPU_UTILIZATION


def test_metrics_are_keys_by_identity_and_the_groups_follow_their_prefixes() -> None:
    readings = {n.GPU_UTILIZATION: 1}
    assert readings[n.CATALOGUE["gpu.utilization"]] == 1
    assert n.CATALOGUE.get("gpu.no_such_metric") is None
    assert n.GPU_UP in n.GPU_METRICS and n.GPU_VIOLATIONS["power"] in n.GPU_METRICS
    assert n.LLM_TTFT in n.LLM_METRICS and n.AGENT_SPOOL_BYTES in n.AGENT_METRICS
    assert set(n.GPU_METRICS) | set(n.LLM_METRICS) | set(n.AGENT_METRICS) == set(n.CATALOGUE.values())
