"""Options a user sets on a lab: parallel slots, hydra parameters, reset, nested labs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightlab import Lab

from conftest import cli, git, rows, status

pytestmark = pytest.mark.slow


def trials(lab: Path) -> list:
    return rows(lab, "SELECT * FROM trials ORDER BY id")


def test_two_slots_run_trials_in_parallel_in_separate_worktrees(make_lab, monkeypatch):
    monkeypatch.setenv("TEST_TRIAL_SLEEP", "0.6")
    lab = make_lab(max_trials=7)
    final = Lab(lab).run(slots=2, report=lambda line: None)
    assert final["trials"]["succeeded"] == 7
    ran = trials(lab)
    overlaps = sum(
        1
        for a, b in zip(ran, ran[1:], strict=False)
        if b["started_at"] < a["ended_at"]  # b started while a still ran
    )
    assert overlaps >= 3
    assert {r["slot"] for r in ran} == {0, 1}
    live = [(r["worktree"], r["started_at"], r["ended_at"]) for r in ran]
    for tree, start, end in live:  # two trials running at once never share a worktree
        assert not any(t == tree and s < end and start < e for t, s, e in live if s != start)


def test_hydra_parameters_arrive_as_overrides(make_lab):
    lab = make_lab(max_trials=3, trial_extra='params = "hydra"')
    (lab / "train.py").write_text(
        "import sys\n"
        "args = dict(a.split('=', 1) for a in sys.argv[1:])\n"
        "print('score=' + str(1.0 + float(args['boost'])))\n"
    )
    Lab(lab).run(report=lambda line: None)
    ran = trials(lab)
    assert [r["status"] for r in ran] == ["succeeded"] * 3
    assert ran[0]["objective"] == pytest.approx(1.0)


def test_reset_starts_afresh_and_keeps_the_code(make_lab):
    lab = make_lab(max_trials=4, tracking=True)
    Lab(lab).run(report=lambda line: None)
    refs = git(lab, "for-each-ref", "--format=%(refname)")
    assert "refs/nightlab/tiny/base" in refs and "refs/heads/nightlab/tiny/best" in refs
    code = (lab / "train.py").read_text()
    removed = cli("reset", str(lab), "--yes", "--keep-tracking").stdout
    assert "MLflow store kept" in removed
    assert (lab / ".nightlab" / "mlflow.db").is_file()
    assert not (lab / ".nightlab" / "state.db").exists()
    refs = git(lab, "for-each-ref", "--format=%(refname)")
    assert "nightlab" not in refs
    assert (lab / "train.py").read_text() == code
    assert status(lab)["state"] == "new"
    Lab(lab).run(max_trials=3, report=lambda line: None)
    assert status(lab)["trials"]["total"] == 3
    kept = cli("reset", str(lab), "--yes").stdout  # keeping is the default
    assert "MLflow store kept" in kept and (lab / ".nightlab" / "mlflow.db").is_file()
    dropped = cli("reset", str(lab), "--yes", "--drop-tracking").stdout
    assert "kept" not in dropped and not (lab / ".nightlab" / "mlflow.db").exists()


def test_a_lab_inside_an_ignored_folder_gets_its_own_repo(tmp_path, make_lab):
    outer = tmp_path / "project"
    outer.mkdir()
    git(outer, "init", "-q")
    (outer / ".gitignore").write_text("scratch/\n")
    lab = make_lab(max_trials=3)
    target = outer / "scratch" / "lab"
    target.parent.mkdir()
    for name in ("train.py", "IDEA.md", "nightlab.toml"):
        target.joinpath(name).parent.mkdir(parents=True, exist_ok=True)
        target.joinpath(name).write_text((lab / name).read_text())
    Lab(target).run(report=lambda line: None)
    assert (target / ".git").is_dir()
    assert status(target)["trials"]["succeeded"] == 3
    outer_status = git(outer, "status", "--porcelain")
    assert outer_status.strip() == "?? .gitignore"


def test_progress_callback_counts_trials(make_lab):
    lab = make_lab(max_trials=4)
    seen: list[tuple[int, int | None]] = []
    Lab(lab).run(report=lambda line: None, progress=lambda n, total: seen.append((n, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert json.loads(json.dumps(status(lab)))["trials"]["total"] == 4


def test_a_rerun_says_why_it_does_nothing_and_that_new_code_needs_a_new_night(make_lab):
    lab = make_lab(max_trials=3)
    Lab(lab).run(report=lambda line: None)
    (lab / "train.py").write_text((lab / "train.py").read_text() + "\n# tweaked\n")
    lines: list[str] = []
    final = Lab(lab).run(report=lines.append)
    assert final["trials"]["total"] == 3
    text = "\n".join(lines)
    assert "nothing to do: max_trials=3 reached" in text and "--max-trials 13" in text
    assert "your changes since then are not used" in text and "nightlab reset" in text


def test_the_night_stops_at_the_objective_target(make_lab):
    decisions = [
        {"action": "run", "rationale": "a planted improvement of +0.5", "params": {"boost": 0.5}},
        {
            "action": "run",
            "rationale": "never reached: the target stops the night first",
            "params": {"boost": 1.0},
        },
    ]
    lab = make_lab(decisions=decisions, max_trials=20)
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace('direction = "maximize"', 'direction = "maximize"\ntarget = 1.4')
    )
    final = Lab(lab).run(report=lambda line: None)
    assert final["end_reason"] == "target 1.4 reached"
    assert final["trials"]["total"] == 4 and final["best"]["objective"] == pytest.approx(1.49)


def test_the_night_stops_at_its_time_budget(make_lab, monkeypatch):
    monkeypatch.setenv("TEST_TRIAL_SLEEP", "0.4")
    lab = make_lab(max_trials=500)
    final = Lab(lab).run(hours=2 / 3600, report=lambda line: None)
    assert final["end_reason"] == "time budget reached"
    assert 3 <= final["trials"]["total"] < 12


HYDRA_APP = """
import hydra

@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    print(f"width={cfg.model.width} optim={cfg.optim.name}", flush=True)
    bonus = 1.0 if cfg.optim.name == "sgd" else 0.0
    print(f"score={cfg.model.width / 64 + bonus}", flush=True)

main()
"""

# boost, sleep and mode are the test lab's own knobs: every knob is an override
HYDRA_CONF = """
model:
  width: 16
optim:
  name: adam
  lr: 0.01
boost: 0.0
sleep: 0.0
mode: ok
"""


def test_an_unchanged_hydra_project_gets_its_knobs_by_dotted_path(make_lab):
    """A user's own @hydra.main app, untouched: knobs named model.width, optim.name."""
    knobs = (
        'params = "hydra"\n\n[search."model.width"]\nchoices = [16, 32, 64]\ndefault = 16\n\n'
        '[search."optim.name"]\nchoices = ["adam", "sgd"]\ndefault = "adam"\n'
    )
    decisions = [
        {"action": "run", "rationale": "a wider model and plain SGD",
         "params": {"model.width": 64, "optim.name": "sgd"}},
    ]  # fmt: skip
    lab = make_lab(decisions=decisions, trial_extra=knobs, max_trials=5)
    (lab / "train.py").write_text(HYDRA_APP)
    (lab / "conf").mkdir()
    (lab / "conf" / "config.yaml").write_text(HYDRA_CONF)
    Lab(lab).run(report=lambda line: None)
    ran = trials(lab)
    assert [r["status"] for r in ran] == ["succeeded"] * 4
    assert ran[0]["objective"] == pytest.approx(0.25)  # the yaml's own defaults
    last = ran[-1]
    assert last["objective"] == pytest.approx(2.0) and last["verdict"] == "kept"
    out = (lab / ".nightlab" / "trials" / str(last["id"]) / "stdout.log").read_text()
    assert "width=64 optim=sgd" in out
    assert (lab / "train.py").read_text() == HYDRA_APP  # nothing in the project changed
    assert not (lab / "outputs").exists()  # hydra's run folders stay out of the lab
