"""A night that pruned trials, as the morning shows it: the report's Pruning part (counts,
trial-seconds against the budget, the estimate of the compute saved, each record, the plot
of the pruned curves against the baseline envelope), pruned counted apart from failures,
and each pruned trial's MLflow run (KILLED, its pruning record as tags, its partial curve).
Every figure is recomputed here from the store, not written down."""

from __future__ import annotations

import json
import statistics

import pytest
from report_nights import is_png, section

from nightlab import Lab
from nightlab.config import load_config
from nightlab.report import write_report
from pruned_night import HOSTILE, curve_lab, pruned_night, run

from conftest import rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lab = pruned_night(tmp_path_factory.mktemp("pruned"))
    cfg = load_config(lab)
    out = write_report(lab, cfg)
    trials = [dict(r) for r in rows(lab, "SELECT * FROM trials ORDER BY id")]
    return {"lab": lab, "cfg": cfg, "out": out, "trials": trials,
            "paper": (out / "final_paper_report.md").read_text()}  # fmt: skip


def test_the_night_pruned_the_hopeless_trials(night):
    pruned = [t for t in night["trials"] if t["status"] == "pruned"]
    assert [t["kind"] for t in pruned] == ["trial", "trial"]
    assert all(t["verdict"] == "discarded" and t["objective"] is None for t in pruned)


def test_the_pruning_part_counts_the_seconds_used_against_the_budget(night):
    text = section(night["paper"], "Pruning")
    pruned = [t for t in night["trials"] if t["status"] == "pruned"]
    used = sum(t["wall_s"] for t in pruned)
    budget = len(pruned) * night["cfg"].trial.budget_seconds
    full = statistics.median(
        t["wall_s"] for t in night["trials"] if t["kind"] == "trial" and t["status"] == "succeeded"
    )
    assert f"**{len(pruned)} worker trial(s) pruned** (`median`)" in text
    assert f"They used **{used:,.1f} s** of trial time" in text
    assert f"a budget of {budget:,.1f} s ({len(pruned)} × " in text
    saved = len(pruned) * full - used
    assert f"Compute saved (an estimate): {saved:,.1f} s" in text
    assert "never kept" in text
    for t in pruned:  # each listed with its step, value, reference and rule
        rec = json.loads(t["pruning"])
        row = next(line for line in text.splitlines() if line.startswith(f"| {t['id']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == str(rec["step"]) and cells[5] == rec["rule"] == "median"
        assert float(cells[2]) == pytest.approx(rec["value"], rel=1e-3)
        assert float(cells[4]) == pytest.approx(rec["reference"], rel=1e-3)
    assert "![pruned trials' loss against the baseline envelope](pruned_curves.png)" in text
    assert is_png(night["out"] / "pruned_curves.png")


def test_pruned_is_counted_apart_from_failures(night):
    n = sum(t["status"] == "pruned" for t in night["trials"])
    results = section(night["paper"], "Results")
    assert f"{n} pruned" in results
    assert "failed, timed out or were killed" not in section(night["paper"], "Challenges")
    story = (night["out"] / "final_condensed_story.md").read_text()
    assert f"0 failed/timed out/killed, {n} pruned (stopped early, never kept)" in story
    status = Lab(night["lab"]).status()
    assert status["trials"]["pruned"] == n and status["trials"]["failed"] == 0


def test_the_html_report_escapes_and_embeds_the_plot(night):
    page = (night["out"] / "report.html").read_text()
    assert "<h2>Pruning</h2>" in page or ">Pruning<" in page
    assert HOSTILE not in page  # the hostile hypothesis never comes through raw
    assert page.count("data:image/png;base64,") >= 2


def test_the_mlflow_run_of_a_pruned_trial_has_its_record_and_partial_curve(night):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{night['lab'] / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    for t in (t for t in night["trials"] if t["status"] == "pruned"):
        assert t["mlflow_run_id"], "the mirror logged the pruned trial"
        got = client.get_run(t["mlflow_run_id"])
        assert got.info.experiment_id == exp.experiment_id
        assert got.info.status == "KILLED"
        rec = json.loads(t["pruning"])
        tags = got.data.tags
        assert tags["nightlab.status"] == "pruned"
        assert tags["nightlab.pruned_step"] == str(rec["step"])
        assert tags["nightlab.pruned_reference"] == str(rec["reference"])
        assert tags["nightlab.pruned_rule"] == "median"
        history = client.get_metric_history(got.info.run_id, "loss")
        folder = night["lab"] / ".nightlab" / "trials" / str(t["id"])
        kept = [json.loads(line) for line in (folder / "metrics.jsonl").open()]
        assert sorted(m.step for m in history) == sorted(k["step"] for k in kept)
        assert max(m.step for m in history) >= rec["step"]
        assert max(m.step for m in history) < 19, "the partial curve, not a full one"


def test_a_night_without_pruning_says_so(tmp_path):
    lab = curve_lab(tmp_path / "lab", [run({"offset": 3.0, "pause": 0.01, "steps": 5})],
                    pruning='\n[pruning]\nkind = "none"\n')  # fmt: skip
    Lab(lab).run(report=lambda line: None)
    out = write_report(lab, load_config(lab))
    text = section((out / "final_paper_report.md").read_text(), "Pruning")
    assert 'Pruning was off (`[pruning] kind = "none"`)' in text
    assert not (out / "pruned_curves.png").exists()
