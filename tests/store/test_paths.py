"""One place builds the lab's `.nightlab/...` paths (nightlab.store.paths)."""

from __future__ import annotations

from pathlib import Path

from nightlab.store import paths
from nightlab.store.paths import LabPaths


def test_lab_paths_are_the_documented_layout(tmp_path):
    p = LabPaths(tmp_path)
    state = tmp_path / ".nightlab"
    assert p.lab == tmp_path and p.state == state
    assert p.db == state / "state.db"
    assert p.trials == state / "trials"
    assert p.trial(7) == state / "trials" / "7"
    assert p.trial(7) / paths.RESULT == state / "trials/7/result.json"
    assert p.lock == state / "loop.lock"
    assert p.loop_log == state / "loop.log"
    assert p.finish_up == state / "FINISH_UP.json"
    assert p.tracking_log == state / "tracking.log"
    assert p.mlflow_db == state / "mlflow.db"
    assert p.mlflow_uri == f"sqlite:///{(state / 'mlflow.db').resolve()}"
    assert p.mlartifacts == state / "mlartifacts"
    assert p.storyline == state / "artifacts" / "storyline.md"
    assert p.workpad.parent == p.shared_todo.parent == p.mentor_notes.parent == p.artifacts
    assert p.report("n1") == state / "reports" / "n1"
    assert p.agents == state / "agents"
    assert paths.LOGS == ("stderr.log", "stdout.log")


def test_lab_paths_from_a_state_folder_or_a_store_file(tmp_path):
    state = tmp_path / "elsewhere"
    assert LabPaths.of_state(state).trial(1) == state / "trials" / "1"
    assert LabPaths.of_db(state / "state.db").tracking_lock == state / "tracking.lock"
    assert LabPaths.of_db(LabPaths(tmp_path).db).state == LabPaths(tmp_path).state
    assert LabPaths("lab").db == Path("lab/.nightlab/state.db")  # not resolved


def test_the_tracking_mirror_uses_the_default_uri(tmp_path):
    from nightlab.tracking.mirror import default_uri

    assert default_uri(tmp_path / ".nightlab") == LabPaths(tmp_path).mlflow_uri
