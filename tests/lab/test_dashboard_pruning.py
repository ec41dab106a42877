"""The dashboard on a night that pruned trials (a real night, tests/pruned_night.py): the
overview's compute figure (pruned count, trial-seconds used against the budget, the saved
estimate) in its JSON and HTML, pruned shown apart from failed; a pruned trial's page with
its record and its curve against the baseline envelope; hostile metric names and values
(`<script>`, NaN, 1e308) neither break nor inject into it; and the chart drawn in chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import statistics

import pytest
from dashboard_kit import dashboard, http

from pruned_night import HOSTILE, pruned_night

from conftest import rows

pytestmark = pytest.mark.slow

BAD_NAME = "<script>alert('m')</script>"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    shared = pruned_night(tmp_path_factory.mktemp("pruned"))
    lab = tmp_path_factory.mktemp("hostile") / "lab"  # a copy: the night is shared
    shutil.copytree(shared, lab, symlinks=True)
    pruned = [r[0] for r in rows(lab, "SELECT id FROM trials WHERE status = 'pruned'")]
    # what a trial printed is hostile: a metric name that is markup, NaN, ±inf and 1e308
    hostile = [{"step": 3, "metrics": {BAD_NAME: 1.0}, "source": "print"},
               {"step": 4, "metrics": {"loss": float("nan")}, "source": "print"},
               {"step": 5, "metrics": {"loss": float("inf")}, "source": "print"},
               {"step": 6, "metrics": {"loss": 1e308}, "source": "print"}]  # fmt: skip
    with open(lab / ".nightlab" / "trials" / str(pruned[-1]) / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(h) + "\n" for h in hostile)
    return lab


def trials(lab) -> list[dict]:
    return [dict(r) for r in rows(lab, "SELECT * FROM trials ORDER BY id")]


def test_the_overview_shows_the_compute_pruning_saved(lab, tmp_path):
    all_trials = trials(lab)
    pruned = [t for t in all_trials if t["status"] == "pruned"]
    full = statistics.median(
        t["wall_s"] for t in all_trials if t["kind"] == "trial" and t["status"] == "succeeded"
    )
    used = sum(t["wall_s"] for t in pruned)
    with dashboard(lab, tmp=tmp_path) as served:
        code, body, _ = http("GET", served.url + "/l/lab/api/overview")
        assert code == 200
        got = json.loads(body)
        figure = got["pruning"]
        assert figure["n"] == len(pruned) == 2
        assert figure["used_s"] == pytest.approx(used)
        assert figure["budget_s"] == pytest.approx(len(pruned) * 60)  # build_lab's budget
        assert figure["full_s"] == pytest.approx(full)
        assert figure["saved_s"] == pytest.approx(len(pruned) * full - used)
        assert got["status"]["trials"]["pruned"] == 2 and got["status"]["trials"]["failed"] == 0
        code, page, _ = http("GET", served.url + "/l/lab/")
        assert code == 200
        assert '<span class="status-pruned">2 pruned</span>' in page
        text = html.unescape(re.sub(r"<[^>]+>", "", page))
        assert "2 trial(s) stopped early, never kept" in text and "saved" in text
        assert page.count('class="status-pruned">pruned</td>') == 2  # the latest trials
        assert "<script>alert" not in page  # the hostile hypothesis, escaped


def test_a_pruned_trial_page_shows_its_record_and_curve(lab, tmp_path):
    t = [t for t in trials(lab) if t["status"] == "pruned"][-1]
    rec = json.loads(t["pruning"])
    with dashboard(lab, tmp=tmp_path) as served:
        code, page, headers = http("GET", served.url + f"/l/lab/trial/{t['id']}")
    assert code == 200 and "script-src 'self'" in headers["content-security-policy"]
    record = page.split('id="pruning-record"', 1)[1].split("</dl>", 1)[0]
    text = html.unescape(re.sub(r"<[^>]+>", " ", record))
    assert f"step {rec['step']} " in " ".join(text.split()) + " "
    assert f"{rec['reference']:.6g}" in text and f"{rec['value']:.6g}" in text
    assert "median" in text
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    chart = json.loads(html.unescape(
        page.split('<script type="application/json" id="pruned-data">', 1)[1].split("</script>")[0]
    ))  # fmt: skip
    assert chart["metric"] == "loss" and chart["x"] == sorted(chart["x"])
    mine = [(x, y) for x, y in zip(chart["x"], chart["y"], strict=True) if y is not None]
    assert rec["step"] in [x for x, _ in mine]
    assert 1e308 in [y for _, y in mine]  # finite: kept; NaN and inf: dropped (valid JSON)
    assert all(lo <= hi for lo, hi in zip(chart["lo"], chart["hi"], strict=True)
               if lo is not None)  # fmt: skip
    assert sum(v is not None for v in chart["mean"]) >= 20  # the baseline ran 20 steps
    for block in re.findall(r'class="curve-data"[^>]*>(.*?)</script>', page, re.S):
        json.loads(block)  # every curve's JSON parses (no NaN)


def test_the_pruned_chart_draws_in_chromium(lab, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is missing")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is missing")
    t = [t for t in trials(lab) if t["status"] == "pruned"][-1]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    with dashboard(lab, tmp=tmp_path) as served, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=flags)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
        page.goto(served.url + f"/l/lab/trial/{t['id']}")
        page.wait_for_selector("#pruned-curve canvas", timeout=10_000)
        assert int(page.get_attribute("#pruned-curve", "data-points")) >= 3
        assert page.locator(".curve canvas").count() >= 1
        page.goto(served.url + "/l/lab/")
        page.wait_for_selector("#chart canvas", timeout=10_000)
        assert "2 trial(s) stopped early" in page.inner_text("#pruning")
        browser.close()
    assert errors == [], errors
    assert HOSTILE  # the hostile hypothesis was on the night's first pruned trial
