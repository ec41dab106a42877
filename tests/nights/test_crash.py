"""A loop killed with SIGKILL at any moment resumes without losing or doubling anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NIGHTLAB, cli, rows, status, try_rows, wait_for

pytestmark = pytest.mark.slow


def spawn(lab: Path, *args: str, sleep: float = 0.5) -> subprocess.Popen:
    env = {**os.environ, "NIGHTLAB_PLAIN": "1", "TEST_TRIAL_SLEEP": str(sleep)}
    return subprocess.Popen(
        [*NIGHTLAB, "run", str(lab), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def running_trials(lab: Path) -> list[tuple]:
    """(id, pid) of the running trials; none while the loop is still making its store."""
    found = try_rows(lab, "SELECT id, pid FROM trials WHERE status='running' AND pid IS NOT NULL")
    return found or []


def assert_nothing_lost(lab: Path, total: int) -> None:
    assert rows(lab, "PRAGMA integrity_check") == [("ok",)]
    ids = [r[0] for r in rows(lab, "SELECT id FROM trials ORDER BY id")]
    assert ids == list(range(1, total + 1))
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE status='running'") == [(0,)]
    for kind in ("trial_created", "trial_finished"):
        counts = dict(
            rows(
                lab, f"SELECT trial_id, COUNT(*) FROM events WHERE kind='{kind}' GROUP BY trial_id"
            )
        )
        assert counts == {i: 1 for i in ids}, kind
    # one cycle per trial, each closed with its storyline line
    assert rows(
        lab,
        "SELECT COUNT(*) FROM cycles c JOIN trials t ON t.cycle_id = c.id "
        "WHERE c.summary LIKE '%trial ' || t.id || ' %'",
    ) == [(total,)]


def test_sigkill_of_the_loop_mid_trial_then_restart(make_lab):
    lab = make_lab(max_trials=9)
    survivors, casualties = [], []
    for round_, kill_trial_too in enumerate([False, True, False]):
        loop = spawn(lab, sleep=5 if kill_trial_too else 0.5)
        # wait until a trial of this run is under way, then kill the loop without warning
        seen = {r[0] for r in running_trials(lab)}
        tid, pid = wait_for(
            lambda seen=seen: [r for r in running_trials(lab) if r[0] not in seen],
            what=f"a running trial in round {round_}",
        )[0]
        time.sleep(0.1)
        loop.send_signal(signal.SIGKILL)
        loop.wait()
        assert status(lab)["state"] == "crashed"
        if kill_trial_too:  # the machine lost the trial as well
            os.killpg(pid, signal.SIGKILL)
            casualties.append(tid)
        else:
            survivors.append(tid)

    final = spawn(lab)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    st = status(lab)
    # trials cut short by the kills run again: they do not count against max_trials
    total = 9 + len(casualties)
    assert st["state"] == "finished" and st["trials"]["total"] == total
    assert_nothing_lost(lab, total)
    statuses = dict(rows(lab, "SELECT id, status FROM trials"))
    reasons = dict(rows(lab, "SELECT id, reason FROM trials"))
    for tid in survivors:  # the trial outlived its loop and was watched to its end
        assert statuses[tid] == "succeeded"
    for tid in casualties:
        assert statuses[tid] == "killed" and reasons[tid].startswith("interrupted")
    reconciled = rows(lab, "SELECT trial_id, data FROM events WHERE kind='reconciled'")
    assert {r[0] for r in reconciled} == set(survivors + casualties)
    runs = rows(lab, "SELECT state FROM runs ORDER BY id")
    assert [r[0] for r in runs] == ["crashed"] * 3 + ["finished"]
    assert st["baseline"]["n"] == 3


def test_start_stop_resume_and_a_second_loop_refused(make_lab):
    lab = make_lab(max_trials=40)
    os.environ["TEST_TRIAL_SLEEP"] = "0.7"
    try:
        out = cli("start", str(lab)).stdout
        pid = status(lab)["pid"]
        assert f"PID {pid}" in out
        wait_for(lambda: status(lab)["trials"]["succeeded"] >= 2, what="two trials")
        second = cli("run", str(lab), check=False)
        assert second.returncode == 2 and f"PID {pid}" in second.stderr
        assert "Traceback" not in second.stderr
        cli("stop", str(lab), "--wait")
    finally:
        os.environ.pop("TEST_TRIAL_SLEEP")
    st = status(lab)
    assert st["state"] == "stopped" and st["trials"]["running"] == 0
    # graceful: the trial running at the stop was allowed to finish
    assert st["trials"]["failed"] == 0
    done = st["trials"]["total"]
    assert done < 40
    again = cli("run", str(lab), "--max-trials", str(done + 2))
    assert again.returncode == 0
    st = status(lab)
    assert st["state"] == "finished" and st["trials"]["total"] == done + 2


def test_stop_now_kills_the_running_trial(make_lab):
    lab = make_lab(max_trials=40)
    os.environ["TEST_TRIAL_SLEEP"] = "30"
    try:
        cli("start", str(lab))
        wait_for(lambda: running_trials(lab), what="a running trial")
        cli("stop", str(lab), "--now", "--wait")
    finally:
        os.environ.pop("TEST_TRIAL_SLEEP")
    st = status(lab)
    assert st["state"] == "stopped"
    (row,) = rows(lab, "SELECT status, reason, wall_s FROM trials")
    assert row[0] == "killed" and "stopped by the user" in row[1] and row[2] < 20
    events = [
        json.loads(r[0]) for r in rows(lab, "SELECT data FROM events WHERE kind='stop_requested'")
    ]
    assert events and events[0]["now"] is True
