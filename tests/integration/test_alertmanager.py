"""Vigil forwards to a real Alertmanager (Debian's prometheus-alertmanager) on loopback.

Alertmanager is what many on-call teams already run: Vigil's `alertmanager_configs` receiver must
keep an alert active there while it fires (re-sent, endsAt ahead) and end it on resolve.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.drill import Drill, fast_rules
from tests.local import free_port, wait_until
from tests.receivers import WebhookReceiver

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
RESEND_S = 2.0

# Alertmanager's own notifications go to a loopback webhook quickly (its defaults are 30 s / 5 m),
# so the endsAt Vigil sent on resolve can be read back from what Alertmanager says.
AM_CONFIG = """
route:
  receiver: hook
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@dataclass
class Alertmanager:
    url: str
    hook: WebhookReceiver

    def alerts(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        r.raise_for_status()
        return r.json()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    if BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager; .ci/run does)")
    hook = WebhookReceiver()
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(url=hook.url))
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip: one instance, nothing beyond loopback
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    am = Alertmanager(f"http://127.0.0.1:{port}", hook)
    try:
        ready = wait_until(lambda: httpx.get(f"{am.url}/-/ready", timeout=2).status_code == 200, 30)
        assert ready, f"alertmanager did not become ready:\n{log.read_text()}"
        yield am
    finally:
        proc.terminate()
        proc.wait(10)
        hook.close()


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.mark.heavy
def test_alertmanager_holds_vigils_alert_while_it_fires_and_ends_it_on_resolve(
    tmp_path: Path, alertmanager: Alertmanager
) -> None:
    config = tmp_path / "alerting.yaml"
    config.write_text(
        # re-sent at the route's group interval (a group flushes no more often); 1 s, under the resend
        "route: {receiver: am, group_interval: 1s}\n"
        "receivers:\n"
        "  - name: am\n"
        f"    alertmanager_configs: [{{url: '{alertmanager.url}', resend_interval: {RESEND_S}s}}]\n"
    )
    env = {**fast_rules(tmp_path), "VIGIL_ALERTING_CONFIG": str(config)}
    drill = Drill(tmp_path, None, env).start()

    def forwarded() -> list[dict[str, Any]]:
        return [a for a in alertmanager.alerts() if a["labels"].get("alertname") == "FastErrors"]

    try:
        drill.fault(1.0)
        injected = time.monotonic()
        assert wait_until(forwarded, 60, every=0.2), alertmanager.alerts()
        (held,) = forwarded()
        print(f"\nalertmanager: fault -> active in Alertmanager {time.monotonic() - injected:.1f} s")
        assert held["status"]["state"] == "active"
        # Prometheus label names (Alertmanager refuses OTel's dots): llm.endpoint arrives as llm_endpoint
        assert held["labels"]["severity"] == "page" and held["labels"]["llm_endpoint"]
        assert held["annotations"]["summary"].startswith(held["labels"]["llm_endpoint"])
        assert parse(held["endsAt"]) > time.time(), "a firing alert's endsAt lies ahead"
        # re-sent while it fires, so Alertmanager never times it out
        assert wait_until(lambda: forwarded() and forwarded()[0]["updatedAt"] != held["updatedAt"], 4 * RESEND_S + 10)
        (ours,) = [
            a for a in drill.api("/api/v1/alerts?state=firing")["alerts"] if a["labels"]["alertname"] == "FastErrors"
        ]
        assert parse(held["startsAt"]) == pytest.approx(parse(ours["activeAt"]), abs=1.0)

        drill.clear()
        cleared = time.monotonic()
        assert wait_until(lambda: not forwarded(), 90, every=0.5), "the resolve ends the alert in Alertmanager"
        print(f"alertmanager: clear -> gone from Alertmanager {time.monotonic() - cleared:.1f} s")
        # Alertmanager's own resolved notification carries the endsAt Vigil sent: the resolve time
        hook = alertmanager.hook
        assert hook.wait_for(lambda: any(a["status"] == "resolved" for _, _, a in hook.alerts("FastErrors")), 15)
        resolved = next(a for _, _, a in hook.alerts("FastErrors") if a["status"] == "resolved")
        ends = parse(resolved["endsAt"])
        assert parse(resolved["startsAt"]) < ends <= time.time()
        history = drill.api("/api/v1/alerts?history=1")["history"]
        resolved_at = [parse(t["at"]) for t in history if t["rule"] == "FastErrors" and t["to"] == "resolved"]
        assert resolved_at and ends == pytest.approx(resolved_at[0], abs=1.0)
    finally:
        drill.stop()
