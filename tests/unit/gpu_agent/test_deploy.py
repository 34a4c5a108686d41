"""The DaemonSet and the systemd unit run flags the agent accepts, with what the issue asks of them."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from gpu_agent import cli

DEPLOY = Path(__file__).parents[3] / "deploy"


def parse(argv: list[str]) -> object:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.config_from(parser.parse_args(argv))


def test_the_daemonset_runs_on_gpu_nodes_with_what_attribution_needs() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")
    (ds,) = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes/gpu-agent/daemonset.yaml").read_text()) if d]
    spec = ds["spec"]["template"]["spec"]
    assert ds["kind"] == "DaemonSet"
    assert spec["hostPID"] is True
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = spec["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/lib/kubelet/pod-resources" in mounts and "/var/lib/vigil-agent" in mounts
    assert container["resources"]["requests"] == {"cpu": "20m", "memory": "64Mi"}
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    env = {e["name"]: e for e in container["env"]}
    assert env[cli.TOKEN_ENV]["valueFrom"]["secretKeyRef"]["name"] == "vigil-agent-token"
    values = {
        "VIGIL_COLLECTOR": "http://vigil:8080",
        "NODE_NAME": "gpu-7",
        "VIGIL_CLUSTER": "eu-1",
        "POD_IP": "10.1.2.3",
    }
    argv = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in container["args"]]
    config = parse(argv)
    assert config.spool == Path("/var/lib/vigil-agent/spool")  # type: ignore[attr-defined]
    assert config.labels == {"k8s.node.name": "gpu-7", "k8s.cluster.name": "eu-1"}  # type: ignore[attr-defined]
    assert config.control == ("10.1.2.3", 9402)  # type: ignore[attr-defined]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_systemd_unit_runs_the_agent_with_a_spool_in_its_state_directory() -> None:
    unit = (DEPLOY / "systemd/vigil-agent.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.M | re.S).group(1).replace("\\\n", " ")
    argv = shlex.split(
        exec_start.replace("${VIGIL_COLLECTOR}", "http://vigil:8080").replace("${VIGIL_CLUSTER}", "eu-1")
    )
    assert argv[1:3] == ["-m", "gpu_agent"]
    config = parse(argv[3:])
    assert str(config.spool).startswith("/var/lib/vigil-agent")  # type: ignore[attr-defined]
    assert "StateDirectory=vigil-agent" in unit
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    assert timeout > config.drain_timeout  # type: ignore[attr-defined]
