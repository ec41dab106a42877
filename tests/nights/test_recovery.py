"""Resuming after a crash: nothing of someone else's is touched, nothing is done twice."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from nightlab import Lab

from conftest import execute, rows

pytestmark = pytest.mark.slow


def test_a_reused_pid_is_never_signalled_and_the_trial_is_settled_from_its_folder(make_lab):
    lab = make_lab(max_trials=4)
    Lab(lab).run(report=lambda line: None)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        long_ago = time.time() - 7200  # far beyond the budget: a live trial would be killed
        execute(
            lab,
            "UPDATE trials SET status='running', verdict=NULL, pid=?, pid_started_at=?, "
            "started_at=? WHERE id=4",
            stranger.pid,
            long_ago,
            long_ago,
        )
        execute(lab, "UPDATE runs SET state='running'")
        final = Lab(lab).run(max_trials=5, report=lambda line: None)
        assert psutil.Process(stranger.pid).status() != psutil.STATUS_ZOMBIE
        (row,) = rows(lab, "SELECT status, objective, wall_s FROM trials WHERE id=4")
        assert row[0] == "succeeded" and row[1] is not None  # its exit_code file says 0
        assert final["trials"]["total"] == 5 and final["trials"]["running"] == 0
    finally:
        stranger.kill()
        stranger.wait()


def test_a_replay_file_spelled_another_way_does_not_replay_twice(make_lab):
    decisions = [
        {"action": "run", "rationale": "first replayed decision", "params": {"boost": 0.1}},
        {"action": "run", "rationale": "second replayed decision", "params": {"boost": 0.2}},
    ]
    lab = make_lab(decisions=decisions, max_trials=4)
    Lab(lab).run(report=lambda line: None)
    Lab(lab).run(
        max_trials=10, worker=f"replay:{lab / 'decisions.jsonl'}", report=lambda line: None
    )
    rationales = [
        r[0]
        for r in rows(
            lab,
            "SELECT json_extract(body, '$.rationale') FROM decisions WHERE worker LIKE 'replay:%'",
        )
    ]
    assert rationales.count("first replayed decision") == 1
    assert rationales.count("second replayed decision") == 1
