"""The morning report of a real night: replayed decisions, real subprocess trials, the real
store; the report is written once and each test reads a part of it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from report_nights import SECTIONS, is_png, real_lab, section

from nightlab.config import load_config
from nightlab.report import write_report
from nightlab.report.data import ReportError
from nightlab.report.leaderboard import schema

from conftest import rows

EDIT = {"file": "train.py", "search": "EXTRA = 0.0", "replace": "EXTRA = 1.0"}
DECISIONS = [
    {"action": "run", "rationale": "a planted improvement of +0.5", "params": {"boost": 0.5},
     "hypothesis": "boost lifts the score", "dimension": "optimization"},
    {"action": "run", "rationale": "a trial that crashes on purpose", "params": {"mode": "crash"},
     "dimension": "loss"},
    {"action": "run", "rationale": "a code change planting +1.0", "edits": [EDIT],
     "hypothesis": "EXTRA adds one", "dimension": "model_arch"},
    {"action": "run", "rationale": "parameters outside the clamps", "params": {"boost": 9}},
    {"action": "run", "rationale": "a step inside the noise band", "params": {"boost": 0.51},
     "hypothesis": "a nudge", "dimension": "optimization"},
    {"action": "run", "rationale": "the boost at its upper clamp", "params": {"boost": 5.0},
     "hypothesis": "more boost, more score", "dimension": "optimization"},
]  # fmt: skip


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lab = real_lab(tmp_path_factory.mktemp("night"), DECISIONS)
    cfg = load_config(lab)
    out = write_report(lab, cfg, top_k=3)
    board = json.loads((out / "final_leaderboard_top3.json").read_text())
    trials = {c["trial"]: c for c in board["candidates"]}
    return {"lab": lab, "cfg": cfg, "out": out, "board": board, "by_trial": trials}


def test_the_report_folder_is_named_by_the_night(night):
    ((night_id,),) = rows(night["lab"], "SELECT value FROM meta WHERE key='night_id'")
    assert night["out"] == night["lab"] / ".nightlab" / "reports" / json.loads(night_id)
    names = {p.name for p in night["out"].iterdir()}
    assert {
        "final_condensed_story.md",
        "final_paper_report.md",
        "final_leaderboard_top3.json",
        "final_leaderboard_top3.md",
        "report.html",
    } <= names


def test_paper_report_has_its_sections_and_plots(night):
    text = (night["out"] / "final_paper_report.md").read_text()
    positions = [text.index(f"\n## {s}\n") for s in SECTIONS]
    assert positions == sorted(positions)
    summary = section(text, "Summary")
    assert "**Status**: Success" in summary and "**Key Finding**" in summary
    best = night["board"]["candidates"][0]
    assert best["final_pick"] and f"{best['objective_mean']:.4g}" in summary
    approach = section(text, "Approach")
    assert "replay:decisions.jsonl" in approach and "threshold" in approach
    assert "`boost`" in approach  # the search space
    results = section(text, "Results")
    for png in ("objective_per_trial", "best_so_far", "by_dimension", "seed_spread"):
        assert f"]({png}.png)" in results  # relative links
        assert is_png(night["out"] / f"{png}.png")
    challenges = section(text, "Challenges")
    assert "exit status 1" in challenges  # the crashed trial and its reason
    assert "boost: 9 outside [0, 5]" in challenges  # the gate's rejection
    assert "inside the noise" in challenges  # boost 0.51: +0.01 < 2σ
    recs = section(text, "Recommendations")
    assert "`boost` = 5 sits at its upper clamp" in recs
    assert "Untried dimensions" in recs and "`augmentation`" in recs
    assert "rests on one seed" in recs


def test_the_plots_decode_as_images(night):
    from matplotlib.image import imread

    for png in sorted(night["out"].glob("*.png")):
        pixels = imread(png)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 5


def test_condensed_story_tells_the_night_in_40_lines(night):
    story = (night["out"] / "final_condensed_story.md").read_text()
    assert len(story.splitlines()) <= 40
    assert "Baseline: score 1 ± 0.01 over 3 seed(s)" in story
    assert "kept" in story and "discarded" in story and "exit status 1" in story
    assert "the worker stopped the night" in story  # the stop reason


def test_leaderboard_validates_groups_seeds_and_ranks(night):
    board = night["board"]
    jsonschema.Draft202012Validator(schema()).validate(board)
    cands = board["candidates"]
    assert [c["rank"] for c in cands] == [1, 2, 3]
    means = [c["objective_mean"] for c in cands]
    assert means == sorted(means, reverse=True)  # maximize: best first
    assert board["n_candidates"] == 5  # baseline, 0.5, code change, 0.51 nudge, boost 5
    base = board["baseline"]
    assert base["n_seeds"] == 3 and base["objective_sd"] == pytest.approx(0.01)
    assert board["final_pick"] == cands[0]["trial"]
    top = cands[0]
    assert top["params"]["boost"] == 5.0 and top["verdict"] == "kept"
    assert top["diff"] == {"files": ["train.py"], "files_changed": 1, "added": 1, "removed": 1}
    assert top["hypothesis"] == "more boost, more score" and top["dimension"] == "optimization"
    md = (night["out"] / "final_leaderboard_top3.md").read_text()
    assert md.count("\n| ") == 1 + 3  # header + three rows
    assert "1 file +1/-1" in md and "boost=5.0" in md


def test_the_baseline_is_one_candidate_over_its_seeds(night, tmp_path):
    out = write_report(night["lab"], night["cfg"], night_id="all", top_k=10)
    board = json.loads((out / "final_leaderboard_top10.json").read_text())
    (base,) = [c for c in board["candidates"] if c["kind"] == "baseline"]
    assert base["trials"] == [1, 2, 3] and base["seeds"] == [0, 1, 2]
    assert base["objective_mean"] == pytest.approx(1.0)
    assert base["objective_sd"] == pytest.approx(0.01)
    assert len(board["candidates"]) == board["n_candidates"] == 5


def test_a_test_figure_appears_only_for_the_final_pick(night):
    pick = night["board"]["final_pick"]
    figure = {"trial": pick, "metric": "test_score", "value": 0.875}
    out = write_report(night["lab"], night["cfg"], night_id="with-test", top_k=3, test=figure)
    board = json.loads((out / "final_leaderboard_top3.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(board)
    tested = [c for c in board["candidates"] if c["test"] is not None]
    assert [c["trial"] for c in tested] == [pick]
    assert tested[0]["test"] == {"metric": "test_score", "value": 0.875}
    assert tested[0]["objective_mean"] is not None  # beside the validation figure
    summary = section((out / "final_paper_report.md").read_text(), "Summary")
    assert "test_score = **0.875**" in summary and "Best Performance" in summary
    assert "test_score" not in section((out / "final_paper_report.md").read_text(), "Results")
    assert "test_score" not in (night["out"] / "final_paper_report.md").read_text()


def test_a_test_figure_for_a_trial_without_objective_is_refused(night):
    with pytest.raises(ReportError, match="trial 5"):  # the crashed trial
        write_report(night["lab"], night["cfg"], night_id="bad", test={
            "trial": 5, "metric": "test_score", "value": 0.5})  # fmt: skip
    with pytest.raises(ReportError, match="not in this night"):
        write_report(night["lab"], night["cfg"], night_id="bad", test={
            "trial": 999, "metric": "test_score", "value": 0.5})  # fmt: skip


def test_html_is_self_contained_with_decodable_images(night):
    page = (night["out"] / "report.html").read_text()
    for title in [*SECTIONS, "Leaderboard", "The night, condensed"]:
        assert f"<h2>{title}" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 4
    for data in uris:
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) > 1000


def test_importing_the_report_package_stays_light():
    code = (
        "import sys, nightlab.report; "
        "print(sorted(m for m in ('matplotlib', 'jinja2', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_lab_that_never_ran_says_so(tmp_path: Path):
    from report_nights import config

    with pytest.raises(FileNotFoundError, match="has not run yet"):
        write_report(tmp_path, config())
