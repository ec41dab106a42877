"""A trial names its metrics (and may write its own MLflow run id): names MLflow refuses
must never stop MLflow logging, neither for that trial nor the ones after it, nor after a
restart. Real MLflow stores (sqlite and file) under tmp_path."""

from __future__ import annotations

import json
import posixpath

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_metric_name

from nightlab import Lab
from nightlab.tracking.mirror import MAX_KEY, Tracker, mlflow_key

from conftest import git, rows

HOSTILE = ["a" * 600, "x\ny", "../../etc", "/abs/path", "名前", "", "/", ".", "..", "a//b/./c",
           "..hidden", "tab\there", "semi;colon", "quote'\"", "x" * 249 + "/", "nul\x00byte",
           "emoji🙂", "a" * 601]  # fmt: skip
GOOD = ["val_loss", "train/acc", "名前", "lr: schedule", "a-b.c"]


def uri(tmp_path, kind: str) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}" if kind == "sqlite" else f"{tmp_path}/mlruns"


def record(trial_id: int, names: list[str]) -> dict:
    history = [{"name": n, "value": 0.5 + i, "step": 1} for i, n in enumerate(names)]
    history += [{"name": "score", "value": 2.0, "step": 1}]
    history += [
        {"name": "weird", "value": v, "step": s}  # not numbers, nor int64 steps
        for v, s in [(True, 1), ("1", 2), (float("nan"), 3), (1.0, 10**30), (1.0, "x")]
    ]
    return {
        "id": trial_id, "trace_id": f"c{trial_id}", "kind": "trial", "status": "succeeded",
        "verdict": "kept", "dimension": None, "hypothesis": None, "commit": "abc", "seed": 0,
        "started_at": 1.0, "ended_at": 2.0, "params": {"lr": 0.1, "../x\ny": 1, "z" * 300: 2},
        "history": history,
    }  # fmt: skip


def test_every_hostile_name_becomes_a_key_mlflow_accepts():
    keys = [mlflow_key(n) for n in HOSTILE + GOOD]
    for name, key in zip(HOSTILE + GOOD, keys, strict=True):
        if key is not None:
            _validate_metric_name(key)  # MLflow's own check: raises when it would refuse
            assert len(key) <= MAX_KEY and posixpath.normpath(key) == key, name
    assert [mlflow_key(n) for n in GOOD] == GOOD  # valid names are kept as they are
    assert mlflow_key("") is None and mlflow_key("/") is None
    assert mlflow_key("a" * 600) != mlflow_key("a" * 601)  # cut names stay apart


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_trial_with_hostile_metric_names_does_not_stop_the_next(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # (maintenance mode in MLflow 3)
    tracker = Tracker(uri(tmp_path, kind), "lab", tmp_path / "artifacts", "n1")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first = tracker.log_trial(record(1, HOSTILE + GOOD), tmp_path / "1")
    changed = tracker.changed_names
    second = tracker.log_trial(record(2, GOOD), tmp_path / "2")
    client = MlflowClient(uri(tmp_path, kind))
    one, two = client.get_run(first).data, client.get_run(second).data
    assert two.metrics["score"] == 2.0 and set(GOOD) <= set(two.metrics)
    assert one.metrics["score"] == 2.0 and set(GOOD) <= set(one.metrics)
    assert one.metrics["x_y"] == 1.5 and sum(k.startswith("a" * 200) for k in one.metrics) == 2
    assert "weird" not in one.metrics  # no finite number at a storable step
    assert one.params["lr"] == "0.1" and len(one.params) == 3
    assert changed["x\ny"] == "x_y" and changed[""] is None and "../../etc" in changed
    assert client.get_run(first).info.status == "FINISHED"


def test_a_bogus_own_run_id_from_the_trial_is_ignored(tmp_path):
    """A trial writes the run id file itself: another trial's run, or no run at all."""
    tracker = Tracker(uri(tmp_path, "sqlite"), "lab", tmp_path / "artifacts", "n1")
    for trial in (1, 2, 3):
        (tmp_path / str(trial)).mkdir()
    first = tracker.log_trial(record(1, ["a"]), tmp_path / "1")
    (tmp_path / "2" / "mlflow_run_id").write_text("../../not-a-run\n")
    (tmp_path / "3" / "mlflow_run_id").write_text(first)  # trial 1's run
    second = tracker.log_trial(record(2, ["b"]), tmp_path / "2")
    third = tracker.log_trial(record(3, ["c"]), tmp_path / "3")
    assert len({first, second, third}) == 3
    client = MlflowClient(uri(tmp_path, "sqlite"))
    assert set(client.get_run(first).data.metrics) == {"a", "score"}


TRIAL = """
import json, os
trial = int(os.environ["NIGHTLAB_TRIAL_ID"])
if trial == 1:  # metric names MLflow refuses, through nightlab.log's file
    names = ["a" * 190 + "//b", "x\\ny", "../../etc", "名前", "", "/"]
    with open(os.environ["NIGHTLAB_METRICS"], "a") as fh:
        fh.write(json.dumps({"step": 1, "metrics": {n: 1.0 for n in names}}) + "\\n")
if trial == 2:  # a run id of its own making
    out = os.path.dirname(os.environ["NIGHTLAB_METRICS"])  # its own out/
    open(os.path.join(out, "mlflow_run_id"), "w").write("nope")
print(f"score={1 + trial / 100}", flush=True)
"""


def mlflow_runs(lab) -> dict[str, dict[str, float]]:
    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`nightlab.trial_id` LIKE '%'")
    return {r.data.tags["nightlab.trial_id"]: r.data.metrics for r in runs}


@pytest.mark.slow
def test_a_night_with_hostile_metric_names_logs_every_trial_across_restarts(make_lab):
    lab = make_lab(trial=TRIAL, max_trials=3, tracking=True)
    git(lab, "add", "-A")
    Lab(lab).run(report=lambda line: None)
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE mlflow_run_id IS NULL")[0][0] == 0
    runs = mlflow_runs(lab)
    assert sorted(runs) == ["1", "2", "3"]
    assert all(m["score"] > 1 for m in runs.values()) and "名前" in runs["1"]
    (event,) = rows(lab, "SELECT data FROM events WHERE kind = 'tracking_names'")
    changed = json.loads(event["data"])["changed"]  # ("x\ny" never gets this far: the reader
    assert "../../etc" in changed and "x\ny" not in changed  # drops control characters)

    Lab(lab).run(max_trials=4, report=lambda line: None)  # a restart: the next night
    assert sorted(mlflow_runs(lab)) == ["1", "2", "3", "4"]
