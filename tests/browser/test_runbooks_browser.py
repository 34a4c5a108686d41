"""An operator's runbook run in Chromium under `vigil up`: open the runbook, run it, watch its step log
wait at the approval, approve it, and see it finish with the approver's name; no console error, and the
hostile parameter shown as text, never run. Screenshots of each stage go to the output folder."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Console
from tests.local import LocalVigil

PASSWORD = "runbook-browser-password"
TOKEN = "runbook-browser-token"
HOSTILE = "<img src=x onerror=alert(1)>"

# Notes and an approval act on nothing, so the run needs no live workload.
BOOK = """
name: browser-approve
description: A note, an approval a person gives in the browser, a note.
target: workload
params:
  reason: {type: str, default: drill, description: why this runs}
steps:
  - note: "starting because ${reason}"
  - name: a person approves
    approve: "go on with ${reason}?"
    timeout: 2m
  - note: "approved; done"
"""


@pytest.fixture(scope="module")
def vigil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVigil]:
    tmp = tmp_path_factory.mktemp("runbooks-browser")
    books = tmp / "runbooks"
    books.mkdir()
    (books / "browser-approve.yaml").write_text(BOOK)
    env = {
        "VIGIL_ADMIN_PASSWORD": PASSWORD,
        "VIGIL_API_TOKENS": TOKEN,
        "VIGIL_DEFAULT_RULES": "0",
        "VIGIL_RUNBOOKS_DIR": str(books),
    }
    server = LocalVigil(tmp / "data", env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGTERM)


def shot(page: Any, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_an_operator_runs_a_runbook_and_approves_its_step_in_the_browser(
    vigil: LocalVigil, browser_page: tuple[Any, Console], output_dir: Path
) -> None:
    page, console = browser_page
    page.goto(f"{vigil.url}/login?next=/runbooks")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{vigil.url}/runbooks")

    # the list: our runbook beside the shipped ones
    page.wait_for_selector("table#runbooks tr.runbook[data-name='browser-approve']")
    shot(page, output_dir, "runbooks-1-list")
    page.click("table#runbooks a.runbook-link:text('browser-approve')")
    page.wait_for_url("**/runbooks/browser-approve")

    # the runbook: its steps and the form
    assert page.locator("table#steps tr.step").count() == 3
    form = page.locator("form.run")
    form.locator("[name=target]").fill("browser-target")
    form.locator("[name=reason]").fill(HOSTILE)
    shot(page, output_dir, "runbooks-2-runbook")
    form.locator("button.run").click()
    page.wait_for_url("**/runs/*?done=started")

    # the run waits at the approval step: the live log shows it without a reload
    page.wait_for_selector("#run-state[data-state='waiting_approval']", timeout=15_000)
    page.wait_for_selector("form.approve button")
    assert f"starting because {HOSTILE}" in page.inner_text("table#steps")
    shot(page, output_dir, "runbooks-3-waiting")
    # while it waits, htmx swaps in a fresh copy of the live part every 2 s: a mark on the old copy goes
    page.eval_on_selector("#run", "el => { el.dataset.probe = 'old'; }")
    page.wait_for_function("() => !document.querySelector('#run').dataset.probe", timeout=10_000)
    page.click("form.approve button")
    page.wait_for_url("**/runs/*?done=approved")

    # it finishes by itself (htmx polls the fragment), with the approver named
    page.wait_for_selector("#run-state[data-state='succeeded']", timeout=15_000)
    statuses = page.eval_on_selector_all("table#steps tr.step", "rows => rows.map(r => r.dataset.status)")
    assert statuses == ["succeeded", "approved", "succeeded"]
    assert "admin" in page.inner_text("#approvals")
    assert page.locator("form.approve").count() == 0
    shot(page, output_dir, "runbooks-4-approved")

    run_id = page.url.split("/runs/")[1].split("?")[0]
    run = httpx.get(f"{vigil.url}/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert (run["state"], run["started_by"], run["params"]) == ("succeeded", "admin", {"reason": HOSTILE})
    assert [(a["step"], a["by"]) for a in run["approvals"]] == [(1, "admin")]
    assert console.errors == []
