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
