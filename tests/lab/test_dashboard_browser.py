"""The dashboard in a real browser (Playwright driving Debian's chromium, never a browser of
Playwright's own) against a real night of slow trials: the overview loads and draws its
scatter, a trial that finishes appears without a reload within 2 s, a click opens its page
with the diff, and `stop` through the UI (confirm page, token) ends the night. Screenshots go
to tests/artifacts/dashboard/ (git-ignored)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from dashboard_kit import dashboard

from conftest import cli, rows, spawn_loop, status, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "dashboard"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip
TOKEN = "browser-test-token-123456"


def needed(what: str, why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing under CI=true: {why}")
    pytest.skip(f"{what} is missing: {why}")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        needed("chromium", "`make test` installs Debian's chromium (apt-get install chromium)")
    return found


def finished_ids(lab: Path) -> set[int]:
    return {r[0] for r in rows(lab, "SELECT id FROM trials WHERE status != 'running'")}


def test_the_dashboard_live_in_a_browser(make_lab, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        needed("playwright", "pip install -e '.[dev]' installs it")
    exe = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lab = make_lab(max_trials=40)
    loop = spawn_loop(lab, env={"TEST_TRIAL_SLEEP": "1.5"})
    try:
        wait_for(lambda: status(lab)["state"] == "running", what="the night")
        wait_for(lambda: finished_ids(lab), timeout=60, what="a first finished trial")
        with dashboard(lab, "--token", TOKEN, tmp=tmp_path) as served, \
                sync_playwright() as pw:  # fmt: skip
            browser = pw.chromium.launch(executable_path=exe, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served.url + "/l/lab/")
            page.wait_for_selector("#chart canvas", timeout=10_000)
            assert "running" in page.inner_text("#state")
            page.evaluate("window.__sameDocument = 1")  # gone if the page reloads
            # the next trial to finish shows up by itself, within 2 s of its record
            seen = finished_ids(lab)
            new = wait_for(lambda: finished_ids(lab) - seen, timeout=60, what="a new trial")
            recorded = time.monotonic()
            tid = max(new)
            page.wait_for_selector(f'#recent tr[data-trial="{tid}"]', timeout=5_000)
            shown_after = time.monotonic() - recorded
            assert shown_after < 2.0, f"trial {tid} appeared {shown_after:.2f} s after its record"
            assert page.evaluate("window.__sameDocument") == 1  # no reload
            assert int(page.get_attribute("#chart", "data-points")) >= len(seen)
            page.screenshot(path=str(ARTIFACTS / "overview.png"))
            # a click opens the trial's page with its diff
            page.click(f'#recent a[href="/l/lab/trial/{tid}"]')
            page.wait_for_url(f"**/l/lab/trial/{tid}")
            assert page.is_visible("#diff") and page.inner_text("h1").startswith(f"Trial {tid}")
            page.screenshot(path=str(ARTIFACTS / "trial.png"), full_page=True)
            # stop through the UI: the confirm page asks for the token
            page.goto(served.url + "/l/lab/")
            page.wait_for_selector("#chart canvas")
            page.screenshot(path=str(ARTIFACTS / "overview-later.png"))  # docs/dashboard.png
            page.click("a.button[href$='/control/stop']")
            page.fill("input[name=token]", TOKEN)
            page.click("#confirm")
            assert "stop requested" in page.inner_text("#result")
            page.screenshot(path=str(ARTIFACTS / "stopped.png"))
            wait_for(lambda: status(lab)["state"] != "running", timeout=60, what="the stop")
            assert status(lab)["state"] == "stopped"
            page.goto(served.url + "/l/lab/")
            page.wait_for_function(
                "document.getElementById('state').textContent.includes('stopped')",
                timeout=5_000,
            )
            assert errors == [], errors
            browser.close()
        print(f"screenshots: {ARTIFACTS}")
    finally:
        loop.wait(timeout=60)


CURVE_TRIAL = """
import time
for i in range(600):
    print(f"step={i} score={i / 100}", flush=True)
    time.sleep(0.05)
print("score=6.0")
"""


def test_a_running_trials_live_curve_grows_in_the_browser(make_lab, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        needed("playwright", "pip install -e '.[dev]' installs it")
    exe = chromium()
    lab = make_lab(max_trials=1, trial=CURVE_TRIAL)
    loop = spawn_loop(lab)
    try:
        wait_for(lambda: status(lab)["trials"]["running"] == 1, 60, "a running trial")
        with dashboard(lab, "--token", TOKEN, tmp=tmp_path) as served, \
                sync_playwright() as pw:  # fmt: skip
            browser = pw.chromium.launch(executable_path=exe, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served.url + "/l/lab/")
            page.wait_for_selector("#running .live-curve canvas", timeout=10_000)
            first = int(page.get_attribute("#running .live-curve", "data-points"))
            grown = wait_for(  # polled every 2 s, kept across the SSE pushes
                lambda: int(page.get_attribute("#running .live-curve", "data-points")) > first,
                8, "the curve to grow")
            assert grown
            assert int(page.evaluate("document.body.dataset.updates")) >= 1
            [(tid,)] = rows(lab, "SELECT id FROM trials WHERE status = 'running'")
            page.goto(f"{served.url}/l/lab/trial/{tid}")
            page.wait_for_selector(".live-curve canvas", timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "live-curve.png"), full_page=True)
            assert errors == [], errors
            browser.close()
    finally:
        cli("stop", str(lab), "--now", check=False)
        loop.wait(60)
