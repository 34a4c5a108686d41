"""`vigil agent`'s flags, its --probe output, and how `vigil up` runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pynvml
import pytest

from gpu_agent import cli
from gpu_agent.model import Fault, FaultKind
from vigil.cli import FEATURES, build_parser, build_plan
from vigil.kernel import RunPlan
from vigil.settings import Settings


def config(*argv: str) -> object:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.config_from(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--collector URL is required"),
        (("--collector", "127.0.0.1:8080"), "--collector '127.0.0.1:8080': expected an http"),
        (("--collector", "http://c", "--interval", "0"), "--interval 0.0: should be greater than or equal to 0.05"),
        (("--collector", "http://c", "--cycles", "0"), "--cycles 0: should be greater than or equal to 1"),
        (("--collector", "http://c", "--simulate", "0"), "--simulate 0: should be greater than or equal to 1"),
        (("--collector", "http://c", "--simulate", "1025"), "--simulate 1025: should be less than or equal to 1024"),
        (("--collector", "http://c", "--label", "team"), "--label: 'team': expected KEY=VALUE"),
        (("--collector", "http://c", "--label", "9x=1"), "--label: '9x=1': a key is letters"),
        (("--collector", "http://c", "--label", "vigil.simulated=false"), "--label: vigil.simulated: reserved"),
        (("--collector", "http://c", "--label", "host.name=x"), "--label: host.name: use --hostname NAME"),
        (("--collector", "http://c", "--fault", "xid:code=48"), "--fault works with simulated GPUs only"),
        (("--collector", "http://c", "--simulate", "2", "--fault", "xid:gpu=2,code=48"), "GPUs 0..1"),
        (("--collector", "http://c", "--simulate", "2", "--fault", "boil"), "unknown fault kind"),
        (("--collector", "http://c", "--control", "nowhere"), "--control 'nowhere': expected HOST:PORT"),
        (("--collector", "http://c", "--scrape", "localhost:8000/metrics"), "--scrape: 'localhost:8000/metrics'"),
        (("--collector", "http://c", "--spool-max-mb", "0"), "--spool-max-mb 0.0: should be greater than or equal"),
    ],
)
def test_bad_flags_are_refused_with_the_flags_name(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(cli.UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config(*argv)


def test_good_flags_make_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, "from-env")
    c = config(
        "--collector",
        "https://vigil.example:8443",
        "--simulate",
        "4",
        "--interval",
        "0.2",
        "--cycles",
        "100",
        "--label",
        "team=inference",
        "--label",
        "k8s.cluster.name=eu-1",
        "--scrape",
        "http://127.0.0.1:8000/metrics",
        "--scrape",
        "http://127.0.0.1:8001/metrics",
        "--fault",
        "thermal:gpu=3,after=10",
        "--control",
        "127.0.0.1:0",
        "--spool",
        "/var/lib/vigil-agent/spool",
        "--spool-max-mb",
        "64",
    )
    assert c.collector == "https://vigil.example:8443"  # type: ignore[attr-defined]
    assert c.token == "from-env"  # type: ignore[attr-defined]
    assert c.labels == {"team": "inference", "k8s.cluster.name": "eu-1"}  # type: ignore[attr-defined]
    assert c.faults == [Fault(FaultKind.THERMAL, gpu=3, after_s=10)]  # type: ignore[attr-defined]
    assert c.control == ("127.0.0.1", 0)  # type: ignore[attr-defined]
    assert c.spool == Path("/var/lib/vigil-agent/spool")  # type: ignore[attr-defined]
    assert c.spool_max_bytes == 64 * 2**20  # type: ignore[attr-defined]
    assert len(c.scrape) == 2 and c.cycles == 100 and c.interval == 0.2  # type: ignore[attr-defined]
    assert config("--collector", "http://c", "--token", "flag").token == "flag"  # type: ignore[attr-defined]


def test_vigil_has_the_agent_subcommand_and_up_runs_it() -> None:
    assert cli in FEATURES
    args = build_parser().parse_args(["agent", "--simulate", "2", "--probe"])
    assert args.func is cli.cmd_agent and args.simulate == 2 and args.probe


def up_plan(settings: Settings, *flags: str) -> RunPlan:
    return build_plan(build_parser().parse_args(["up", "--agent-control-port", "9555", *flags]), settings)


def test_up_runs_the_agent_lean_with_the_token_in_its_environment(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data", port=9123, ingest_tokens=["first", "second"])
    plan = up_plan(
        settings, "--workload-port", "8011", "--label", "team=ml-platform", "--label", "k8s.cluster.name=dev"
    )
    spec = cli.child(plan, settings)
    assert spec.name == "agent"
    assert spec.argv[1:3] == ["-m", "gpu_agent"]
    argv = " ".join(spec.argv)
    assert "--collector http://127.0.0.1:9123" in argv
    assert "--scrape http://127.0.0.1:8011/metrics" in argv
    assert f"--spool {(tmp_path / 'data').resolve() / 'agent' / 'spool'}" in argv
    assert "--simulate-if-no-gpu 4" in argv
    assert "--control 127.0.0.1:9555" in argv and spec.health_url == "http://127.0.0.1:9555/healthz"
    assert "--label team=ml-platform --label k8s.cluster.name=dev" in argv
    assert "first" not in argv  # argv is world-readable in ps
    assert spec.env == {cli.TOKEN_ENV: "first"}
    bare_settings = Settings(data=tmp_path, port=9123)
    bare = cli.child(up_plan(bare_settings, "--no-workload"), bare_settings)
    assert "--scrape" not in bare.argv and "--label" not in bare.argv and bare.env == {}
    wide_settings = Settings(data=tmp_path, port=9123, host="0.0.0.0")
    wide = cli.child(up_plan(wide_settings), wide_settings)
    assert "http://127.0.0.1:9123" in wide.argv


def test_the_labels_vigil_up_hands_the_agent_are_ones_it_accepts(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path, port=9123)
    spec = cli.child(up_plan(settings, "--no-workload", "--label", "k8s.cluster.name=dev"), settings)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.config_from(parser.parse_args(spec.argv[3:])).labels == {"k8s.cluster.name": "dev"}  # type: ignore[attr-defined]


def test_probe_prints_a_table_of_fields_by_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--probe", "--simulate", "2"]) == 0
    out = capsys.readouterr().out
    assert "backend: simulated" in out
    assert "GPU 0" in out and "GPU 1" in out
    assert "utilization" in out and "xid_events" in out
    assert "(simulated)" in out


def test_probe_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli.main(["--probe", "--simulate", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "simulated" and len(report["devices"]) == 1
    assert report["devices"][0]["fields"]["utilization"]["support"] == "supported"


def test_no_gpu_and_no_simulate_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def init() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", init)
    assert cli.main(["--collector", "http://127.0.0.1:9", "--cycles", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vigil agent: error: NVML did not initialise")
    assert "--simulate N" in err
