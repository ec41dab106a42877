"""Class 8, protected evaluation bypassed, and class 9, the held-out test read by a trial.

With `[trial] evaluate`, the objective comes from the lab's own evaluation, run from the
night's base commit in a box of its own on the trial's artifacts: what the trial prints
(an `atexit` hook's extra `score=` line), a package shadowing a protected module, or a
swap of the protected evaluation script during the run change nothing. With
`[objective] test_paths`, the test data is absent from every box but the test run's, and
only the loop sets NIGHTLAB_TEST. The evaluation reads labels in a `[trial] share` folder
(read-only), the test data there only in the test run."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from nightlab import Lab

from conftest import build_lab, git, rows

if shutil.which("bwrap") is None:
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

# The trial "learns" a number (boost) and saves it as its artifact; the evaluation scores
# that artifact against the labels in the protected data.py: score = 1 - |pred - truth|.
DATA = "TRUTH = 0.25\n"
EVALUATE = """
import json, os
from pathlib import Path
from data import TRUTH
pred = json.loads((Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "pred.json").read_text())
print(f"score={1 - abs(pred - TRUTH)}")
"""
HONEST = """
import json, os
from pathlib import Path
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
(Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "pred.json").write_text(json.dumps(p["boost"]))
print("score=0.5")  # the trial's own claim: not what counts
"""
HOSTILE = """
import atexit, json, os
from pathlib import Path
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
out = Path(os.environ["NIGHTLAB_ARTIFACTS"])
(out / "pred.json").write_text(json.dumps(p["boost"]))
tried = {}
def attempt(name, fn):
    try:
        fn()
        tried[name] = "ok"
    except OSError as exc:
        tried[name] = type(exc).__name__
# shadow the protected data.py with a package whose TRUTH matches any prediction
Path("data").mkdir(exist_ok=True)
attempt("shadow", lambda: Path("data/__init__.py").write_text(f"TRUTH = {p['boost']}\\n"))
# swap the protected evaluation for one that prints a perfect score (and restore it later)
attempt("swap", lambda: Path("evaluate.py").write_text("print('score=1.0')\\n"))
attempt("rename", lambda: os.rename("evaluate.py", "evaluate.bak"))
(out / "tried.json").write_text(json.dumps(tried))
atexit.register(lambda: print("score=1000", flush=True))  # a forged last line
print("score=999")
"""


def evaluated_lab(tmp_path, trial: str, boost: float):
    lab = build_lab(
        tmp_path / "lab",
        trial=trial,
        decisions=[
            {
                "action": "run",
                "rationale": "try this boost on the evaluation",
                "params": {"boost": boost},
            }
        ],
        max_trials=4,
        trial_extra='evaluate = "python evaluate.py"\nprotected = ["evaluate.py", "data.py"]',
    )
    (lab / "data.py").write_text(DATA)
    (lab / "evaluate.py").write_text(EVALUATE)
    git(lab, "add", "-A")
    return lab


def test_the_objective_comes_from_the_sealed_evaluation_only(tmp_path):
    lab = evaluated_lab(tmp_path, HONEST, 0.15)
    Lab(lab).run(report=lambda line: None)
    got = {r["kind"]: r for r in rows(lab, "SELECT kind, status, objective FROM trials")}
    assert got["trial"]["status"] == "succeeded"
    # baseline: boost 0 → 1 - 0.25; the trial: boost 0.15 → 1 - 0.10; never the printed 0.5
    assert got["baseline"]["objective"] == pytest.approx(0.75)
    assert got["trial"]["objective"] == pytest.approx(0.90)


def test_a_hostile_trial_cannot_forge_shadow_or_swap_the_evaluation(tmp_path):
    lab = evaluated_lab(tmp_path, HOSTILE, 0.9)
    Lab(lab).run(report=lambda line: None)
    trial = rows(lab, "SELECT id, status, objective, verdict FROM trials WHERE kind = 'trial'")[0]
    tried = json.loads(
        (lab / ".nightlab" / "trials" / str(trial["id"]) / "out/artifacts/tried.json").read_text()
    )
    assert tried["swap"] != "ok" and tried["rename"] != "ok"  # protected: read-only binds
    assert tried["shadow"] == "ok"  # it may write its own tree, but the evaluation
    assert trial["objective"] == pytest.approx(1 - abs(0.9 - 0.25))  # never sees it
    assert trial["verdict"] != "kept"  # 0.35 is worse than the baseline's 0.75
    assert (lab / "evaluate.py").read_text() == EVALUATE


HELD_OUT = """
import json, os
from pathlib import Path
seen = {
    "env": os.environ.get("NIGHTLAB_TEST"),
    "test": Path("data/test.csv").is_file() and Path("data/test.csv").read_text(),
}
(Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "seen.json").write_text(json.dumps(seen))
print("score=1")
if os.environ.get("NIGHTLAB_TEST") == "1":
    print(f"test_score={len(seen['test'] or '')}")
"""


def test_the_held_out_test_data_is_absent_from_every_run_but_the_test_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTLAB_TEST", "1")  # set around the loop: a trial must not inherit it
    lab = build_lab(
        tmp_path / "lab",
        trial=HELD_OUT,
        max_trials=4,
        decisions=[
            {
                "action": "run",
                "rationale": "probe: boost 0.5 maps the response",
                "dimension": "optimization",
                "params": {"boost": 0.5},
            }
        ],
    )
    toml = (lab / "nightlab.toml").read_text()
    toml = toml.replace('direction = "maximize"', 'direction = "maximize"\ntest_metric = '
                        '"test_score"\ntest_paths = ["data/test.csv"]')  # fmt: skip
    (lab / "nightlab.toml").write_text(toml)
    (lab / "data").mkdir()
    (lab / "data" / "test.csv").write_text("secret,labels\n")
    git(lab, "add", "-A")
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=1, top_k=1, note="t")
    Lab(lab).run(report=lambda line: None)
    seen = {}
    for row in rows(lab, "SELECT id, kind FROM trials"):
        path = lab / ".nightlab" / "trials" / str(row["id"]) / "out/artifacts/seen.json"
        seen.setdefault(row["kind"], []).append(json.loads(path.read_text()))
    assert seen["test"] == [{"env": "1", "test": "secret,labels\n"}]
    for kind in ("baseline", "trial"):
        assert all(s["env"] is None and not s["test"] for s in seen[kind]), seen[kind]



BORROWER = """
import json, os, shutil, sys
from pathlib import Path
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
out = Path(os.environ["NIGHTLAB_ARTIFACTS"])
(out / "pred.json").write_text(json.dumps(p["boost"]))
if p.get("mode") == "borrow":  # point the evaluation at someone else's perfect predictions
    shutil.rmtree(out)
    os.symlink(sys.argv[1], out)
print("score=0.5")
"""


def test_artifacts_replaced_by_a_link_are_not_evaluated(tmp_path):
    perfect = Path(tempfile.mkdtemp(prefix="nightlab-perfect-", dir="/var/tmp"))
    (perfect / "pred.json").write_text("0.25")  # would score 1.0
    try:
        lab = build_lab(
            tmp_path / "lab", trial=BORROWER, max_trials=4, modes=("borrow",),
            decisions=[{"action": "run", "rationale": "borrow a perfect prediction file",
                        "params": {"boost": 0.15, "mode": "borrow"}}],
            trial_extra='evaluate = "python evaluate.py"\nprotected = ["evaluate.py", "data.py"]',
        )  # fmt: skip
        (lab / "data.py").write_text(DATA)
        (lab / "evaluate.py").write_text(EVALUATE)
        toml = lab / "nightlab.toml"
        toml.write_text(toml.read_text().replace("python train.py", f"python train.py {perfect}"))
        git(lab, "add", "-A")
        Lab(lab).run(report=lambda line: None)
    finally:
        shutil.rmtree(perfect)
    (trial,) = rows(lab, "SELECT status, objective, reason FROM trials WHERE kind = 'trial'")
    assert trial["objective"] is None and trial["status"] == "failed"
    assert "evaluation" in trial["reason"] and "125" in trial["reason"]


# The trial prints a forged objective, a forged held-out figure and a metric of its own on
# every run; the evaluation prints only the objective. Nothing the trial printed may reach
# the record: not the objective, not the held-out figure of the final pick's test run.
FORGER = """
import json, os
from pathlib import Path
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
(Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "pred.json").write_text(json.dumps(p["boost"]))
print("score=999 test_score=999 mine=1")
"""


def with_test_metric(lab: Path, test_paths: str = "") -> None:
    toml = lab / "nightlab.toml"
    text = toml.read_text().replace('direction = "maximize"', 'direction = "maximize"\n'
                                    f'test_metric = "test_score"\n{test_paths}')  # fmt: skip
    toml.write_text(text)


def test_a_trial_cannot_forge_the_objective_or_the_held_out_figure_under_evaluate(tmp_path):
    lab = evaluated_lab(tmp_path, FORGER, 0.15)
    with_test_metric(lab)
    git(lab, "add", "-A")
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=1, top_k=1, note="t")
    Lab(lab).run(report=lambda line: None)
    trials = rows(lab, "SELECT kind, status, objective, metrics FROM trials")
    assert {t["kind"] for t in trials} >= {"baseline", "trial", "confirm", "test"}
    for t in trials:  # the evaluation's figures alone: 1 - |boost - 0.25|
        assert t["status"] == "succeeded" and t["objective"] < 1, dict(t)
        assert json.loads(t["metrics"]) == {"score": t["objective"]}, dict(t)
    assert rows(lab, "SELECT count(*) FROM events WHERE kind = 'test_metric'") == [(0,)]
    (missing,) = rows(lab, "SELECT data FROM events WHERE kind = 'test_metric_missing'")
    reason = json.loads(missing["data"])["reason"]
    assert "evaluation" in reason and "test_score" in reason, reason
    (folder,) = (lab / ".nightlab" / "reports").iterdir()
    paper = (folder / "final_paper_report.md").read_text()
    assert "**Held-out test**: no test_score figure" in paper and "999" not in paper


# The labels live in an untracked, shared folder (`[trial] share`), the held-out test among
# them: the evaluation reads the validation labels there on every run, the test labels only
# in the test run. The trial still prints a forged held-out figure.
SHARED_EVALUATE = """
import json, os
from pathlib import Path
pred = json.loads((Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "pred.json").read_text())
test = Path("data/test.json")
Path("seen.json").write_text(json.dumps({"test": test.is_file() and test.read_text()}))
print(f"score={1 - abs(pred - json.loads(Path('data/val.json').read_text()))}")
if os.environ.get("NIGHTLAB_TEST") == "1":
    print(f"test_score={1 - abs(pred - json.loads(test.read_text()))}")
"""


def test_the_evaluation_reads_shared_labels_and_the_test_labels_only_in_the_test_run(tmp_path):
    lab = build_lab(
        tmp_path / "lab", trial=FORGER, max_trials=4,
        decisions=[{"action": "run", "rationale": "try this boost on the evaluation",
                    "params": {"boost": 0.15}}],
        trial_extra='evaluate = "python evaluate.py"\nprotected = ["evaluate.py"]\n'
        'share = ["data"]',
    )  # fmt: skip
    with_test_metric(lab, 'test_paths = ["data/test.json"]')
    (lab / "evaluate.py").write_text(SHARED_EVALUATE)
    (lab / "data").mkdir()
    (lab / "data" / "val.json").write_text("0.25")
    (lab / "data" / "test.json").write_text("0.35")
    (lab / ".gitignore").write_text("data/\n")  # untracked: reached only through `share`
    git(lab, "add", "-A")
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=1, top_k=1, note="t")
    Lab(lab).run(report=lambda line: None)
    seen = {}
    for t in rows(lab, "SELECT id, kind, status, objective FROM trials"):
        assert t["status"] == "succeeded", dict(t)
        if t["kind"] == "trial":  # boost 0.15 against the shared labels' 0.25
            assert t["objective"] == pytest.approx(0.90)
        path = lab / ".nightlab" / "trials" / str(t["id"]) / "eval" / "seen.json"
        seen.setdefault(t["kind"], []).append(json.loads(path.read_text()))
    assert seen.pop("test") == [{"test": "0.35"}]
    assert all(not s["test"] for runs in seen.values() for s in runs), seen
    (event,) = rows(lab, "SELECT data FROM events WHERE kind = 'test_metric'")
    assert json.loads(event["data"])["value"] == pytest.approx(0.80)  # the evaluation's
    assert (lab / "data" / "test.json").read_text() == "0.35"
