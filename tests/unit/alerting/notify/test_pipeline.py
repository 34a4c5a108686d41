from __future__ import annotations

import json

from alerting.config import AlertingConfig, InhibitRule, IntegrationConfig, ReceiverConfig, RouteConfig
from alerting.matchers import Matcher
from alerting.notify.pipeline import Pipeline
from alerting.notify.send import Outgoing
from tests.unit.alerting.notify.helpers import alert


def pipeline(
    send_resolved: bool = True, kind: str = "webhook", resend_s: float = 60.0, **extra: object
) -> tuple[Pipeline, list[Outgoing]]:
    route = RouteConfig(receiver="r", group_by=("alertname",), group_wait_s=1, group_interval_s=5,
                        repeat_interval_s=3600)  # fmt: skip
    hook = IntegrationConfig(
        kind=kind,
        url="http://127.0.0.1:9/hook",
        send_resolved=send_resolved,
        routing_key="k",
        resend_interval_s=resend_s,
    )
    config = AlertingConfig(route=route, receivers={"r": ReceiverConfig("r", (hook,))}, **extra)  # type: ignore[arg-type]
    p = Pipeline(config, None, None, clock=lambda: 0.0)
    sent: list[Outgoing] = []
    (integration,) = p.integrations["r"]

    def deliver(out: Outgoing) -> None:  # the send stage, delivered at once: records as the worker would
        sent.append(out)
        p.record(out)

    integration.sender.submit = deliver  # type: ignore[method-assign]
    return p, sent


def body(out: Outgoing) -> dict:
    return json.loads(out.request.body)


def test_fire_repeat_and_resolve_go_out_once_each() -> None:
    p, sent = pipeline()
    a = alert(gpu="0", at=100.0)
    p.notify([a], 100.0)
    p.tick(101.0)
    assert [body(o)["status"] for o in sent] == ["firing"]
    for now in (102.0, 104.0, 106.0, 111.0):  # the evaluator re-sends every round: nothing new
        p.notify([a], now)
        p.tick(now)
    assert len(sent) == 1
    p.notify([alert(gpu="0", at=100.0, resolved_at=112.0)], 112.0)
    p.tick(116.0)
    assert [body(o)["status"] for o in sent] == ["firing", "resolved"]
    payload = body(sent[1])
    assert payload["version"] == "4" and payload["alerts"][0]["status"] == "resolved"
    assert payload["alerts"][0]["endsAt"].startswith("1970-01-01T00:01:52")
    p.tick(200.0)
    assert len(sent) == 2


def test_a_silenced_alert_is_not_sent_and_gets_no_resolved_message() -> None:
    p, sent = pipeline()
    p.silences.create([("gpu", "=", "0")], 0.0, 1e9, "alice", "")
    p.notify([alert(gpu="0", at=100.0)], 100.0)
    p.tick(101.0)
    p.notify([alert(gpu="0", at=100.0, resolved_at=103.0)], 103.0)
    p.tick(106.0)
    assert sent == []
    assert p.metrics.dropped.labels(stage="silence")._value.get() == 1


def test_inhibited_alerts_are_held_back() -> None:
    rule = InhibitRule((Matcher.parse("alertname=NodeDown"),), (Matcher.parse("alertname=HighErrors"),), ("host",))
    p, sent = pipeline(inhibit_rules=(rule,))
    p.notify([alert("NodeDown", host="a"), alert("HighErrors", host="a"), alert("HighErrors", host="b")], 1000.0)
    p.tick(1001.0)
    names = sorted((body(o)["groupLabels"]["alertname"], len(body(o)["alerts"])) for o in sent)
    assert names == [("HighErrors", 1), ("NodeDown", 1)]


def test_without_send_resolved_the_log_clears_silently() -> None:
    p, sent = pipeline(send_resolved=False)
    p.notify([alert(gpu="0", at=100.0)], 100.0)
    p.tick(101.0)
    p.notify([alert(gpu="0", at=100.0, resolved_at=102.0)], 102.0)
    p.tick(106.0)
    assert len(sent) == 1
    entry = p.nflog.get("r/webhook/0", sent[0].notification.group_key)
    assert entry is not None and entry.firing == frozenset()


def test_pagerduty_trigger_and_resolve_share_a_dedup_key() -> None:
    p, sent = pipeline(kind="pagerduty")
    p.notify([alert(gpu="0", at=100.0)], 100.0)
    p.tick(101.0)
    p.notify([alert(gpu="0", at=100.0, resolved_at=102.0)], 102.0)
    p.tick(106.0)
    trigger, resolve = (body(o) for o in sent)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] and trigger["routing_key"] == "k"


def test_alertmanager_forward_is_resent_while_firing() -> None:
    p, sent = pipeline(kind="alertmanager")
    a = alert(gpu="0", at=100.0)
    for now in range(100, 200, 5):
        p.notify([a], float(now))
        p.tick(float(now) + 1)
    assert len(sent) == 2  # at 101, then once resend_interval (60 s) passed
    assert sent[0].request.url.endswith("/api/v2/alerts")
    assert body(sent[0])[0]["endsAt"] > body(sent[0])[0]["startsAt"]


def test_alertmanager_ends_at_outlasts_the_groups_flushes() -> None:
    """A group flushes only every group_interval: with a resend shorter than that, endsAt must still
    reach past the next flush, or Alertmanager resolves the alert between two re-sends."""
    from datetime import datetime

    p, sent = pipeline(kind="alertmanager", resend_s=1.0)
    p.notify([alert(gpu="0", at=100.0)], 100.0)
    p.tick(101.0)
    (out,) = sent
    ends = datetime.fromisoformat(body(out)[0]["endsAt"].replace("Z", "+00:00")).timestamp()
    assert ends - out.notification.now >= 4 * 5  # four of the route's 5 s group intervals, not four 1 s resends


def test_alertmanager_forward_sends_prometheus_label_names() -> None:
    """Alertmanager refuses a POST whose label names are not Prometheus's: OTel's dots become `_`."""
    from alerting.notify.receivers.alertmanager import prometheus_labels

    p, sent = pipeline(kind="alertmanager")
    p.notify([alert(**{"host.name": "n1", "gpu.uuid": "GPU-a"})], 100.0)
    p.tick(101.0)
    (forwarded,) = body(sent[0])
    assert forwarded["labels"] == {
        "alertname": "HighErrors",
        "severity": "page",
        "host_name": "n1",
        "gpu_uuid": "GPU-a",
    }
    assert prometheus_labels({"a.b": "1", "a_b": "2", "9x": "3", "": "4"}) == {"a_b": "1;2", "key_9x": "3", "key_": "4"}


def test_what_was_delivered_is_listed_for_the_api_by_time() -> None:
    clock = [100.0]
    p, _ = pipeline()
    p.record._clock = lambda: clock[0]  # type: ignore[method-assign]
    a = alert(gpu="0", at=100.0)
    p.notify([a], 100.0)
    p.tick(101.0)
    clock[0] = 120.0
    p.notify([alert(gpu="0", at=100.0, resolved_at=112.0)], 112.0)
    p.tick(116.0)
    listed = p.record.sent()
    assert [(n["at"], n["status"], n["receiver"]) for n in listed] == [
        (100.0, "firing", "r/webhook/0"),
        (120.0, "resolved", "r/webhook/0"),
    ]
    assert listed[0]["firing"] == [
        {"alertname": a.labels["alertname"], "fingerprint": a.fingerprint, "severity": "page"}
    ]
    assert listed[1]["resolved"][0]["fingerprint"] == a.fingerprint and listed[1]["firing"] == []
    assert [n["status"] for n in p.record.sent(since=110.0)] == ["resolved"]
