"""Alerting end to end: `vigil up` with the real workload pages a loopback webhook, once, and resolves.

The fault is injected through the workload's control API, as an operator's drill would. Each test
prints its timings (fault → page, clear → resolve) measured on the test's monotonic clock from the
control call's return to the webhook's receipt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.drill import (
    API_TOKEN,
    ERROR_ALERTS,
    Drill,
    assert_no_repeated_group_message,
    fast_rules,
    firing,
    first,
    status_counts,
)
from tests.local import ROOT, wait_until
from tests.receivers import WebhookReceiver


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.mark.heavy
def test_default_pack_pages_a_total_outage_once_and_resolves_it(tmp_path: Path, hook: WebhookReceiver) -> None:
    drill = Drill(tmp_path, hook).start()
    try:
        # Healthy for a while under demo traffic: nothing about errors may fire or even pend.
        before = drill.finished()
        time.sleep(15)
        assert drill.finished() > before, "demo traffic is flowing"
        held = {a["labels"]["alertname"] for a in drill.api("/api/v1/alerts")["alerts"]}
        assert not held & ERROR_ALERTS, held
        assert not [a for _, _, a in hook.alerts() if a["labels"]["alertname"] in ERROR_ALERTS]
        groups = drill.api("/api/v1/rules")["groups"]
        outage = [r for g in groups for r in g["rules"] if r["name"] == "InferenceOutage"]
        assert outage and outage[0]["health"] == "ok", outage

        drill.fault(1.0)
        injected = time.monotonic()
        assert hook.wait_for(lambda: first(hook, "InferenceOutage", "firing") is not None, 60), hook.payloads()
        paged_at, body, alert = first(hook, "InferenceOutage", "firing")  # type: ignore[misc]
        first_page = min(at for at, _, a in hook.alerts() if a["labels"]["alertname"] in ERROR_ALERTS)
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "webhook"
        assert alert["labels"]["severity"] == "page" and alert["labels"]["llm.endpoint"]
        assert alert["startsAt"].endswith("Z") and alert["fingerprint"]
        assert body["groupLabels"] == {"llm.endpoint": alert["labels"]["llm.endpoint"]}  # one failure, one group

        drill.clear()
        cleared = time.monotonic()
        fingerprint = alert["fingerprint"]
        assert hook.wait_for(lambda: status_counts(hook, "InferenceOutage")[(fingerprint, "resolved")] >= 1, 90)
        resolved_at, body, alert = first(hook, "InferenceOutage", "resolved")  # type: ignore[misc]
        assert body["status"] == "resolved" and alert["endsAt"] > alert["startsAt"]
        print(
            f"\ndefault pack: fault -> first error page {first_page - injected:.1f} s,"
            f" InferenceOutage {paged_at - injected:.1f} s; clear -> its resolve {resolved_at - cleared:.1f} s"
        )

        time.sleep(3)  # a duplicate firing message would follow the resolve at once
        assert status_counts(hook, "InferenceOutage") == {(fingerprint, "firing"): 1, (fingerprint, "resolved"): 1}
        assert_no_repeated_group_message(hook)
        history = drill.api("/api/v1/alerts?history=1")["history"]
        assert any(t["rule"] == "InferenceOutage" and t["to"] == "resolved" for t in history), history
    finally:
        drill.stop()


@pytest.mark.heavy
def test_a_restart_while_an_alert_fires_neither_pages_again_nor_loses_the_resolve(
    tmp_path: Path, hook: WebhookReceiver
) -> None:
    # The window (1 m) outlasts the restart, so the outage never stops being visible in the data:
    # the alert must stay the same firing alert throughout. "No second page" is then exact: one
    # firing message for its fingerprint over both runs, and one resolved message after the clear.
    drill = Drill(tmp_path, hook, fast_rules(tmp_path, window="1m")).start()
    try:
        drill.fault(1.0)
        injected = time.monotonic()
        assert hook.wait_for(lambda: first(hook, "FastErrors", "firing") is not None, 60), hook.payloads()
        paged_at, _, alert = first(hook, "FastErrors", "firing")  # type: ignore[misc]
        fingerprint = alert["fingerprint"]
        (before,) = firing(drill, "FastErrors")

        drill.stop()  # SIGTERM; the workload child (and its fault) stops with it
        restart = time.monotonic()
        drill.start()
        drill.fault(1.0)  # the outage goes on in the new workload
        took = time.monotonic() - restart
        print(f"\nrestart: fault -> page {paged_at - injected:.1f} s, down and up again in {took:.1f} s")

        def evaluated_since_restart() -> bool:
            rules = [r for g in drill.api("/api/v1/rules")["groups"] for r in g["rules"] if r["name"] == "FastErrors"]
            return bool(firing(drill, "FastErrors")) and rules[0]["lastEvaluation"] is not None

        assert wait_until(evaluated_since_restart, 30), "the restored alert is held and evaluated"
        (after,) = firing(drill, "FastErrors")
        assert after["fingerprint"] == fingerprint and after["activeAt"] == before["activeAt"], (before, after)
        time.sleep(5)  # rounds every 1 s, group_wait 1 s: a second page would be here by now
        assert status_counts(hook, "FastErrors") == {(fingerprint, "firing"): 1}, hook.payloads()

        drill.clear()
        cleared = time.monotonic()
        assert hook.wait_for(lambda: status_counts(hook, "FastErrors")[(fingerprint, "resolved")] == 1, 120)
        resolved_at, _, _ = first(hook, "FastErrors", "resolved")  # type: ignore[misc]
        print(f"restart: clear -> resolve {resolved_at - cleared:.1f} s (1 m window)")
        time.sleep(2)
        assert status_counts(hook, "FastErrors") == {(fingerprint, "firing"): 1, (fingerprint, "resolved"): 1}
        assert_no_repeated_group_message(hook)
    finally:
        drill.stop()


def cli(drill: Drill, *args: str) -> str:
    """`vigil alerting silence ...` against the running vigil up, with the API token in its environment."""
    assert drill.vigil is not None
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "alerting", "silence", *args, "--url", drill.vigil.url],
        cwd=ROOT,
        env={**os.environ, "VIGIL_API_TOKEN": API_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.heavy
def test_silences_from_the_cli_agree_with_the_api_and_mute_the_page(tmp_path: Path, hook: WebhookReceiver) -> None:
    drill = Drill(tmp_path, hook, fast_rules(tmp_path)).start()
    try:
        silence_id = cli(drill, "add", "alertname=FastErrors", "--duration", "10m", "--comment", "drill").strip()
        listed = json.loads(cli(drill, "list", "--json"))
        assert listed == drill.api("/api/v1/silences")
        assert [s["id"] for s in listed] == [silence_id] and listed[0]["status"] == {"state": "active"}
        assert listed[0]["matchers"] == [
            {"name": "alertname", "value": "FastErrors", "isRegex": False, "isEqual": True}
        ]
        assert silence_id in cli(drill, "list")  # the table a person reads

        drill.fault(1.0)
        assert wait_until(lambda: firing(drill, "FastErrors"), 60), "the alert fires"
        time.sleep(5)  # group_wait 1 s: an unsilenced page would be here by now
        assert hook.alerts("FastErrors") == [], "a silenced alert sends no notification"

        cli(drill, "expire", silence_id)
        assert json.loads(cli(drill, "list", "--json")) == [] == drill.api("/api/v1/silences")
        expired = json.loads(cli(drill, "list", "--expired", "--json"))
        assert expired == drill.api("/api/v1/silences?include_expired=1")
        assert [(s["id"], s["status"]["state"]) for s in expired] == [(silence_id, "expired")]
        # the silence was what held the page: once it ends, the still-firing alert goes out
        assert hook.wait_for(lambda: first(hook, "FastErrors", "firing") is not None, 30), hook.payloads()
    finally:
        drill.stop()
