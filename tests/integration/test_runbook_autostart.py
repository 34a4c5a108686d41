"""`vigil up`'s composition: a firing alert whose rule allows it starts its runbook by itself, once,
and the run says it was automatic and which alert started it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from vigil.app import SERVICES, create_app
from vigil.kernel import RunPlan
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.columns import GAUGE

RUN = uuid.uuid4().hex[:8]
TOKEN = "autostart-token"
GPU = f"GPU-auto-{RUN}"

RULES = f"""
groups:
  - name: auto-{RUN}
    interval: 1s
    rules:
      - alert: AutoHotGpu
        expr: {{metric: gpu.temperature, function: max, window: 1m, matchers: {{vigil.test: "{RUN}"}}, by: [gpu.uuid]}}
        op: ">"
        threshold: 90
        labels: {{severity: ticket}}
        annotations: {{summary: "hot", runbook_auto: "true"}}
        runbook: note-hot-{RUN}
"""

RUNBOOK = f"""
name: note-hot-{RUN}
description: a note only, so the test needs no live target
target: gpu
steps:
  - note: "GPU ${{target}} is hot"
"""


def test_a_firing_alert_starts_its_runbook_by_itself_once(store: Store, tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "auto.yaml").write_text(RULES)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "note.yaml").write_text(RUNBOOK)
    now = time.time()
    store.insert_columns(
        GAUGE,
        [
            ["gpu.temperature"] * 5,
            [{"gpu.uuid": GPU, "vigil.test": RUN}] * 5,
            [round((now - 25 + 5 * i) * 1e9) for i in range(5)],
            [95.0] * 5,
        ],
        ["MetricName", "ResourceAttributes", "TimeUnix", "Value"],
    )
    settings = Settings(
        data=tmp_path,
        rules_dir=tmp_path / "rules",
        default_rules=False,
        runbooks_dir=tmp_path / "runbooks",
        default_runbooks=False,
        api_tokens=[TOKEN],
    )
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=tmp_path)
    app = create_app(settings, store, plan, services=SERVICES)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        runs: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not runs:
            runs = client.get(f"/api/v1/runs?runbook=note-hot-{RUN}", headers=auth).json()["runs"]
            time.sleep(0.3)
        assert runs, "the alert never started its runbook"
        time.sleep(3)  # more evaluation rounds, the alert still firing: no second run
        runs = client.get(f"/api/v1/runs?runbook=note-hot-{RUN}", headers=auth).json()["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["auto"] is True and run["target"] == GPU
    assert "AutoHotGpu" in str(run["origin"])
