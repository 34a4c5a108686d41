"""Rule files: what compiles, errors that name file:line, window warnings, the default pack."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alerting.rules import AGENT_INTERVALS_S, RuleError, check_file, default_pack, load_rule_files, load_slos
from alerting.slo import BUCKET_BOUNDS, BurnRateRule
from vigil.names import XIDS
from vigil.store.window import Matcher, WindowQuery

THRESHOLD = """\
groups:
  - name: g
    rules:
      - alert: Outage
        expr:
          metric: llm.requests.finished
          function: increase
          window: 30s
          matchers: ['outcome="error"', 'llm.model=~"tiny.*"']
          by: llm.endpoint
          ratio_to: {metric: llm.requests.finished, function: increase}
        op: ">"
        threshold: 0.5
        for: 10s
        keep_firing_for: 1m
        labels: {severity: page, team: ml}
        annotations: {summary: "{{ $labels.llm.endpoint }} {{ $value }}"}
        runbook: outage
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_threshold_rule_compiles_to_its_queries(tmp_path: Path) -> None:
    [rule] = load_rule_files([write(tmp_path, THRESHOLD)])
    assert (rule.name, rule.group, rule.interval_s, rule.for_s, rule.keep_firing_for_s) == ("Outage", "g", 2.0, 10, 60)
    assert rule.labels == {"severity": "page", "team": "ml"} and rule.runbook == "outage"
    errors, total = rule.queries()
    assert errors == WindowQuery(
        "llm.requests.finished",
        "sum",
        "increase",
        30,
        (Matcher("llm.model", "=~", "tiny.*"), Matcher("outcome", "=", "error")),
        ("llm.endpoint",),
    )
    assert total == WindowQuery("llm.requests.finished", "sum", "increase", 30, (), ("llm.endpoint",))


@pytest.mark.parametrize(
    ("severities", "interval"),
    [(["page", "page"], 2.0), (["page", "ticket"], 15.0), (["ticket"], 15.0)],
)
def test_group_interval_defaults_to_2s_for_all_page_groups(
    tmp_path: Path, severities: list[str], interval: float
) -> None:
    rules = "".join(
        f"""      - alert: R{i}
        expr: {{metric: gpu.temperature, function: max, window: 1m}}
        op: ">"
        threshold: 90
        labels: {{severity: {sev}}}
"""
        for i, sev in enumerate(severities)
    )
    loaded = load_rule_files([write(tmp_path, f"groups:\n  - name: g\n    rules:\n{rules}")])
    assert {r.interval_s for r in loaded} == {interval}


def test_an_explicit_interval_wins(tmp_path: Path) -> None:
    text = THRESHOLD.replace("  - name: g\n", "  - name: g\n    interval: 30s\n")
    [rule] = load_rule_files([write(tmp_path, text)])
    assert rule.interval_s == 30


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        (
            "metric: llm.requests.finished\n          function",
            "metric: llm.nope\n          function",
            6,
            "not in the catalogue",
        ),
        ("function: increase\n          window", "function: avg\n          window", 7, "does not suit"),
        ("window: 30s", "window: 30", 8, "needs a unit"),
        ("window: 30s", "window: 30x", 8, "not a duration"),
        ("'outcome=\"error\"'", "'outcome==error'", 9, "key op"),
        ('op: ">"', 'op: "=>"', 12, "unknown comparison"),
        ("severity: page", "severity: critical", 16, "use page or ticket"),
        ("{{ $value }}", "{{ .Value }}", 17, "unknown placeholder"),
        ("runbook: outage", "runbok: outage", 18, "unknown key 'runbok'"),
        ("threshold: 0.5", "threshold: high", 13, "expected a number"),
        ("by: llm.endpoint", "by: llm.endpoint\n          quantile: 0.9", 11, "only for function quantile"),
        ("alert: Outage\n", "alert: Outage\n        type: sometimes\n", 5, "unknown rule type"),
        ("for: 10s", "for: 10s\n        for: 20s", 15, "given twice"),
        ("    rules:", "    rules: [", 4, "not valid YAML"),
    ],
)
def test_errors_name_the_file_line_and_what_to_do(tmp_path: Path, old: str, new: str, line: int, says: str) -> None:
    assert old in THRESHOLD
    path = write(tmp_path, THRESHOLD.replace(old, new, 1))
    with pytest.raises(RuleError) as err:
        load_rule_files([path])
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert says in str(err.value)


def test_a_group_name_is_defined_once_across_files(tmp_path: Path) -> None:
    a, b = write(tmp_path, THRESHOLD, "a.yaml"), write(tmp_path, THRESHOLD, "b.yaml")
    with pytest.raises(RuleError, match=rf"{re.escape(str(b))}:2: .*already defined at {re.escape(str(a))}:2"):
        load_rule_files([a, b])


def test_a_missing_file_is_a_rule_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        load_rule_files([tmp_path / "none.yaml"])


def test_histogram_rules_check_quantile_and_bucket_bounds(tmp_path: Path) -> None:
    rule = """groups:
  - name: g
    rules:
      - alert: Slow
        expr: {metric: llm.time_to_first_token, function: quantile, quantile: 0.99, window: 5m}
        op: ">"
        threshold: 1
"""
    [r] = load_rule_files([write(tmp_path, rule)])
    assert r.queries()[0].quantile == 0.99 and r.queries()[0].kind == "histogram"
    bad = rule.replace("function: quantile, quantile: 0.99", "function: le_count, le: 0.3")
    with pytest.raises(RuleError, match=r"0.3 is not a bucket bound of llm.time_to_first_token: use one of 0.001 "):
        load_rule_files([write(tmp_path, bad)])


ABSENCE = """groups:
  - name: g
    rules:
      - alert: NodeAbsent
        type: absence
        metric: gpu.up
        by: host.name
        for: 1m
        labels: {severity: page}
"""


def test_an_absence_rule_reads_last_seen_per_source(tmp_path: Path) -> None:
    [rule] = load_rule_files([write(tmp_path, ABSENCE)])
    assert rule.type == "absence" and rule.for_s == 0
    assert rule.queries() == (WindowQuery("gpu.up", "gauge", "last_seen", 3600, (), ("host.name",)),)
    with pytest.raises(RuleError, match=r":9: .*lookback: must be longer than `for`"):
        load_rule_files([write(tmp_path, ABSENCE.replace("for: 1m", "for: 1m\n        lookback: 30s"))])


SLO = """version: prometheus/v1
service: inference
labels: {team: ml}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: {metric: llm.requests.finished, matchers: {outcome: error}}
        total_query: {metric: llm.requests.finished}
    alerting:
      name: Burn
      labels: {category: availability}
      page_alert: {labels: {tier: one}}
      ticket_alert: {disable: true}
"""


def test_an_slo_document_compiles_to_burn_rate_rules_and_a_spec(tmp_path: Path) -> None:
    path = write(tmp_path, SLO)
    [page] = load_rule_files([path])
    assert isinstance(page, BurnRateRule)
    assert page.labels == {"team": "ml", "category": "availability", "tier": "one", "service": "inference",
                           "slo": "availability", "severity": "page"}  # fmt: skip
    assert (page.group, page.interval_s, page.type) == ("slo/inference/page", 2.0, "slo")
    assert page.slo.windows == ((3600, 300, 14.4), (21600, 1800, 6.0))
    [spec] = load_slos([path])
    assert (spec.service, spec.name, spec.objective, spec.period_s) == ("inference", "availability", 99.9, 30 * 86400)


def test_an_slos_ticket_alert_has_a_name_of_its_own(tmp_path: Path) -> None:
    """Under the page's name the ticket joins the page's notification group (grouped by alertname) and
    sends the page again when it fires; so it is `<name>Ticket`, or what its section names it."""
    both = SLO.replace("ticket_alert: {disable: true}", "ticket_alert: {}")
    page, ticket = load_rule_files([write(tmp_path, both)])
    assert (page.name, page.labels["severity"]) == ("Burn", "page")
    assert (ticket.name, ticket.labels["severity"], ticket.group) == ("BurnTicket", "ticket", "slo/inference/ticket")
    named = SLO.replace("ticket_alert: {disable: true}", "ticket_alert: {name: SlowBurn}")
    assert [r.name for r in load_rule_files([write(tmp_path, named)])] == ["Burn", "SlowBurn"]


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("objective: 99.9", "objective: 100.5", 6, "a percent between 0 and 100"),
        ("{metric: llm.requests.finished}", "{metric: gpu.temperature}", 10, "counts with counters"),
        ("version: prometheus/v1", "version: v2", 1, "Sloth's SLO spec"),
        (
            "page_alert: {labels: {tier: one}}",
            "page_alert: {labels: {severity: ticket}}",
            14,
            "severity of a page_alert",
        ),
    ],
)
def test_slo_errors_name_the_line(tmp_path: Path, old: str, new: str, line: int, says: str) -> None:
    path = write(tmp_path, SLO.replace(old, new))
    with pytest.raises(RuleError) as err:
        load_rule_files([path])
    assert str(err.value).startswith(f"{path}:{line}: ") and says in str(err.value), str(err.value)


def test_check_warns_where_a_window_cannot_hold_two_samples(tmp_path: Path) -> None:
    """The Prometheus `[1m]` trap: 8 s of a 5 s scrape holds one sample, so rate/increase never fire."""
    text = THRESHOLD.replace("window: 30s", "window: 8s")
    path = write(tmp_path, text)
    assert check_file(path) == []  # under vigil up, engines are scraped every second
    warning, ratio_warning = check_file(path, AGENT_INTERVALS_S)  # ratio_to reads the same window
    assert ratio_warning.startswith(f"{path}:11: ")
    assert warning.startswith(f"{path}:8: ") and "8s cannot hold two samples of llm.requests.finished" in warning
    assert "at least 10s" in warning
    slow = ABSENCE.replace("metric: gpu.up", "metric: gpu.ecc.corrected").replace("for: 1m", "for: 15s")
    assert "sampled every 10s" in check_file(write(tmp_path, slow))[0]


# -- the default pack


def test_every_pack_file_passes_check_without_warnings() -> None:
    files = default_pack()
    assert {f.name for f in files} >= {"gpu-hardware.yaml", "fleet.yaml", "workload-slos.yaml"}
    for path in files:
        assert check_file(path) == [], path


def test_the_pack_loads_with_page_and_ticket_rules_and_the_workload_slos() -> None:
    rules = load_rule_files(default_pack())
    names = {r.name for r in rules}
    assert {"GpuXidNeedsReset", "GpuXid", "GpuLost", "NodeAbsent", "EngineStalled", "InferenceOutage"} <= names
    assert {r.labels["severity"] for r in rules} == {"page", "ticket"}
    assert all(r.interval_s == 2.0 for r in rules if r.labels["severity"] == "page")
    slos = {s.name: s for s in load_slos(default_pack())}
    assert slos["availability"].objective == 99.9
    assert {"ttft-p99", "itl-p99"} <= set(slos)


def _xid_codes(rule_name: str) -> tuple[str, set[int]]:
    """The codes of every rule of that name (a page rule comes for real and for simulated GPUs): all alike."""
    found = set()
    for rule in [r for r in load_rule_files(default_pack()) if r.name == rule_name]:
        [matcher] = [m for q in rule.queries() for m in q.matchers if m.key == "xid"]
        found.add((matcher.op, frozenset(int(c) for c in matcher.value.split("|"))))
    [(op, codes)] = found
    return op, set(codes)


def test_xid_rules_page_exactly_the_codes_whose_action_is_a_reset_or_drain() -> None:
    needs_action = {code for code, (_, action) in XIDS.items() if "reset" in action or "drain" in action}
    assert _xid_codes("GpuXidNeedsReset") == ("=~", needs_action)
    assert _xid_codes("GpuXid") == ("!~", needs_action)  # every other code, known or not, opens a ticket


def test_gpu_page_rules_send_real_gpus_to_drains_and_power_caps_and_simulated_ones_to_the_simulators_repair() -> None:
    """Each page rule whose fix differs comes twice, split on vigil.simulated, under one name."""
    rules = load_rule_files(default_pack())
    for name, real in (
        ("GpuXidNeedsReset", "gpu-xid-reset"),
        ("GpuEccUncorrectable", "gpu-ecc-uncorrectable"),
        ("GpuThermalSlowdown", "gpu-throttling"),
    ):
        by_runbook = {}
        for rule in (r for r in rules if r.name == name):
            [sim] = [m for q in rule.queries() for m in q.matchers if m.key == "vigil.simulated"]
            by_runbook[rule.runbook] = (sim.op, sim.value)
        assert by_runbook == {real: ("!=", "true"), "gpu-simulated-repair": ("=", "true")}, name


def test_fast_engine_rules_page_within_seconds() -> None:
    """Stalls and preemption storms page in seconds; KV saturation and thermal throttling stay tickets."""
    rules = {r.name: r for r in load_rule_files(default_pack())}
    for name in ("EngineStalled", "EngineStalledQueued", "PreemptionStorm"):
        rule = rules[name]
        assert rule.labels["severity"] == "page" and rule.for_s == 0, name
        assert max(q.window_s for q in rule.queries()) <= 15, name
    assert rules["PreemptionStorm"].runbook == "kv-cache-saturated"
    assert rules["KvCacheSaturated"].labels["severity"] == "ticket"
    assert rules["GpuThermalThrottling"].labels["severity"] == "ticket"


def test_fast_outage_rule_pages_at_once_on_half_the_requests_failing_over_10s() -> None:
    [rule] = [r for r in load_rule_files(default_pack()) if r.name == "InferenceOutage"]
    assert rule.for_s == 0 and rule.labels["severity"] == "page" and rule.runbook
    assert {q.window_s for q in rule.queries()} == {10}


def test_engine_down_pages_on_failed_scrapes_of_an_engine_that_served_and_starts_its_restart() -> None:
    rules = {r.name: r for r in load_rule_files(default_pack())}
    down = rules["EngineDown"]
    assert down.labels["severity"] == "page" and down.for_s == 0 and down.runbook == "engine-absent"
    assert down.annotations["runbook_auto"] == "true"
    served, failing = down.conditions  # the hour's read first (see the rule's comment)
    assert (failing.expr.query.metric, failing.op, failing.threshold) == ("vigil.agent.scrape.up", "==", 0)
    assert failing.expr.query.window_s <= 5 and failing.expr.query.function == "max"
    assert (served.expr.query.function, served.op, served.threshold) == ("max", "==", 1)
    assert served.expr.query.window_s == 3600 and down.queries()[0] == served.expr.query
    slow = rules["InferenceSlowTokens"]
    assert slow.labels["severity"] == "page" and max(q.window_s for q in slow.queries()) <= 10


def test_latency_bucket_bounds_match_the_workload() -> None:
    from workload import metrics

    assert BUCKET_BOUNDS["llm.time_to_first_token"] == metrics.TTFT_BUCKETS
    assert BUCKET_BOUNDS["llm.inter_token_latency"] == metrics.ITL_BUCKETS
    assert BUCKET_BOUNDS["llm.e2e_latency"] == metrics.REQUEST_BUCKETS


def test_identical_questions_compile_to_equal_queries_so_the_evaluator_shares_them() -> None:
    rules = load_rule_files(default_pack())
    queries = [q for r in rules for q in r.queries()]
    assert len(set(queries)) < len(queries)  # the SLOs' page and ticket rules share the 6h window
