"""MLflow is a mirror: a tracking server that is down loses nothing, and catches up."""

from __future__ import annotations

import sqlite3
import time

import pytest

from nightlab import Lab

from conftest import status

pytestmark = pytest.mark.slow


def unlogged(lab) -> int:
    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    try:
        return conn.execute("SELECT COUNT(*) FROM trials WHERE mlflow_run_id IS NULL").fetchone()[0]
    finally:
        conn.close()


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
    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    errors = conn.execute("SELECT COUNT(*) FROM events WHERE kind='tracking_error'").fetchone()
    conn.close()
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
    assert len(client.search_runs([exp.experiment_id])) == 5


def test_a_new_night_after_reset_adds_runs_and_keeps_the_old_ones(make_lab):
    lab = make_lab(max_trials=3, tracking=True)
    Lab(lab).run(report=lambda line: None)
    Lab(lab).reset(keep_tracking=True)
    Lab(lab).run(report=lambda line: None)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 6
    assert len({r.data.tags["nightlab.night_id"] for r in runs}) == 2
    assert all(len(client.get_metric_history(r.info.run_id, "score")) == 1 for r in runs)
