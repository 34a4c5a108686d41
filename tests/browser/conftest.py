"""A real Chromium (Debian's, through Playwright) against `vigil up` on loopback.

Skipped, with the reason printed, where either is missing; `.ci/run` installs chromium and the test
extras install playwright. Screenshots go to `.test-output/browser/` at the repository root (or
`$VIGIL_TEST_OUTPUT/browser`), one per page visited, so a person can look at what the tests saw.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local import ROOT

CHROMIUM = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "browser" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    base = Path(os.environ.get("VIGIL_TEST_OUTPUT", ROOT / ".test-output"))
    out = base / "browser"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Per module, not per session: Playwright's sync API keeps an event loop running on this thread
    until it stops, and later tests that call asyncio.run() would find it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set VIGIL_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


class Console:
    """Every console error, uncaught exception and dialog a page raised: a clean page has none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text} ({m.location})"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("dialog", self._dialog)  # an alert() from a label value would mean it ran as script

    def _dialog(self, dialog: Any) -> None:
        self.errors.append(f"dialog: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[tuple[Any, Console]]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    console = Console(page)
    yield page, console
    context.close()
