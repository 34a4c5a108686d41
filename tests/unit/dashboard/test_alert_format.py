"""What the alert and SLO pages show, from alerting's JSON: runbook links that cannot run script,
the silence form's durations and matchers, ages at a glance."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.alert_format import age, alert_row, runbook_link, silence_body, silence_duration, slo_card
from vigil.views import ViewError


@pytest.mark.parametrize(
    ("alert", "link"),
    [
        ({"annotations": {"runbook_url": "https://wiki.example/gpu"}, "runbook": "x"}, "https://wiki.example/gpu"),
        ({"annotations": {"runbook_url": "/docs/gpu"}}, "/docs/gpu"),
        ({"annotations": {"runbook": "gpu-lost"}}, "/runbooks/gpu-lost"),
        ({"annotations": {}, "runbook": "gpu-throttling"}, "/runbooks/gpu-throttling"),
        ({"annotations": {"runbook_url": "javascript:alert(1)"}, "runbook": "safe"}, "/runbooks/safe"),
        ({"annotations": {"runbook_url": "//evil.example/x"}}, None),
        ({"annotations": {"runbook_url": "data:text/html,<script>"}}, None),
        ({"annotations": {}, "runbook": "../../etc"}, None),
        ({"annotations": {}, "runbook": None}, None),
    ],
)
def test_runbook_links_are_http_local_or_a_runbook_name(alert: dict[str, Any], link: str | None) -> None:
    assert runbook_link(alert) == link


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.9, "42s"), (423, "7m 3s"), (7500, "2h 5m"), (273600, "3d 4h"), (-5, "0s")]
)
def test_age_shows_the_two_largest_units(seconds: float, text: str) -> None:
    assert age(seconds) == text


def test_an_alert_row_counts_a_firing_alerts_age_from_when_it_fired() -> None:
    alert = {
        "labels": {"severity": "page", "alertname": "HotGpu", "host.name": "n1"},
        "annotations": {"summary": "hot"},
        "state": "firing",
        "value": 95.123456,
        "activeAt": "2025-01-01T00:00:00.000Z",
        "firedAt": "2025-01-01T00:05:00.000Z",
    }
    row = alert_row(alert, now=1735689600.0 + 600)
    assert (row["name"], row["age"], row["value"], row["summary"]) == ("HotGpu", "5m 0s", "95.12", "hot")
    assert [k for k, _ in row["labels"]] == ["alertname", "host.name", "severity"]
    assert alert_row({**alert, "state": "pending", "firedAt": None}, now=1735689600.0 + 600)["age"] == "10m 0s"


@pytest.mark.parametrize(
    ("choice", "custom", "seconds"),
    [("1h", "", 3600), ("24h", "x", 86400), ("custom", " 90m", 5400), ("custom", "1.5d", 129600)],
)
def test_durations(choice: str, custom: str, seconds: float) -> None:
    assert silence_duration(choice, custom) == seconds


@pytest.mark.parametrize(
    ("choice", "custom", "says"),
    [("forever", "", "duration:"), ("custom", "", "custom:"), ("custom", "5w", "custom:"), ("custom", "0h", "custom:")],
)
def test_bad_durations_name_the_field(choice: str, custom: str, says: str) -> None:
    with pytest.raises(ViewError, match=says):
        silence_duration(choice, custom)


def test_the_form_becomes_an_alertmanager_body_with_equality_matchers() -> None:
    body = silence_body(["alertname=HotGpu", "host.name=a=b<c>"], "4h", "", "  fan  ", "ann")
    assert body == {
        "matchers": [
            {"name": "alertname", "value": "HotGpu", "isRegex": False, "isEqual": True},
            {"name": "host.name", "value": "a=b<c>", "isRegex": False, "isEqual": True},
        ],
        "duration_s": 14400.0,
        "createdBy": "ann",
        "comment": "fan",
    }
    with pytest.raises(ViewError, match="matcher: tick at least one"):
        silence_body([], "4h", "", "c", "ann")
    with pytest.raises(ViewError, match=r"matcher\.0:"):
        silence_body(["=x"], "4h", "", "c", "ann")


def test_an_slo_card_links_its_chart_by_service_and_name() -> None:
    status = {
        "service": "inference",
        "slo": "a/b c",
        "objective": 99.9,
        "period_s": 2592000,
        "error_budget_remaining": -0.25,
        "burn_rates": {"5m": 0.0, "1h": "+Inf"},
    }
    card = slo_card(status, 86400)
    assert card["chart_src"] == "/api/v1/slos/inference%3Aa%2Fb%20c/budget?range=86400"
    assert (card["objective"], card["period_days"], card["remaining"], card["overspent"]) == (
        "99.9",
        "30",
        "-25.0 %",
        True,
    )
    assert card["burn_rates"] == [("5m", "0"), ("1h", "+Inf")]
