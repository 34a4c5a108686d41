"""`vigil up`'s run plan: built once from flags and settings; bad labels are refused naming the flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vigil.cli import build_parser, build_plan
from vigil.errors import CliError
from vigil.kernel import RunPlan, parse_label
from vigil.settings import Settings


def plan(tmp_path: Path, *flags: str, **settings: object) -> RunPlan:
    return build_plan(build_parser().parse_args(["up", *flags]), Settings(data=tmp_path, **settings))


def test_the_plan_holds_ports_urls_token_targets_and_labels(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        *("--workload-port", "8011", "--agent-control-port", "9555"),
        *("--label", "team=ml-platform", "--label", "k8s.cluster.name=dev"),
        port=9123,
        control_token="secret-token",
    )
    assert p.url == "http://127.0.0.1:9123" and p.data == tmp_path.resolve()
    assert p.ports == {"vigil": 9123, "workload": 8011, "agent_control": 9555}
    assert p.workload is not None and p.workload.url == "http://127.0.0.1:8011"
    assert p.workload.control_token == "secret-token" and p.workload.demo_traffic
    assert p.workload.health_url == "http://127.0.0.1:8011/health"
    assert p.agent is not None and p.agent.control_url == "http://127.0.0.1:9555"
    assert p.agent.health_url == "http://127.0.0.1:9555/healthz"
    assert p.agent.control_file == tmp_path.resolve() / "agent" / "control.url"
    assert p.scrape_targets == ("http://127.0.0.1:8011/metrics",)
    assert p.labels == (("team", "ml-platform"), ("k8s.cluster.name", "dev"))
    assert "secret-token" not in repr(p)  # plans get logged; the token must not be
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.port = 1  # type: ignore[misc]


def test_without_workload_there_is_nothing_to_scrape_and_without_agent_no_control_url(tmp_path: Path) -> None:
    p = plan(tmp_path, "--no-workload", "--no-agent", "--no-demo-traffic", host="0.0.0.0")
    assert p.workload is None and p.agent is None and p.scrape_targets == ()
    assert p.url.startswith("http://127.0.0.1:")  # children reach a wildcard listener on loopback
    assert plan(tmp_path, "--no-demo-traffic").workload.demo_traffic is False  # type: ignore[union-attr]


def test_the_agent_control_port_is_chosen_once_when_not_given(tmp_path: Path) -> None:
    p = plan(tmp_path, "--no-workload")
    assert p.agent is not None and 1 <= p.agent.control_port <= 65535
    assert p.agent.control_url.endswith(f":{p.agent.control_port}")


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("team", "--label 'team': expected KEY=VALUE"),
        ("=x", "--label '=x': expected KEY=VALUE"),
        ("9team=x", "--label '9team=x': a key is letters"),
        ("host.name=n", "--label host.name: use --hostname"),
        ("vigil.simulated=false", "--label vigil.simulated: reserved"),
    ],
)
def test_a_bad_label_is_refused_naming_the_flag(tmp_path: Path, label: str, message: str) -> None:
    with pytest.raises(CliError, match="^" + message.replace("(", r"\(")):
        plan(tmp_path, "--label", label)


def test_a_label_value_may_hold_equals_signs_and_be_empty() -> None:
    assert parse_label("note=a=b") == ("note", "a=b")
    assert parse_label("team=") == ("team", "")


def test_a_port_out_of_range_is_refused_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="--agent-control-port 70000"):
        plan(tmp_path, "--agent-control-port", "70000")
