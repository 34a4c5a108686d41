"""`vigil drill` against `vigil up` with the reference workload and simulated GPUs: each fault is
detected, its runbook runs (started by the rule or by the drill) and verifies recovery on fresh data,
the alert resolves, one page goes out, the faults are cleared and the incident keeps the drill's row.

The rules are the shipped pack itself: its page rules for these faults (InferenceOutage, EngineStalled,
EngineStalledQueued, PreemptionStorm) have windows of seconds, so the test stays bounded. The webhook's
deliveries are counted too: exactly one page per fault, as the drill's table says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.drill import API_TOKEN, CONTROL_TOKEN, Drill
from tests.local import ROOT
from tests.receivers import WebhookReceiver


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[tuple[Drill, WebhookReceiver]]:
    with WebhookReceiver() as hook:
        d = Drill(tmp_path, hook).start()
        try:
            yield d, hook
        finally:
            d.stop()


def run_drill(d: Drill, out: Path, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    assert d.vigil is not None
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", "drill", "--url", d.vigil.url, "--json", str(out), *args],
        cwd=ROOT,
        env={**os.environ, "VIGIL_API_TOKEN": API_TOKEN},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.heavy
def test_vigil_drill_errors_stall_and_kv_pressure_detects_mitigates_verifies_and_clears(
    drill: tuple[Drill, WebhookReceiver], tmp_path: Path
) -> None:
    d, hook = drill
    out = tmp_path / "drill.json"
    args = ["--fault", "errors", "--fault", "stall", "--fault", "kv_pressure", "--approver", "drill-bot"]
    done = run_drill(d, out, *args, "--timeout", "180", "--resolve-timeout", "60", timeout=600)
    print(done.stdout, done.stderr[-3000:])
    rows = {r["fault"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["errors", "stall", "kv_pressure"]
    expected = {
        "errors": ({"InferenceOutage"}, "inference-outage", True),
        "stall": ({"EngineStalled", "EngineStalledQueued"}, "engine-stalled", True),
        "kv_pressure": ({"PreemptionStorm"}, "kv-cache-saturated", False),
    }
    for fault, (alert, runbook, auto) in expected.items():
        row = rows[fault]
        assert row["alert"] in alert and (row["runbook"], row["auto"]) == (runbook, auto), row
        # the goal is 10 s (the drill's table reports it); here a shared 2-core machine gets slack. kv_pressure
        # needs none more: the drill keeps the long requests in flight that make it preempt at once
        assert row["detected_s"] is not None and row["detected_s"] <= 30, row
        assert row["started_s"] is not None and row["started_s"] >= row["detected_s"], row
        assert row["verified_s"] is not None and row["verified_s"] <= 180, row
        assert row["resolved_s"] is not None, row
        assert row["pages"] == 1 and row["incident"], row  # one failure, one page
        run = d.api(f"/api/v1/runs/{row['run']}")
        assert run["state"] == "succeeded" and run["auto"] is auto, run
        if not auto:
            assert run["started_by"] == "drill-bot", run
        # the incident keeps the drill's row as a note by the drill user
        incident = d.api(f"/api/v1/incidents/{row['incident']}")
        notes = [e for e in incident["timeline"] if e["kind"] == "note"]
        assert any(n["actor"] == "drill-bot" and f"fault {fault}" in n["text"] for n in notes), notes
    # every fault is cleared, the config the kv runbook lowered is put back, and the drill's token is revoked
    target = d.api("/api/v1/drill/target")
    config = httpx.get(f"{d.workload}/control/config", headers={"Authorization": f"Bearer {CONTROL_TOKEN}"}).json()
    assert config["max_num_seqs"] != 1 and config["shed_fraction"] == 0, config
    assert target["workload"]["faults"] == [] and target["gpus"]["faults"] == []
    assert all(t.get("revoked") for t in d.api("/api/v1/tokens")["tokens"] if t["name"] == "drill-bot")
    # the drill's count is what the receiver got: one delivery telling a page firing per fault, no other
    pages = [
        r
        for r in hook.payloads()
        if any(a["status"] == "firing" for a in r.body["alerts"] if a["labels"].get("severity") == "page")
    ]
    assert len(pages) == sum(r["pages"] for r in rows.values()) == 3, [r.body for r in pages]
    # the table a person reads names every fault
    assert all(f in done.stdout for f in expected), done.stdout
    assert "mitigated+verified (s)" in done.stdout


def test_the_drill_refuses_a_vigil_without_a_workload_and_viewers_cannot_inject(tmp_path: Path) -> None:
    from tests.local import LocalVigil

    server = LocalVigil(tmp_path / "data", env={"VIGIL_API_TOKENS": API_TOKEN}).start()
    try:
        d = Drill.__new__(Drill)
        d.vigil = server
        done = run_drill(d, tmp_path / "x.json", "--fault", "errors", timeout=60)
        assert done.returncode == 1 and "no reference workload" in done.stderr, done.stderr
        answer = httpx.post(f"{server.url}/api/v1/drill/faults", json={"kind": "errors", "params": {"rate": 1}})
        assert answer.status_code == 401
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        answer = httpx.post(
            f"{server.url}/api/v1/drill/faults", json={"kind": "errors", "params": {"rate": 1}}, headers=auth
        )
        assert answer.status_code == 409 and "no reference workload" in answer.json()["detail"]
        answer = httpx.post(f"{server.url}/api/v1/drill/faults", json={"kind": "meteor"}, headers=auth)
        assert answer.status_code == 422
    finally:
        server.stop()
