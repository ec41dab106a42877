"""A report of a lab with many knobs fits the page: in a real browser (Playwright driving
Debian's chromium) at a 1280 px viewport, nothing widens the page past the window; a wide
table scrolls inside its own box."""

from __future__ import annotations

import os
import shutil

import pytest
from report_nights import baseline, confirmed, hand_store, trial

from nightlab.report import write_report

from conftest import make_config

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip
KNOBS = [f"a_rather_long_knob_name_number_{i:02d}" for i in range(25)]


def needed(what: str, why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing under CI=true: {why}")
    pytest.skip(f"{what} is missing: {why}")


def test_a_report_with_25_knobs_fits_a_1280px_window(tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        needed("playwright", "pip install -e '.[dev]' installs it")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        needed("chromium", "`make test` installs Debian's chromium (apt-get install chromium)")
    search = {k: {"low": 1e-6, "high": 1e6, "log": True, "default": 1.0} for k in KNOBS}
    cfg = make_config(
        "a_long_validation_metric_name",
        name="wide",
        search=search,
        command="python " + "very/long/path/" * 12 + "train.py --flag=" + "x" * 80,
    )
    tuned = {k: 0.000123456789 * (i + 1) for i, k in enumerate(KNOBS)}
    trials = [
        *baseline([1.0, 1.01, 0.99]),
        *confirmed(4, 1.3, [1.31, 1.29], 1.0, commit="a", params=tuned,
                   dimension="optimization", hypothesis="H" * 300),
        trial(7, 1.2, commit="b", params={**tuned, KNOBS[0]: 5.0}, reason="r" * 300,
              dimension="model_arch", hypothesis="a_hypothesis_without_spaces_" * 12),
    ]  # fmt: skip
    page_file = write_report(hand_store(tmp_path / "lab", trials), cfg) / "report.html"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_file.as_uri())
            widths = page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth,"
                " Math.max(...[...document.querySelectorAll('table')].map(t => t.scrollWidth))]"
            )
            page.screenshot(path=str(tmp_path / "wide.png"), full_page=True)
        finally:
            browser.close()
    page_width, window, widest_table = widths
    assert page_width <= window == 1280
    assert widest_table > 0  # the tables are there (a scroll box holds any that is wider)
