"""A drill on `vigil up` with the real workload: inject a fault, watch what pages a loopback receiver."""

from __future__ import annotations

import collections
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.local import LocalVigil, free_port, wait_until
from tests.receivers import WebhookReceiver

CONTROL_TOKEN = "drill-token"
API_TOKEN = "api-token"
ERROR_ALERTS = {"InferenceOutage", "InferenceErrorBudgetBurn", "FastErrors"}

# A short group for tests that need not wait on the default pack's windows: the same shape as the
# pack's InferenceOutage (an error ratio over a window), evaluated every second.
FAST_RULES = """
groups:
  - name: e2e-fast
    interval: 1s
    rules:
      - alert: FastErrors
        expr:
          metric: llm.requests.finished
          function: increase
          window: {window}
          matchers: {{outcome: error}}
          by: llm.endpoint
          ratio_to: {{metric: llm.requests.finished, function: increase}}
        op: ">"
        threshold: 0.5
        labels: {{severity: page, category: availability}}
        annotations:
          summary: '{{{{ $labels.llm.endpoint }}}}: error ratio {{{{ $value }}}}'
        runbook: inference-outage
"""


class Drill:
    """One `vigil up` with the workload (demo traffic on) and its agent paging `hook`, and the calls a drill makes."""

    def __init__(self, tmp: Path, hook: WebhookReceiver | None, env: dict[str, str] | None = None) -> None:
        self.workload_port = free_port()
        self.env = {
            "VIGIL_CONTROL_TOKEN": CONTROL_TOKEN,
            "VIGIL_API_TOKENS": API_TOKEN,
            **({"VIGIL_WEBHOOK_URL": hook.url} if hook else {}),
            **(env or {}),
        }
        self.data = tmp / "data"
        self.port = free_port()
        self.vigil: LocalVigil | None = None
        self.workload = f"http://127.0.0.1:{self.workload_port}"

    def start(self) -> Drill:
        # the agent scrapes the workload's /metrics (simulated GPUs where there are none): it stays on
        flags = ("--workload-port", str(self.workload_port))
        self.vigil = LocalVigil(self.data, env=self.env, flags=flags, port=self.port).start(timeout=90)
        assert wait_until(lambda: self._get(f"{self.workload}/health").status_code == 200, 90), "the workload is up"
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.vigil is not None and self.vigil.running():
            self.vigil.stop(sig, timeout=30)

    @staticmethod
    def _get(url: str, **kw: Any) -> httpx.Response:
        return httpx.get(url, timeout=5, **kw)

    def fault(self, rate: float = 1.0) -> None:
        r = httpx.post(
            f"{self.workload}/control/fault",
            json={"kind": "errors", "rate": rate},
            headers={"Authorization": f"Bearer {CONTROL_TOKEN}"},
            timeout=10,
        )
        assert r.status_code in (200, 201), r.text

    def clear(self) -> None:
        r = httpx.delete(f"{self.workload}/control/fault", headers={"Authorization": f"Bearer {CONTROL_TOKEN}"})
        assert r.status_code in (200, 204), r.text

    def api(self, path: str) -> Any:
        assert self.vigil is not None
        r = httpx.get(f"{self.vigil.url}{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def finished(self) -> float:
        """Requests the workload finished, by its own /metrics: demo traffic is flowing when this grows."""
        text = self._get(f"{self.workload}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total")
        )


def status_counts(hook: WebhookReceiver, alertname: str) -> collections.Counter[tuple[str, str]]:
    """How many webhook messages told each (fingerprint, status) of `alertname`."""
    return collections.Counter((a["fingerprint"], a["status"]) for _, _, a in hook.alerts(alertname))


def assert_no_repeated_group_message(hook: WebhookReceiver) -> None:
    """Dedup: a group is never sent the same news twice in a row (repeat_interval is 4 h)."""
    last: dict[str, object] = {}
    for r in hook.payloads():
        news = (r.body["status"], sorted((a["fingerprint"], a["status"]) for a in r.body["alerts"]))
        assert last.get(r.body["groupKey"]) != news, f"sent twice: {r.body}"
        last[r.body["groupKey"]] = news


def first(hook: WebhookReceiver, alertname: str, status: str) -> tuple[float, dict[str, Any], dict[str, Any]] | None:
    for at, body, a in hook.alerts(alertname):
        if a["status"] == status:
            return at, body, a
    return None


def fast_rules(tmp_path: Path, window: str = "10s") -> dict[str, str]:
    """Settings for only FastErrors over `window` (the default pack off)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "fast.yaml").write_text(FAST_RULES.format(window=window))
    return {"VIGIL_DEFAULT_RULES": "0", "VIGIL_RULES_DIR": str(rules)}


def firing(drill: Drill, alertname: str) -> list[dict[str, Any]]:
    alerts = drill.api("/api/v1/alerts?state=firing")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname]
