"""AgentSettings: every agent setting as a flag and a `VIGIL_AGENT_*` variable, declared once."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gpu_agent import cli
from gpu_agent.model import Fault, FaultKind
from gpu_agent.settings import DEFAULT_POD_RESOURCES_SOCKET, AgentSettings
from vigil.flags import env_name

FLAGS_BEFORE_SETTINGS = (  # every flag `vigil agent` had, with its default, must keep working
    ("--collector", ""),
    ("--token", ""),
    ("--ca-file", None),
    ("--export-timeout", 10.0),
    ("--simulate", None),
    ("--simulate-if-no-gpu", None),
    ("--interval", 1.0),
    ("--slow-interval", 10.0),
    ("--probe-interval", 300.0),
    ("--cycles", None),
    ("--label", {}),
    ("--scrape", []),
    ("--scrape-interval", 5.0),
    ("--scrape-timeout", 3.0),
    ("--spool", None),
    ("--spool-max-mb", 256.0),
    ("--drain-timeout", 30.0),
    ("--fault", []),
    ("--control", None),
    ("--control-file", None),
    ("--proc-root", Path("/proc")),
    ("--pod-resources-socket", DEFAULT_POD_RESOURCES_SOCKET),
    ("--seed", None),
)


def parse(*argv: str) -> AgentSettings:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.config_from(parser.parse_args(["--collector", "http://c", *argv]))


def test_every_earlier_flag_exists_with_its_default() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    defaults = AgentSettings()
    for flag, default in FLAGS_BEFORE_SETTINGS:
        assert flag in flags, flag
        field = {"--label": "labels", "--fault": "faults"}.get(flag, flag[2:].replace("-", "_"))
        assert getattr(defaults, field) == default, flag
    assert {"--probe", "--json"} <= flags


def test_the_token_variable_is_the_one_vigil_up_hands_its_child() -> None:
    assert env_name(AgentSettings, "token") == cli.TOKEN_ENV


def test_variables_set_what_flags_do_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_AGENT_LABELS", "team=ml-platform, k8s.cluster.name=dev")
    monkeypatch.setenv("VIGIL_AGENT_SCRAPE", "http://127.0.0.1:8000/metrics,http://127.0.0.1:8001/metrics")
    monkeypatch.setenv("VIGIL_AGENT_FAULTS", "xid:gpu=1,code=48; thermal:gpu=0")
    monkeypatch.setenv("VIGIL_AGENT_SIMULATE", "2")
    monkeypatch.setenv("VIGIL_AGENT_INTERVAL", "0.5")
    monkeypatch.setenv("VIGIL_AGENT_CONTROL", "[::1]:9402")
    s = parse()
    assert s.labels == {"team": "ml-platform", "k8s.cluster.name": "dev"}
    assert s.scrape == ["http://127.0.0.1:8000/metrics", "http://127.0.0.1:8001/metrics"]
    assert s.faults == [Fault(FaultKind.XID, gpu=1, code=48), Fault(FaultKind.THERMAL, gpu=0)]
    assert (s.simulate, s.interval, s.control) == (2, 0.5, ("::1", 9402))
    flagged = parse("--label", "team=serving", "--interval", "2")
    assert flagged.labels == {"team": "serving"} and flagged.interval == 2.0


def test_a_bad_variable_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_AGENT_LABELS", "team")
    with pytest.raises(cli.UsageError, match=r"^VIGIL_AGENT_LABELS: 'team': expected KEY=VALUE"):
        parse()


def test_spool_bound_in_bytes() -> None:
    assert parse("--spool-max-mb", "64").spool_max_bytes == 64 * 2**20
