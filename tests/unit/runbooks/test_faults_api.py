"""The drill's fault injection: it reaches the reference workload and simulated GPUs, and refuses
anything else unless the request says it is production."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from runbooks.faults_api import DrillFaults, DrillRefused, FaultIn
from vigil.kernel import AgentPlan, RunPlan, WorkloadPlan

WL = "http://127.0.0.1:9001"
AGENT = "http://127.0.0.1:9002"


def plan(workload: bool = True, agent: bool = True) -> RunPlan:
    return RunPlan(
        host="127.0.0.1",
        port=1,
        url="http://127.0.0.1:1",
        data=Path("/tmp"),
        workload=WorkloadPlan(port=9001, url=WL, control_token="secret") if workload else None,
        agent=AgentPlan(control_port=9002, control_url=AGENT, control_file=Path("/tmp/x")) if agent else None,
    )


class Far:
    """The workload's and the agent's control APIs, recording what they were asked."""

    def __init__(self, model: str = "vigil-tiny-lm", backend: str = "simulated") -> None:
        self.model, self.backend = model, backend
        self.calls: list[tuple[str, str, Any, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, str(request.url), body, request.headers.get("authorization", "")))
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": self.model}]})
        if path == "/probe":
            return httpx.Response(200, json={"backend": self.backend, "host": {}, "devices": []})
        if path in ("/control/fault", "/faults") and request.method == "GET":
            return httpx.Response(200, json={"faults": []})
        if path == "/faults" and self.backend != "simulated":
            return httpx.Response(409, json={"error": "faults can be injected into the simulated backend only"})
        return httpx.Response(201 if request.method == "POST" else 200, json={"ok": True})

    def posted(self) -> list[tuple[str, Any, str]]:
        return [(url, body, auth) for method, url, body, auth in self.calls if method == "POST"]


def faults(far: Far, **kw: bool) -> DrillFaults:
    return DrillFaults(plan(**kw), httpx.Client(transport=httpx.MockTransport(far)))


def test_a_workload_fault_reaches_the_reference_workload_with_the_control_token() -> None:
    far = Far()
    faults(far).inject(FaultIn(kind="errors", params={"rate": 1.0}))
    assert far.posted() == [(f"{WL}/control/fault", {"kind": "errors", "rate": 1.0}, "Bearer secret")]


def test_a_gpu_fault_reaches_the_agent_of_simulated_gpus() -> None:
    far = Far()
    faults(far).inject(FaultIn(kind="xid", params={"code": 79, "gpu": 0}))
    assert far.posted() == [(f"{AGENT}/faults", {"kind": "xid", "code": 79, "gpu": 0}, "")]


def test_a_workload_that_is_not_the_reference_one_is_refused_unless_production_is_said() -> None:
    far = Far(model="llama-70b")
    with pytest.raises(DrillRefused, match="not the reference workload"):
        faults(far).inject(FaultIn(kind="stall"))
    assert far.posted() == []
    faults(far).inject(FaultIn(kind="stall", i_know_this_is_production=True))
    assert [url for url, _, _ in far.posted()] == [f"{WL}/control/fault"]


def test_real_gpus_are_refused_and_the_agent_refuses_them_even_when_told_production() -> None:
    far = Far(backend="nvml")
    with pytest.raises(DrillRefused, match="real GPUs"):
        faults(far).inject(FaultIn(kind="thermal"))
    assert far.posted() == []
    with pytest.raises(DrillRefused, match="simulated backend only"):
        faults(far).inject(FaultIn(kind="thermal", i_know_this_is_production=True))


def test_no_workload_or_agent_is_refused_with_the_reason() -> None:
    with pytest.raises(DrillRefused, match="no reference workload"):
        faults(Far(), workload=False).inject(FaultIn(kind="errors", params={"rate": 1.0}))
    with pytest.raises(DrillRefused, match="no GPU agent"):
        faults(Far(), agent=False).inject(FaultIn(kind="ecc"))


def test_a_target_other_than_the_workload_this_vigil_runs_is_refused() -> None:
    with pytest.raises(DrillRefused, match="not the workload this Vigil runs"):
        faults(Far()).inject(FaultIn(kind="stall", target="http://10.0.0.9:8000", i_know_this_is_production=True))


def test_clear_clears_the_workload_and_the_agent() -> None:
    far = Far()
    faults(far).clear()
    deleted = [url for method, url, _, _ in far.calls if method == "DELETE"]
    assert deleted == [f"{WL}/control/fault", f"{AGENT}/faults"]


class Configured(Far):
    """A workload whose config a runbook changes between the fault and the clear."""

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"max_num_seqs": 64, "max_num_batched_tokens": 2048, "num_blocks": 512}
        self.config["shed_fraction"] = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/control/config" and request.method == "GET":
            self.calls.append(("GET", str(request.url), None, request.headers.get("authorization", "")))
            return httpx.Response(200, json=self.config)
        answer = super().__call__(request)
        body = json.loads(request.content) if request.content else {}
        if request.url.path == "/control/config" and request.method == "PATCH":
            self.config.update(body)
        if request.url.path == "/control/shed":
            self.config["shed_fraction"] = body["fraction"]
        return answer


def test_clearing_restores_the_workload_config_the_runbook_changed_and_only_that() -> None:
    far = Configured()
    drill = faults(far)
    drill.inject(FaultIn(kind="kv_pressure", params={"fraction": 0.98}))
    far.config.update(max_num_seqs=1, shed_fraction=0.5)  # what kv-cache-saturated and a shedding runbook do
    drill.inject(FaultIn(kind="stall"))  # a second fault keeps the config from before the first
    out = drill.clear()
    assert out["restored"] == {"max_num_seqs": 64, "shed_fraction": 0.0}
    patches = [(body, auth) for method, url, body, auth in far.calls if method == "PATCH"]
    assert patches == [({"max_num_seqs": 64}, "Bearer secret")]  # num_blocks untouched: no needless restart
    assert far.config["max_num_seqs"] == 64 and far.config["shed_fraction"] == 0.0
    assert "restored" not in drill.clear()  # nothing kept after a clear: the next drill starts afresh
