"""The journal: a night's deadline survives a crash, and a stop or a new budget resets it.
(Resuming whole nights after a crash: tests/nights/test_recovery.py.)"""

from __future__ import annotations

import time

import pytest

from nightlab.loop.journal import Journal
from nightlab.store.db import Run, Store


def test_deadlines_crash_keeps_it_stop_and_config_restart_it(tmp_path):
    store = Store(tmp_path / "state.db")
    store.migrate()
    journal = Journal(store, tmp_path, "lab", "score")
    _, first = journal.open_run(None, 1.0, {})
    assert first == pytest.approx(time.time() + 3600, abs=5)
    # the loop dies; the next run of the same night keeps the end time
    _, resumed = journal.open_run(None, 1.0, {})
    assert resumed == first
    journal.close_run("stopped", "stop requested", mlflow=False)
    time.sleep(0.01)
    _, fresh = journal.open_run(None, 1.0, {})  # a stopped night gets a new budget
    assert fresh > first
    journal.close_run("stopped", "", mlflow=False)
    _, explicit = journal.open_run(0.5, 1.0, {})
    assert explicit == pytest.approx(time.time() + 1800, abs=5)
    with store.tx() as s:
        states = [r.state for r in s.query(Run).order_by(Run.id)]
    assert states == ["crashed", "stopped", "stopped", "running"]


def test_a_started_trial_is_found_again_through_the_executor_that_started_it(tmp_path):
    """What a restarted loop re-attaches with: the executor kind and the job id recorded
    when the trial started (a plugin's trial is not mistaken for a local or Slurm one)."""
    from types import SimpleNamespace

    from nightlab.agents.decision import Decision
    from nightlab.store import history
    from nightlab.trials.executor import Handle

    store = Store(tmp_path / "state.db")
    store.migrate()
    journal = Journal(store, tmp_path, "lab", "score")
    journal.open_run(None, None, {})
    ids = []
    for handle in (Handle("cloud", None, None, "job-7"), Handle("local", 4242, 1.5, None)):
        decision = Decision(action="run", rationale="a run", params={})
        trial_id, trace = journal.open_trial(
            "search", decision, kind="trial", params={}, seed=0, slot=0, commit="c",
            base_commit="c", base_trial_id=None,
        )  # fmt: skip
        running = SimpleNamespace(handle=handle, started_at=time.time())
        journal.started(trial_id, trace, running, 0, "")
        ids.append(trial_id)
    assert history.started_as(store, ids[0]) == ("cloud", "job-7")
    assert history.started_as(store, ids[1]) == ("local", None)
    assert history.started_as(store, 999) == (None, None)
