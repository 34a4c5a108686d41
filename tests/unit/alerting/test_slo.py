"""Burn-rate math, table-driven, with the SRE workbook's figures; the multiwindow conditions."""

from __future__ import annotations

import pytest

from alerting.slo import (
    PAGE_WINDOWS,
    TICKET_WINDOWS,
    WINDOWS,
    BurnRateRule,
    EventsSli,
    LatencySli,
    SloInfo,
    SloSpec,
    budget_status,
)
from vigil.store.window import Matcher, WindowValue

SLI = EventsSli("llm.requests.finished", (Matcher("outcome", "=", "error"),), "llm.requests.finished", ())
SPEC = SloSpec("inference", "availability", 99.9, SLI)


def results(spec: SloSpec, ratios: dict[int, float], total: float = 1000.0) -> dict:
    """Answers where each window saw `total` events at the given error ratio (bad ones, for latency)."""
    out = {}
    for window, ratio in ratios.items():
        first, total_q = spec.queries(window)
        value = total * ratio if isinstance(spec.sli, EventsSli) else total * (1 - ratio)
        out[first] = [WindowValue({}, value)]
        out[total_q] = [WindowValue({}, total)]
    return out


@pytest.mark.parametrize(
    ("objective", "ratio", "burn"),
    [(99.9, 0.0144, 14.4), (99.9, 0.006, 6.0), (99.0, 0.03, 3.0), (99.5, 0.005, 1.0), (99.9, 0.0, 0.0)],
)
def test_burn_rate_is_the_error_ratio_over_the_budget(objective: float, ratio: float, burn: float) -> None:
    spec = SloSpec("s", "x", objective, SLI)
    assert spec.burn_rate(results(spec, {3600: ratio}), 3600) == pytest.approx(burn)


def test_no_events_is_no_burn_not_a_division_by_zero() -> None:
    assert SPEC.burn_rate(results(SPEC, {3600: 0.5}, total=0.0), 3600) is None
    assert SPEC.burn_rate({}, 3600) is None


@pytest.mark.parametrize(
    ("burn", "hours", "spent"),
    [
        (14.4, 1, 0.02),  # the SRE workbook: 99.9 % burning 14.4x spends 2 % of 30 days in 1 h
        (6.0, 6, 0.05),  # 6x for 6 h: 5 %
        (3.0, 24, 0.10),  # 3x for a day: 10 %
        (1.0, 72, 0.10),  # 1x for 3 days: 10 %
    ],
)
def test_budget_spent_matches_the_sre_workbook(burn: float, hours: float, spent: float) -> None:
    """Uniform traffic over 30 days, errors at `burn` x budget during `hours`: the budget left is 1 - spent."""
    per_hour = 3600.0
    period_h = SPEC.period_s / 3600
    errors = burn * SPEC.budget * per_hour * hours
    answers = {q: [] for q in SPEC.status_queries(0)}
    err_q, total_q = SPEC.queries(SPEC.period_s)
    answers[err_q] = [WindowValue({}, errors)]
    answers[total_q] = [WindowValue({}, per_hour * period_h)]
    status = budget_status(SPEC, answers, 0)
    assert status.error_budget_remaining == pytest.approx(1 - spent)


def test_budget_status_reports_every_window_and_overspending() -> None:
    answers = results(SPEC, {w: 0.002 for w in [*WINDOWS.values(), SPEC.period_s]})
    status = budget_status(SPEC, answers, 0)
    assert set(status.burn_rates) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert all(b == pytest.approx(2.0) for b in status.burn_rates.values())
    assert status.error_budget_remaining == pytest.approx(-1.0)  # twice the budget spent
    assert (status.service, status.slo, status.objective, status.period_s) == (
        "inference",
        "availability",
        99.9,
        SPEC.period_s,
    )


def test_no_traffic_leaves_the_whole_budget() -> None:
    status = budget_status(SPEC, {}, 0)
    assert status.error_budget_remaining == 1.0
    assert set(status.burn_rates.values()) == {0.0}


def test_latency_sli_counts_requests_over_the_threshold_as_errors() -> None:
    spec = SloSpec("inference", "ttft", 99.0, LatencySli("llm.time_to_first_token", 0.5))
    good_q, total_q = spec.queries(300)
    assert good_q.function == "le_count" and good_q.le == 0.5 and total_q.function == "count"
    answers = {good_q: [WindowValue({}, 940.0)], total_q: [WindowValue({}, 1000.0)]}
    assert spec.error_ratio(answers, 300) == pytest.approx(0.06)
    assert spec.burn_rate(answers, 300) == pytest.approx(6.0)


def rule(alert: str) -> BurnRateRule:
    windows = PAGE_WINDOWS if alert == "page" else TICKET_WINDOWS
    info = SloInfo(SPEC.service, SPEC.name, SPEC.objective, SPEC.period_s, alert, windows)  # type: ignore[arg-type]
    return BurnRateRule("Burn", f"slo/{alert}", 2.0, SPEC, info, {"severity": alert})


H, M = 3600, 60
ERR = 0.001  # the budget of 99.9 %


@pytest.mark.parametrize(
    ("alert", "ratios", "fires"),
    [
        ("page", {H: 15 * ERR, 5 * M: 15 * ERR, 6 * H: 0, 30 * M: 0}, True),  # 1h and 5m above 14.4
        ("page", {H: 15 * ERR, 5 * M: 10 * ERR, 6 * H: 0, 30 * M: 0}, False),  # the short window recovered
        ("page", {H: 10 * ERR, 5 * M: 20 * ERR, 6 * H: 0, 30 * M: 0}, False),  # a blip: the long one is low
        ("page", {H: 0, 5 * M: 0, 6 * H: 7 * ERR, 30 * M: 7 * ERR}, True),  # 6h and 30m above 6
        ("page", {H: 14.3 * ERR, 5 * M: 14.3 * ERR, 6 * H: 0, 30 * M: 0}, False),  # just under
        ("ticket", {24 * H: 4 * ERR, 2 * H: 4 * ERR, 72 * H: 0, 6 * H: 0}, True),
        ("ticket", {24 * H: 0, 2 * H: 0, 72 * H: 1.5 * ERR, 6 * H: 1.5 * ERR}, True),
        ("ticket", {24 * H: 2 * ERR, 2 * H: 4 * ERR, 72 * H: 0.5 * ERR, 6 * H: 2 * ERR}, False),
    ],
)
def test_multiwindow_multi_burn_rate_conditions(alert: str, ratios: dict[int, float], fires: bool) -> None:
    r = rule(alert)
    samples = r.evaluate(results(SPEC, ratios), 0)
    assert bool(samples) is fires
    if fires:
        assert samples[0].labels == {} and samples[0].value > 1


def test_a_burn_rate_rule_asks_for_each_window_once() -> None:
    r = rule("page")
    windows = sorted({q.window_s for q in r.queries()})
    assert windows == [300, 1800, 3600, 21600]
    assert len(r.queries()) == 8
