"""The loop end to end under `vigil up`, with the reference workload and Chromium: an `errors` fault
fires the outage alert, whose rule starts its runbook by itself; the runbook waits for a person, who
approves it in the browser; it restarts the engine and verifies on fresh data that errors stopped; the
alert resolves, and the incident's timeline holds the alert, the run, the approval with the approver's
name and the resolution, in that order. Screenshots of each stage go to the output folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Console
from tests.integration.drill import API_TOKEN, Drill
from tests.local import wait_until

PASSWORD = "incident-e2e-password"

# The shipped pack's InferenceOutage with a short window, linked to a runbook that asks before restarting.
RULES = """
groups:
  - name: e2e-outage
    interval: 1s
    rules:
      - alert: InferenceOutage
        expr:
          metric: llm.requests.finished
          function: increase
          window: 10s
          matchers: {outcome: error}
          by: llm.endpoint
          ratio_to: {metric: llm.requests.finished, function: increase}
        op: ">"
        threshold: 0.5
        keep_firing_for: 3s
        labels: {severity: page}
        annotations: {summary: "error ratio {{ $value }}", runbook_auto: "true"}
        runbook: outage-approve
"""

BOOK = """
name: outage-approve
description: Ask on-call, restart the engine drained, verify requests succeed again.
target: workload
steps:
  - name: approve the restart
    approve: "Restart the engine at ${target}?"
    timeout: 5m
  - name: drained restart
    action: restart
    with: {drain_timeout_s: 2}
    timeout: 30s
  - name: errors stopped
    wait_for:
      metric: llm.requests.finished
      function: increase
      window: 10s
      matchers: {outcome: error, llm.endpoint: "${target}"}
      ratio_to: {metric: llm.requests.finished, function: increase}
      op: "<="
      value: 0.01
      empty: pass
    timeout: 60s
    every: 2s
"""


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "outage.yaml").write_text(RULES)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "outage-approve.yaml").write_text(BOOK)
    env = {
        "VIGIL_ADMIN_PASSWORD": PASSWORD,
        "VIGIL_DEFAULT_RULES": "0",
        "VIGIL_RULES_DIR": str(tmp_path / "rules"),
        "VIGIL_RUNBOOKS_DIR": str(tmp_path / "runbooks"),
    }
    d = Drill(tmp_path, None, env).start()
    try:
        yield d
    finally:
        d.stop()


def shot(page: Any, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"incident-e2e-{name}.png"), full_page=True)


@pytest.mark.heavy
def test_an_errors_fault_to_a_verified_fix_approved_in_the_browser_and_the_incident_timeline(
    drill: Drill, browser_page: tuple[Any, Console], output_dir: Path
) -> None:
    assert drill.vigil is not None
    url, auth = drill.vigil.url, {"Authorization": f"Bearer {API_TOKEN}"}
    page, console = browser_page
    page.goto(f"{url}/login?next=/runbooks")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{url}/runbooks")

    injected = httpx.post(
        f"{url}/api/v1/drill/faults", json={"kind": "errors", "params": {"rate": 1.0}}, headers=auth, timeout=10
    )
    assert injected.status_code == 201, injected.text

    def outage() -> list[dict[str, Any]]:
        alerts = drill.api("/api/v1/alerts?state=firing")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "InferenceOutage"]

    assert wait_until(outage, 60), "the outage alert fires"
    (alert,) = outage()
    assert alert["runbook"] == "outage-approve"

    def auto_run() -> list[dict[str, Any]]:
        return drill.api("/api/v1/runs?runbook=outage-approve")["runs"]

    assert wait_until(auto_run, 30), "the rule starts its runbook"
    (run,) = auto_run()
    assert run["auto"] is True and "InferenceOutage" in run["origin"]

    # a person approves the waiting step in the browser
    page.goto(f"{url}/runs/{run['id']}")
    page.wait_for_selector("#run-state[data-state='waiting_approval']", timeout=30_000)
    shot(page, output_dir, "1-waiting")
    page.click("form.approve button")
    page.wait_for_url("**/runs/*?done=approved")
    page.wait_for_selector("#run-state[data-state='succeeded']", timeout=90_000)
    assert "admin" in page.inner_text("#approvals")
    shot(page, output_dir, "2-verified")

    done = drill.api(f"/api/v1/runs/{run['id']}")
    assert done["state"] == "succeeded" and [a["by"] for a in done["approvals"]] == ["admin"]
    assert wait_until(lambda: not outage(), 60), "the alert resolves once errors stopped"

    def incident() -> dict[str, Any] | None:
        for item in drill.api("/api/v1/incidents?status=all")["incidents"]:
            found = drill.api(f"/api/v1/incidents/{item['id']}")
            if any(a["fingerprint"] == alert["fingerprint"] for a in found["alerts"]) and found["status"] != "open":
                return found
        return None

    assert wait_until(incident, 30), "the incident resolves with its alert"
    found = incident()
    assert found is not None
    timeline = found["timeline"]
    kinds = [(e["kind"], e.get("to") or e.get("event") or e.get("state") or "") for e in timeline]

    def first(pred: Any) -> int:
        return next(i for i, e in enumerate(timeline) if pred(e))

    fired = first(lambda e: e["kind"] == "alert" and e.get("to") == "firing")
    started = first(lambda e: e["kind"] == "runbook_run" and e["run"] == run["id"])
    approved = first(lambda e: e["kind"] == "runbook_step" and e["event"] == "approved")
    verified = first(
        lambda e: e["kind"] == "runbook_step" and e["stepName"] == "errors stopped" and e["event"] == "succeeded"
    )
    resolved = first(lambda e: e["kind"] == "alert" and e.get("to") == "resolved")
    ended = first(lambda e: e["kind"] == "resolved")
    assert fired <= started < approved < verified and resolved <= ended, kinds
    assert timeline[approved]["actor"] == "admin", timeline[approved]
    assert timeline[started]["state"] == "succeeded" and timeline[started]["auto"] is True
    time.sleep(0)  # the page stayed clean throughout
    assert console.errors == []
