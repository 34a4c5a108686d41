from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from alerting.config import GROUP_WAIT_S, ConfigError, load_config, parse_config, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerting.yaml"
    path.write_text(text)
    return path


FULL = """\
external_url: http://vigil:8080
route:
  receiver: oncall
  group_by: [alertname, host]
  routes:
    - matchers: ['severity="ticket"']
      receiver: tickets
      mute_time_intervals: [weekends]
receivers:
  - name: oncall
    pagerduty_configs:
      - routing_key_env: PD_KEY
    webhook_configs:
      - url: http://127.0.0.1:9/hook
        basic_auth: {username: vigil, password_file: SECRET}
  - name: tickets
    slack_configs:
      - url_env: SLACK_URL
        send_resolved: false
    alertmanager_configs:
      - url: http://127.0.0.1:9093
        resend_interval: 30s
inhibit_rules:
  - source_matchers: [alertname=NodeDown]
    target_matchers: [severity=~page|ticket]
    equal: [host]
time_intervals:
  - name: weekends
    time_intervals: [{weekdays: ['saturday:sunday'], location: Europe/Paris}]
"""


def test_a_full_config_loads(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    path = write(tmp_path, FULL.replace("SECRET", str(tmp_path / "pw")))
    env = {"PD_KEY": "pdkey", "SLACK_URL": "https://hooks.slack.test/x"}
    config = load_config(path, SimpleNamespace(webhook_url=""), env)
    assert config.route.group_wait_s == GROUP_WAIT_S and config.route.repeat_interval_s == 4 * 3600
    hook, pd = config.receivers["oncall"].integrations  # in KINDS order
    assert pd.kind == "pagerduty" and pd.routing_key == "pdkey" and pd.url.startswith("https://events.pagerduty")
    assert dict(hook.headers)["Authorization"].startswith("Basic ")
    slack, am = config.receivers["tickets"].integrations
    assert slack.url == "https://hooks.slack.test/x" and slack.send_resolved is False
    assert am.resend_interval_s == 30.0
    assert config.inhibit_rules[0].equal == ("host",)
    assert "pdkey" not in repr(config) and "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("receivers:\n  - name: x\n    pagerduty_configs:\n      - routing_key: abc\n", ":4: .*routing_key_env"),
        ("receivers:\n  - name: x\n    webhook_configs:\n      - url: http://h\n        basic_auth:\n"
         "          password: hunter2\n", ":6: .*password_env"),
        ("route:\n  receiver: nobody\n", "receiver 'nobody'"),
        ("route:\n  group_wait: soon\n", ":2: .*duration"),
        ("route:\n  routes:\n    - matchers: ['=page']\n", ":3: .*matcher"),
        ("route:\n  recever: x\n", ":2: .*unknown key `recever`"),
        ("route: [\n", ":2: not valid YAML"),
        ("receivers:\n  - name: x\n    webhook_configs:\n      - url: ftp://h\n", "http:// or https://"),
        ("receivers:\n  - name: x\n    pagerduty_configs:\n      - routing_key_env: NOPE\n", "NOPE is not set"),
    ],
)  # fmt: skip
def test_config_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), SimpleNamespace(webhook_url=""), {})


def test_no_file_and_a_webhook_url() -> None:
    assert load_config(None, SimpleNamespace(webhook_url="")).route.receiver is None
    config = load_config(None, SimpleNamespace(webhook_url="http://127.0.0.1:9/hook"))
    assert config.route.receiver == "webhook"
    (hook,) = config.receivers["webhook"].integrations
    assert hook.kind == "webhook" and hook.send_resolved


def test_the_webhook_url_joins_an_existing_root_receiver(tmp_path: Path) -> None:
    path = write(tmp_path, "route: {receiver: a}\nreceivers:\n  - name: a\n    slack_configs: [{url: 'http://s'}]\n")
    config = load_config(path, SimpleNamespace(webhook_url="http://127.0.0.1:9/hook"), {})
    assert [i.kind for i in config.receivers["a"].integrations] == ["slack", "webhook"]


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), (2, 2)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


def test_by_default_a_dead_node_pages_once(tmp_path: Path) -> None:
    """NodeAbsent inhibits the GpuMissing of the same host.name: one page for a dead node, not one per GPU."""
    from alerting.notify.inhibit import Inhibitor
    from alerting.rules import default_pack, load_rule_files
    from tests.unit.alerting.notify.helpers import alert

    pack = {rule.name for rule in load_rule_files(default_pack())}
    assert {"NodeAbsent", "GpuMissing"} <= pack, "the default inhibit rule names the default pack's alerts"
    config = load_config(None, SimpleNamespace(webhook_url=""))
    inhibitor = Inhibitor(config.inhibit_rules)
    inhibitor.observe([alert("NodeAbsent", **{"host.name": "n1"})])
    assert inhibitor.mutes(alert("GpuMissing", **{"host.name": "n1", "gpu.uuid": "GPU-a"}))
    assert not inhibitor.mutes(alert("GpuMissing", **{"host.name": "n2", "gpu.uuid": "GPU-b"}))
    assert not inhibitor.mutes(alert("GpuLost", **{"host.name": "n1", "gpu.uuid": "GPU-a"}))

    kept = load_config(write(tmp_path, "route: {group_wait: 2s}\n"), SimpleNamespace(webhook_url=""))
    assert kept.inhibit_rules == config.inhibit_rules, "a file that says nothing of inhibit_rules keeps the default"
    dropped = load_config(write(tmp_path, "inhibit_rules: []\n"), SimpleNamespace(webhook_url=""))
    assert dropped.inhibit_rules == ()


def test_the_default_route_groups_the_alerts_of_one_failure_and_waits_longer_for_slo_burns() -> None:
    from alerting.config import SLO_GROUP_WAIT_S, AlertingConfig
    from alerting.notify.route import Route

    for config in (AlertingConfig(), parse_config({"receivers": [{"name": "x"}]})):
        route = Route.build(config.route)
        workload = [
            {"alertname": a, "llm.endpoint": "http://wl", "severity": "page"} for a in ("InferenceOutage", "EngineDown")
        ]
        gpu = [
            {"alertname": a, "host.name": "h", "gpu.uuid": "G", "xid": "48"}
            for a in ("GpuXidNeedsReset", "GpuEccUncorrectable")
        ]
        for pair in (workload, gpu):
            (a,), (b,) = route.match(pair[0]), route.match(pair[1])
            assert a is b and a.group_labels(pair[0]) == a.group_labels(pair[1])
        assert route.match(workload[0])[0].group_labels(gpu[0]) != route.match(gpu[0])[0].group_labels(workload[0])
        (slo,) = route.match({"alertname": "InferenceErrorBudgetBurn", "category": "slo", "service": "inference"})
        assert slo.group_wait_s == SLO_GROUP_WAIT_S and slo.group_labels({"service": "inference"}) == {
            "service": "inference"
        }
    assert parse_config({"route": {"group_by": ["alertname"]}}).route.routes == ()  # a file's route replaces it


def test_the_default_inhibit_rules_mute_what_another_alert_explains() -> None:
    from alerting.config import AlertingConfig
    from alerting.notify.inhibit import Inhibitor
    from tests.unit.alerting.notify.helpers import alert

    def muted(source: Any, target: Any) -> bool:
        inhibitor = Inhibitor(AlertingConfig().inhibit_rules)
        inhibitor.observe([source, target])
        return inhibitor.mutes(target)

    wl, other = {"llm.endpoint": "http://wl"}, {"llm.endpoint": "http://other"}
    gpu = {"host.name": "h", "gpu.uuid": "G"}
    assert muted(alert("InferenceOutage", **wl), alert("InferenceErrorBudgetBurn", service="inference"))
    assert muted(alert("EngineDown", **wl), alert("InferenceOutage", **wl))
    assert not muted(alert("EngineDown", **other), alert("InferenceOutage", **wl))
    assert muted(
        alert("InferenceItlBudgetBurn", service="inference"), alert("InferenceTtftBudgetBurn", service="inference")
    )
    assert muted(alert("InferenceSlowTokens", **wl), alert("InferenceItlBudgetBurn", service="inference"))
    assert muted(alert("GpuXidNeedsReset", xid="48", **gpu), alert("GpuEccUncorrectable", **gpu))
    assert not muted(alert("GpuXidNeedsReset", xid="79", **gpu), alert("GpuEccUncorrectable", **gpu))
    assert not muted(
        alert("GpuXidNeedsReset", xid="48", **gpu), alert("GpuEccUncorrectable", **{**gpu, "gpu.uuid": "H"})
    )
    assert muted(alert("PreemptionStorm", **wl), alert("KvCacheSaturated", **wl))
    assert muted(alert("EngineStalled", **wl), alert("InferenceItlBudgetBurn", service="inference"))
    assert not muted(alert("EngineStalled", **wl), alert("InferenceErrorBudgetBurn", service="inference"))
    assert not muted(alert("InferenceErrorBudgetBurn", service="inference"), alert("InferenceOutage", **wl))
