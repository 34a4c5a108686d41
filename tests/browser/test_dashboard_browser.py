"""A user's walk through the dashboard in Chromium: log in, the fleet and its chart, a GPU, silence an
alert, log out. Every page is screenshotted; no page may log a console error or run a label as script."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Console
from tests.local import LocalVigil, wait_until

PASSWORD = "browser-test-password"
TOKEN = "browser-test-token"
HOSTILE_TEAM = "<img src=x onerror=alert(1)>'\"&"

# A rule that fires for every simulated GPU within seconds, so the walk has an alert to silence.
RULES = """
groups:
  - name: browser
    interval: 1s
    rules:
      - alert: BrowserWarmGpu
        expr: {metric: gpu.temperature, function: max, window: 30s, by: [host.name, gpu.uuid]}
        op: ">"
        threshold: 0
        labels: {severity: ticket}
        annotations:
          summary: "GPU {{ $labels.gpu.uuid }} is warm"
        runbook: gpu-throttling
"""


@pytest.fixture(scope="module")
def vigil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVigil]:
    tmp = tmp_path_factory.mktemp("browser")
    rules = tmp / "rules"
    rules.mkdir()
    (rules / "browser.yaml").write_text(RULES)
    env = {
        "VIGIL_ADMIN_PASSWORD": PASSWORD,
        "VIGIL_API_TOKENS": TOKEN,
        "VIGIL_DEFAULT_RULES": "0",
        "VIGIL_RULES_DIR": str(rules),
    }
    server = LocalVigil(tmp / "data", env=env, flags=("--no-workload", "--label", f"team={HOSTILE_TEAM}"))
    server.start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def ready() -> bool:  # GPUs listed, and the alert firing
            gpus = httpx.get(f"{server.url}/api/v1/gpus", headers=auth, timeout=5).json()["gpus"]
            alerts = httpx.get(f"{server.url}/api/v1/alerts?state=firing", headers=auth, timeout=5).json()["alerts"]
            return bool(gpus) and bool(alerts)

        assert wait_until(ready, timeout=60, every=0.5), server.log.read_text()[-3000:]
        yield server
    finally:
        server.stop(signal.SIGTERM)


def log_in(page: Any, vigil: LocalVigil) -> None:
    page.goto(f"{vigil.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{vigil.url}/")


def shot(page: Any, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def rendered_chart(page: Any) -> None:
    """A uPlot chart with data: its canvas is drawn, and its legend shows at least one series."""
    page.wait_for_selector(".chart canvas", timeout=15_000)
    page.wait_for_function(
        """() => {
            const charts = [...document.querySelectorAll('.chart[data-src]')];
            const settled = charts.every(c => c.dataset.points !== undefined || c.querySelector('.chart-note'));
            return settled && charts.some(c => c.querySelector('canvas') && +c.dataset.points > 0);
        }""",
        timeout=15_000,
    )


def test_a_user_logs_in_sees_the_fleet_opens_a_gpu_silences_an_alert_and_logs_out(
    vigil: LocalVigil, browser_page: tuple[Any, Console], output_dir: Path
) -> None:
    page, console = browser_page

    # 1. log in: the fleet redirects to the login form first
    page.goto(f"{vigil.url}/")
    assert page.url.startswith(f"{vigil.url}/login"), page.url
    shot(page, output_dir, "1-login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{vigil.url}/")

    # 2. the fleet: its GPUs, the simulated banner, the hostile team shown as text, a chart with data
    page.wait_for_selector("table#gpus tr.gpu")
    assert page.locator("table#gpus tr.gpu").count() >= 1
    assert page.locator(".banner.simulated").is_visible()
    assert HOSTILE_TEAM in page.inner_text("body")
    rendered_chart(page)
    shot(page, output_dir, "2-fleet")

    # 3. a GPU: its charts
    page.click("a.gpu-link >> nth=0")
    page.wait_for_url("**/gpus/**")
    rendered_chart(page)
    shot(page, output_dir, "3-gpu")

    # 4. silence the alert from its row
    page.goto(f"{vigil.url}/alerts")
    page.wait_for_selector("table#alerts tr.alert")
    shot(page, output_dir, "4-alerts")
    form = page.locator("form.silence").first
    form.locator("[name=duration]").select_option("1h")
    form.locator("[name=comment]").fill("browser test: known warm GPU")
    form.locator("button.silence").click()
    page.wait_for_url("**/alerts?**")
    page.wait_for_selector("table#silences")
    assert "browser test: known warm GPU" in page.inner_text("table#silences")
    shot(page, output_dir, "5-silenced")
    silences = httpx.get(f"{vigil.url}/api/v1/silences", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [s["createdBy"] for s in silences if s["comment"] == "browser test: known warm GPU"] == ["admin"]

    # 5. log out: back to the form, and the fleet asks for a login again
    page.click("form.logout button")
    page.wait_for_url("**/login**")
    page.goto(f"{vigil.url}/")
    assert page.url.startswith(f"{vigil.url}/login")
    shot(page, output_dir, "6-logged-out")

    assert console.errors == []


def test_every_page_renders_clean_for_a_viewer_of_hostile_labels(
    vigil: LocalVigil, browser_page: tuple[Any, Console], output_dir: Path
) -> None:
    """Each page in the navigation loads with no console error, and the hostile team never runs."""
    page, console = browser_page
    log_in(page, vigil)
    for path in ("/inference", "/incidents", "/slos", "/runbooks", "/history", "/admin", "/docs"):
        page.goto(f"{vigil.url}{path}")
        page.wait_for_load_state("networkidle")
        shot(page, output_dir, "page" + path.replace("/", "-"))
    assert console.errors == []


def test_a_history_chart_of_one_bucket_spans_that_bucket_not_years(
    vigil: LocalVigil, browser_page: tuple[Any, Console], output_dir: Path
) -> None:
    """A fresh start at a day's step has one bucket. uPlot widens a lone time to 1,000 days before its
    range callback sees it; the charts show ten steps before the point and one after instead."""
    page, console = browser_page
    log_in(page, vigil)
    day = 86_400
    page.goto(f"{vigil.url}/history?range=7d&step={day}")
    rendered_chart(page)
    shot(page, output_dir, "history-one-bucket")
    charts = page.eval_on_selector_all(
        ".chart[data-src]", "els => els.map(e => [e._plot.scales.x.min, e._plot.scales.x.max, [...e._plot.data[0]]])"
    )
    assert len(charts) == 2
    for lo, hi, times in charts:
        assert times, "the chart has its bucket"
        assert lo <= min(times) and max(times) <= hi  # every point shown
        assert hi - lo <= 11 * day, (hi - lo) / day  # one bucket: 11 days of axis, two (past midnight): one
    assert console.errors == []
