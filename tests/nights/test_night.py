"""End to end: real subprocess trials, a real SQLite store, a real MLflow store."""

from __future__ import annotations

import json

import psutil
import pytest

from nightlab import Lab

from conftest import git, rows, status

pytestmark = pytest.mark.slow

CANONICAL = [
    "params.json",
    "stdout.log",
    "stderr.log",
    "metrics.jsonl",
    "result.json",
    "diff.patch",
    "env.json",
    "out",  # the trial's own: its params copy, what it logged, its artifacts/
]


def test_search_night_is_recorded_in_store_files_and_mlflow(make_lab):
    lab = make_lab(max_trials=7, tracking=True)
    final = Lab(lab).run(report=lambda line: None)

    assert final["state"] == "finished" and final["end_reason"] == "max_trials=7 reached"
    assert final["trials"]["total"] == 7 and final["trials"]["succeeded"] == 7
    assert final["baseline"]["n"] == 3
    assert final["baseline"]["sigma"] == pytest.approx(0.01)
    trials = rows(lab, "SELECT * FROM trials ORDER BY id")
    assert [t["kind"] for t in trials] == ["baseline"] * 3 + ["trial"] * 4
    assert [t["seed"] for t in trials[:3]] == [0, 1, 2]
    for t in trials:
        folder = lab / ".nightlab" / "trials" / str(t["id"])
        assert sorted(p.name for p in folder.iterdir() if p.name in CANONICAL) == sorted(CANONICAL)
        result = json.loads((folder / "result.json").read_text())
        assert result["objective"] == pytest.approx(t["objective"])
        # sampled every 0.5 s while it runs: a trial this short may end before the first
        assert t["peak_rss_mb"] is None or 1 < t["peak_rss_mb"] < 1000
        assert t["exit_code"] == 0 and t["wall_s"] > 0
        params = json.loads((folder / "params.json").read_text())
        assert params == json.loads(t["params"])
        assert 0.0 <= params["boost"] <= 5.0  # the clamps hold for the search worker
    # every cycle has one storyline line carrying its trace id
    cycles = rows(lab, "SELECT trace_id, summary FROM cycles")
    assert len(cycles) == 7 and all(c["trace_id"] in c["summary"] for c in cycles)
    story = (lab / ".nightlab" / "artifacts" / "storyline.md").read_text()
    assert all(c["trace_id"] in story for c in cycles)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    only_trials = "tags.`nightlab.trial_id` LIKE '%'"  # not the night's parent run
    runs = client.search_runs([exp.experiment_id], only_trials, max_results=100)
    assert len(runs) == 7
    by_trial = {r.data.tags["nightlab.trial_id"]: r for r in runs}
    for t in trials:
        run = by_trial[str(t["id"])]
        assert run.info.run_id == t["mlflow_run_id"]
        trace = rows(lab, f"SELECT trace_id FROM cycles WHERE id={t['cycle_id']}")[0][0]
        assert run.data.tags["nightlab.cycle_trace_id"] == trace
        assert run.data.metrics["score"] == pytest.approx(t["objective"])
        assert run.data.params["boost"] == str(json.loads(t["params"])["boost"])
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"params.json", "stdout.log", "result.json"} <= names


def test_ratchet_keeps_real_improvements_only_and_adopt_brings_code(make_lab):
    edit = {"file": "train.py", "search": "EXTRA = 0.0", "replace": "EXTRA = 1.0"}
    decisions = [
        {"action": "run", "rationale": "a change inside the noise band", "params": {"boost": 0.02}},
        {"action": "run", "rationale": "a planted improvement of +0.5", "params": {"boost": 0.5}},
        {
            "action": "run",
            "rationale": "a code change planting +1.0",
            "edits": [edit],
            "hypothesis": "EXTRA adds one",
            "dimension": "model_arch",
        },
        {
            "action": "run",
            "rationale": "edit of a file that is not editable",
            "edits": [{"file": "IDEA.md", "search": "Maximise", "replace": "Minimise"}],
        },
        {"action": "run", "rationale": "parameters outside the clamps", "params": {"boost": 9}},
    ]
    lab = make_lab(decisions=decisions, max_trials=20)
    user_head = git(lab, "status", "--porcelain")
    final = Lab(lab).run(report=lambda line: None)

    trials = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
    verdicts = [(json.loads(t["params"])["boost"], t["verdict"]) for t in trials]
    assert verdicts == [(0.02, "discarded"), (0.5, "kept"), (0.5, "kept")]
    noise, planted, coded = trials
    assert noise["objective"] == pytest.approx(1.01)  # +0.01 only: inside 2σ = 0.02
    assert coded["objective"] == pytest.approx(2.49)
    assert coded["commit"] != coded["base_commit"] == planted["commit"]
    assert final["best"]["trial"] == coded["id"]
    assert final["end_reason"].startswith("the worker stopped the night")
    # the gate turned the last two decisions into waits, with reasons, and ran nothing
    rejected = rows(lab, "SELECT reasons FROM decisions WHERE accepted=0")
    reasons = [json.loads(r[0])[0] for r in rejected]
    assert "'IDEA.md' is not editable" in reasons[0] and "boost: 9" in reasons[1]
    # the code lives on nightlab's branch; the user's tree and branch are untouched
    best = git(lab, "show", "nightlab/tiny/best:train.py")
    assert "EXTRA = 1.0" in best
    assert "EXTRA = 0.0" in (lab / "train.py").read_text()
    assert git(lab, "status", "--porcelain") == user_head
    diff = (lab / ".nightlab" / "trials" / str(coded["id"]) / "diff.patch").read_text()
    assert "+EXTRA = 1.0" in diff

    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "start")
    done = Lab(lab).adopt(coded["id"])
    assert done["files"] == ["train.py"] and done["params"] == {"boost": 0.5}
    assert "EXTRA = 1.0" in (lab / "train.py").read_text()
    assert "default = 0.5" in (lab / "nightlab.toml").read_text()
    assert git(lab, "log", "-1", "--format=%s").startswith(f"nightlab: adopt trial {coded['id']}")
    assert git(lab, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("mode", "extra", "status_", "reason"),
    [
        ("hang", "hang_seconds = 1", "killed", "hang: no output"),
        ("nan", "", "killed", "diverged: score=nan"),
        ("crash", "", "failed", "exit status 1"),
        ("silent", "", "failed", "never reported 'score'"),
    ],
)
def test_misbehaving_trials_end_with_a_clear_record(make_lab, mode, extra, status_, reason):
    decisions = [
        {"action": "run", "rationale": f"a trial that goes {mode}", "params": {"mode": mode}}
    ]
    lab = make_lab(decisions=decisions, max_trials=4, trial_extra=extra)
    Lab(lab).run(report=lambda line: None)
    (t,) = rows(lab, "SELECT * FROM trials WHERE kind='trial'")
    assert t["status"] == status_ and reason in t["reason"]
    assert t["verdict"] == "discarded" and t["objective"] is None
    if status_ != "succeeded":
        assert "starting" in t["log_tail"]
    if mode == "crash":
        assert "boom: the trial crashed on purpose" in t["log_tail"]
    assert t["wall_s"] < 30


def test_budget_kill_and_no_process_left_behind(make_lab):
    decisions = [
        {"action": "run", "rationale": "a trial slower than its budget", "params": {"sleep": 20}},
        {
            "action": "run",
            "rationale": "a trial leaving a child behind",
            "params": {"mode": "orphan"},
        },
    ]
    lab = make_lab(decisions=decisions, max_trials=5, budget=2)
    Lab(lab).run(report=lambda line: None)
    slow, orphan = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
    assert slow["status"] == "timeout" and "budget_seconds=2" in slow["reason"]
    assert 2 <= slow["wall_s"] < 8
    assert orphan["status"] == "succeeded"
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "nightlab-test-orphan" in (p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_failed_baseline_ends_the_night_with_the_fix(make_lab):
    lab = make_lab(max_trials=5)
    (lab / "train.py").write_text("raise SystemExit('no data here')\n")
    from nightlab.loop.loop import NightError

    with pytest.raises(NightError, match="baseline trial 1 failed.*stderr.log.*nightlab reset"):
        Lab(lab).run(report=lambda line: None)
    st = status(lab)
    assert st["state"] == "stopped" and "baseline" in st["end_reason"]
    assert st["trials"]["running"] == 0


def test_a_run_that_repeats_a_trial_is_turned_into_a_wait(make_lab):
    edit = {"file": "train.py", "search": "EXTRA = 0.0", "replace": "EXTRA = 0.005"}
    decisions = [
        {"action": "run", "rationale": "the defaults once more, as if new", "params": {}},
        {"action": "run", "rationale": "a code change inside the noise", "edits": [edit]},
        {"action": "run", "rationale": "the very same change again", "edits": [edit]},
        {"action": "run", "rationale": "a genuinely new parameter value", "params": {"boost": 2}},
    ]
    lab = make_lab(decisions=decisions, max_trials=20)
    Lab(lab).run(report=lambda line: None)
    trials = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
    assert [json.loads(t["params"])["boost"] for t in trials] == [0.0, 2]
    assert "EXTRA = 0.005" in git(lab, "show", f"{trials[0]['commit']}:train.py")
    assert trials[0]["verdict"] == "discarded"  # so the base, and the edit, stay the same
    reasons = [
        json.loads(r[0])[0]
        for r in rows(lab, "SELECT reasons FROM decisions WHERE accepted=0 ORDER BY id")
    ]
    assert len(reasons) == 2
    assert "as trial 1 already ran" in reasons[0]  # the baseline
    assert f"as trial {trials[0]['id']} already ran" in reasons[1]


def test_edits_git_cannot_take_are_waits_not_a_crashed_night(make_lab):
    decisions = [
        {
            "action": "run",
            "rationale": "a file below a file",
            "edits": [{"file": "train.py/x.py", "search": "", "replace": "x = 1\n"}],
        },
        {
            "action": "run",
            "rationale": "into git's own folder",
            "edits": [{"file": "sub/.git/x.py", "search": "", "replace": "x = 1\n"}],
        },
        {
            "action": "run",
            "rationale": "repoint the symlink somewhere else",
            "edits": [{"file": "link.py", "search": "", "replace": "/etc/passwd"}],
        },
        {
            "action": "run",
            "rationale": "the baseline again, written as an int",
            "params": {"boost": 0},
        },
    ]
    lab = make_lab(decisions=decisions, max_trials=10)
    (lab / "link.py").symlink_to("train.py")
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace('editable = ["train.py"]', 'editable = ["train.py", "**/*.py"]')
    )
    final = Lab(lab).run(report=lambda line: None)
    assert final["state"] == "finished" and final["trials"]["total"] == 3
    reasons = [
        json.loads(r[0])[0]
        for r in rows(lab, "SELECT reasons FROM decisions WHERE accepted=0 ORDER BY id")
    ]
    assert "cannot be applied" in reasons[0]
    assert "not editable" in reasons[1]
    assert "'link.py' is not a regular file (120000)" in reasons[2]
    assert "as trial 1 already ran" in reasons[3]
