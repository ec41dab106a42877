"""MLflow is a mirror: a tracking server that is down loses nothing, and catches up."""

from __future__ import annotations

import time

import pytest

from nightlab import Lab

from conftest import rows, status

pytestmark = pytest.mark.slow


def unlogged(lab) -> int:
    return rows(lab, "SELECT COUNT(*) FROM trials WHERE mlflow_run_id IS NULL")[0][0]


def test_unreachable_mlflow_then_catch_up(make_lab):
    lab = make_lab(max_trials=4, tracking=True)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + 'mlflow_uri = "http://127.0.0.1:9"\n')  # refuses
    lines: list[str] = []
    started = time.time()
    final = Lab(lab).run(report=lines.append)
    assert time.time() - started < 90
    assert final["state"] == "finished" and final["trials"]["succeeded"] == 4
    assert unlogged(lab) == 4
    assert any("4 trial(s) not logged yet" in line for line in lines)
    (errors,) = rows(lab, "SELECT COUNT(*) FROM events WHERE kind='tracking_error'")
    assert errors[0] >= 1

    # the server "returns" (here: a reachable store); the next start logs the gap
    toml.write_text(
        toml.read_text().replace(
            '"http://127.0.0.1:9"', '"sqlite:///' + str(lab / "mlflow-back.db") + '"'
        )
    )
    Lab(lab).run(max_trials=5, report=lines.append)
    assert unlogged(lab) == 0
    assert status(lab)["trials"]["total"] == 5

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / 'mlflow-back.db'}")
    exp = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([exp.experiment_id])) == 5 + 1  # and the night's run


def test_a_new_night_after_reset_adds_runs_and_keeps_the_old_ones(make_lab):
    lab = make_lab(max_trials=3, tracking=True)
    Lab(lab).run(report=lambda line: None)
    Lab(lab).reset(keep_tracking=True)
    Lab(lab).run(report=lambda line: None)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`nightlab.trial_id` LIKE '%'")
    assert len(runs) == 6
    assert len({r.data.tags["nightlab.night_id"] for r in runs}) == 2
    assert all(len(client.get_metric_history(r.info.run_id, "score")) == 1 for r in runs)


LOGS_ITSELF = """
import json, os
from mlflow.tracking import MlflowClient
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
run = os.environ["MLFLOW_RUN_ID"]
client.log_param(run, "boost", "set-by-the-trial")  # nightlab must not overwrite it
for step in range(3):
    client.log_metric(run, "inner_loss", 1.0 / (step + 1), step=step)
print(f"run={run}", flush=True)
print(f"score={1.0 + p['boost']}", flush=True)
"""


def test_trial_run_the_trial_logs_into_its_own_run(make_lab):
    """[tracking] trial_run: nightlab opens the run first, the trial logs into it (as
    Lightning's MLFlowLogger would), and nightlab then adds its own record to that run."""
    lab = make_lab(max_trials=3, tracking=True)
    (lab / "train.py").write_text(LOGS_ITSELF)
    toml = lab / "nightlab.toml"  # 3 baseline trials open their runs at once on a new store
    toml.write_text(toml.read_text() + "trial_run = true\n\n[executor]\nslots = 3\n")
    final = Lab(lab).run(report=lambda line: None)
    assert final["trials"]["succeeded"] == 3
    assert unlogged(lab) == 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`nightlab.trial_id` LIKE '%'")
    assert len(runs) == 3  # one run per trial: the trial's own, not a second one
    stored = dict(rows(lab, "SELECT id, mlflow_run_id FROM trials"))
    for run in runs:
        trial = int(run.data.tags["nightlab.trial_id"])
        assert stored[trial] == run.info.run_id
        out = (lab / ".nightlab" / "trials" / str(trial) / "stdout.log").read_text()
        assert f"run={run.info.run_id}" in out  # MLFLOW_RUN_ID was that run
        assert run.data.params["boost"] == "set-by-the-trial"
        history = client.get_metric_history(run.info.run_id, "inner_loss")
        assert [m.step for m in history] == [0, 1, 2]
        assert run.data.metrics["score"] >= 1.0  # nightlab's own metric added
        assert run.data.tags["nightlab.status"] == "succeeded"
        assert run.info.status == "FINISHED"


PRINTS_STEPS = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
for step in range(3):
    print(f"step={step * 10} loss={1.0 / (step + 1)}", flush=True)
    time.sleep(0.3)
print(f"score={1.0 + p['boost']}", flush=True)
"""


def test_a_shared_server_from_the_environment_nested_runs_and_point_times(
    make_lab, tmp_path, monkeypatch
):
    """MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME when nightlab.toml names none; a night
    is a parent run, its trials nested; points keep their steps and the times they came."""
    shared = tmp_path / "shared.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team")
    lab = make_lab(max_trials=2, tracking=True)
    (lab / "train.py").write_text(PRINTS_STEPS)
    Lab(lab).run(report=lambda line: None)
    Lab(lab).reset()  # keeps the (here: unused) lab store; a second night, same lab
    Lab(lab).run(report=lambda line: None)
    assert unlogged(lab) == 0
    assert not (lab / ".nightlab" / "mlflow.db").exists()  # all went to the shared store

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{shared}")
    exp = client.get_experiment_by_name("team")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("nightlab.night_run") == "1"]
    children = [r for r in runs if "nightlab.trial_id" in r.data.tags]
    assert len(parents) == 2 and len(children) == 4 and len(runs) == 6
    by_night = {p.data.tags["nightlab.night_id"]: p.info.run_id for p in parents}
    names = [r.info.run_name for r in children]
    assert len(set(names)) == 4  # unique across the two nights
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == by_night[tags["nightlab.night_id"]]
        assert run.info.run_name == f"{client.get_run(tags['mlflow.parentRunId']).info.run_name}"\
            f"-t{tags['nightlab.trial_id']}"
        assert tags["mlflow.source.git.commit"] == tags["nightlab.commit"]
        assert "Hypothesis" in tags["mlflow.note.content"]
        assert (tags["nightlab.verdict"] or tags["nightlab.status"]) in tags["mlflow.note.content"]
        points = client.get_metric_history(run.info.run_id, "loss")
        assert [p.step for p in points] == [0, 10, 20]  # as printed
        times = [p.timestamp for p in sorted(points, key=lambda p: p.step)]
        assert times[0] < times[1] < times[2]
        assert times[2] - times[0] >= 450  # 0.6 s apart, read within ~100 ms
        assert times[0] >= run.info.start_time - 1000


def test_the_toml_uri_wins_over_the_environment_and_reset_keeps_or_drops(
    make_lab, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'shared.db'}")
    lab = make_lab(max_trials=1, tracking=True)
    toml = lab / "nightlab.toml"
    own = lab / "own.db"
    toml.write_text(toml.read_text() + f'mlflow_uri = "sqlite:///{own}"\n')
    Lab(lab).run(report=lambda line: None)
    assert own.is_file() and not (tmp_path / "shared.db").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{own}")
    assert len(client.search_runs([client.get_experiment_by_name("tiny").experiment_id])) == 2

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the lab's own store from here on
    toml.write_text(toml.read_text().replace(f'mlflow_uri = "sqlite:///{own}"\n', ""))
    Lab(lab).reset()
    Lab(lab).run(report=lambda line: None)
    assert (lab / ".nightlab" / "mlflow.db").is_file()
    Lab(lab).reset()
    assert (lab / ".nightlab" / "mlflow.db").is_file()  # kept by default
    Lab(lab).reset(drop_tracking=True)
    assert not (lab / ".nightlab" / "mlflow.db").exists()
