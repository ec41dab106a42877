"""SIGKILL at the exact moments where test_random_sigkill.py found the loop fragile, made
deterministic: a kill while the first start creates the schema, between a trial's row and
its folder, and between a trial's recorded outcome and its result.json.

Each moment is reached for real (a loop we start and SIGKILL), held open by the file
system rather than by patching nightlab: a slow `git` earlier on PATH, a FIFO that blocks
the writer, or polling the store while the schema is being created.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    assert_store_intact,
    assert_trials_recorded_once,
    fault_lab,
    lab_processes,
    reap,
    sigkill,
)

from nightlab.store.db import HEAD_REVISION

from conftest import rows, spawn_loop, try_rows, wait_until

pytestmark = pytest.mark.slow


def finish(lab: Path, *args: str, log: Path) -> tuple[int, str]:
    loop = spawn_loop(lab, *args, log=log)
    code = loop.wait(timeout=120)
    return code, log.read_text(errors="replace")


def test_a_kill_while_the_first_start_creates_the_schema(tmp_path):
    lab = fault_lab(tmp_path / "lab", max_trials=4)
    db = lab / ".nightlab" / "state.db"

    def half_made() -> bool:  # nightlab builds a new store as state.db.new, then renames it
        return any(_half_made(f) for f in (db, db.with_name("state.db.new")))

    def _half_made(db: Path) -> bool:
        if not db.is_file():
            return False
        try:
            conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
            try:
                names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                version = []
                if "alembic_version" in names:
                    version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return False
        return "runs" in names and version != [(HEAD_REVISION,)]

    for _ in range(5):  # the window is ~25 ms; polling catches it nearly always at once
        loop = spawn_loop(lab, log=tmp_path / "first.log")
        hit = wait_until(half_made, 30, interval=0, proc=loop)
        sigkill(loop)
        if hit:
            break
        shutil.rmtree(lab / ".nightlab")
    # (never caught in 5 tries: the last loop was killed early all the same; resume from it)
    code, out = finish(lab, log=tmp_path / "again.log")
    assert code == 0, out[-2000:]
    assert "Traceback" not in out
    assert rows(lab, "SELECT state FROM runs ORDER BY id")[-1] == ("finished",)
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE status='succeeded'") == [(4,)]


def test_a_kill_between_a_trial_row_and_its_folder(tmp_path):
    """A slow `git worktree` (a slow disk) holds the loop between the trial's row and its
    folder; it is killed there, as a reboot would (its git child too)."""
    lab = fault_lab(tmp_path / "lab", max_trials=4)
    slow = tmp_path / "slow-git"
    slow.mkdir()
    (slow / "git").write_text(
        f'#!/bin/sh\n[ "$1" = worktree ] && sleep 5\nexec {shutil.which("git")} "$@"\n'
    )
    (slow / "git").chmod(0o755)
    env = {"PATH": f"{slow}{os.pathsep}{os.environ['PATH']}"}
    loop = spawn_loop(lab, log=tmp_path / "slow.log", env=env)
    created = wait_until(lambda: try_rows(lab, "SELECT id FROM trials"), 30, proc=loop)
    sigkill(loop, group=True)
    if created != [(1,)] or (lab / ".nightlab" / "trials" / "1").exists():
        pytest.fail(f"not the moment we wanted: {(tmp_path / 'slow.log').read_text()}")

    code, out = finish(lab, log=tmp_path / "again.log")
    try:
        assert code == 0, out[-2000:]
        assert "Traceback" not in out
        (first,) = rows(lab, "SELECT status, reason FROM trials WHERE id=1")
        assert first[0] == "killed" and first[1].startswith("interrupted")
        assert_store_intact(lab)
        assert_trials_recorded_once(lab)  # result.json of every trial, the first one too
        assert rows(lab, "SELECT state FROM runs ORDER BY id")[-1] == ("finished",)
    finally:
        reap(lab_processes(lab))


# The loop as a user runs it, with one change: writing trial 4's folder (result.json) first
# reads a FIFO, so the loop blocks right after the store committed trial 4's outcome.
TRAPPED_LOOP = """
import os, sys
from pathlib import Path
from nightlab.store import folder
real = folder.finish
def finish(trial_dir, result, history):
    if Path(trial_dir).name == "4":
        Path(os.environ["NIGHTLAB_TEST_TRAP"]).read_text()
    real(trial_dir, result, history)
folder.finish = finish
from nightlab.__main__ import main
sys.argv = ["nightlab", *sys.argv[1:]]
main()
"""


def test_a_kill_after_a_trial_is_recorded_but_before_its_result_json(tmp_path):
    """The loop is killed after it committed trial 4's outcome and before it wrote its
    result.json (test_random_sigkill.py hit this moment by chance: a trial folder left
    without result.json): the next loop writes it from the store."""
    lab = fault_lab(tmp_path / "lab", max_trials=5)
    trial4 = lab / ".nightlab" / "trials" / "4"
    trap = tmp_path / "trap"
    os.mkfifo(trap)
    with open(tmp_path / "first.log", "ab") as log:
        loop = subprocess.Popen(
            [sys.executable, "-c", TRAPPED_LOOP, "run", str(lab), "--max-trials", "4"],
            env={**os.environ, "NIGHTLAB_PLAIN": "1", "NIGHTLAB_TEST_TRAP": str(trap)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    recorded = wait_until(
        lambda: try_rows(lab, "SELECT 1 FROM events WHERE kind='trial_finished' AND trial_id=4"),
        30,
        proc=loop,
    )
    time.sleep(0.3)
    blocked = loop.poll() is None
    sigkill(loop)
    if not (
        recorded
        and blocked
        and rows(lab, "SELECT status FROM trials WHERE id=4") == [("succeeded",)]
        and not (trial4 / "result.json").exists()
    ):
        pytest.fail(f"not the moment we wanted: {(tmp_path / 'first.log').read_text()}")

    code, out = finish(lab, log=tmp_path / "again.log")
    assert code == 0, out[-2000:]
    assert_store_intact(lab)
    assert rows(lab, "SELECT COUNT(*) FROM trials") == [(5,)]
    result = trial4 / "result.json"
    assert result.is_file(), "trial 4's result.json was never written"
    assert json.loads(result.read_text())["status"] == "succeeded"


@pytest.mark.parametrize("lock", [".nightlab/index.snapshot.lock", ".git/worktrees/t1/index.lock"])
def test_a_group_kill_while_git_holds_a_lock(tmp_path, lock):
    """With many files in the lab, git takes a while to snapshot it (nightlab's private
    index, at the first start) and to check out the spare worktree t1 (prepared in the
    background while trial 1 runs); the loop and its git child are killed while git holds
    the lock."""
    lab = fault_lab(tmp_path / "lab", max_trials=4)
    data = lab / "notes"
    data.mkdir()
    for i in range(3000):
        (data / f"n{i}.txt").write_text(f"note {i}\n" * 20)
    held = lab / lock
    for _ in range(5):
        loop = spawn_loop(lab, log=tmp_path / "first.log")
        hit = wait_until(held.exists, 60, interval=0, proc=loop)
        sigkill(loop, group=True)
        if hit and held.exists():
            break
    else:  # never caught git at it: leave the lock a killed git leaves (an empty file)
        if held.parent.is_dir():
            held.touch()
    code, out = finish(lab, log=tmp_path / "again.log")
    assert code == 0, out[-2000:]
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE status='succeeded'") == [(4,)]
