"""`nightlab extend`: a running night gets more hours; the loop takes the new deadline at its
next heartbeat, records it and keeps running past the old one. Hostile hours and a night
that is not running are refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nightlab import Lab

from conftest import cli, rows, spawn_loop, status, wait_for

pytestmark = pytest.mark.slow

SHORT_H = 0.003  # 10.8 s


def _run(lab: Path) -> dict:
    got = rows(lab, "SELECT * FROM runs ORDER BY id DESC LIMIT 1")[0]
    return dict(got)


def _extended(lab: Path) -> list[dict]:
    found = rows(lab, "SELECT data FROM events WHERE kind='hours_extended' ORDER BY id")
    return [json.loads(r[0]) for r in found]


def _finish(loop, lab: Path, timeout: float = 90) -> None:
    try:
        wait_for(lambda: status(lab)["state"] != "running", timeout, "the night to end")
    finally:
        if loop.poll() is None:
            loop.kill()
        loop.wait(10)


def test_an_extended_night_runs_past_its_old_deadline(make_lab, tmp_path):
    lab = make_lab(max_trials=10_000)
    log = tmp_path / "loop.log"
    loop = spawn_loop(lab, "--run-hours", str(SHORT_H), log=log, env={"TEST_TRIAL_SLEEP": "0.3"})
    try:
        wait_for(lambda: status(lab)["state"] == "running", 60, "the loop to start")
        old = _run(lab)["deadline_at"]
        out = cli("extend", str(lab), "--hours", str(SHORT_H)).stdout
        assert "the night now ends" in out and f"+{SHORT_H:g} h" in out
        new = _run(lab)["deadline_at"]
        assert new == pytest.approx(old + SHORT_H * 3600)
        [event] = _extended(lab)
        assert event["old_deadline"] == pytest.approx(old)
        assert event["new_deadline"] == pytest.approx(new)
        assert event["hours"] == SHORT_H
        wait_for(lambda: time.time() > old + 3, 30, "the old deadline to pass")
        assert status(lab)["state"] == "running"  # the old deadline did not end it
    finally:
        _finish(loop, lab)
    run = _run(lab)
    assert run["end_reason"] == "time budget reached"
    assert run["ended_at"] >= new
    assert "hours extended: the night now ends" in log.read_text()


def test_a_night_without_a_limit_gets_one(make_lab, tmp_path):
    lab = make_lab(max_trials=10_000)
    log = tmp_path / "loop.log"
    loop = spawn_loop(lab, log=log, env={"TEST_TRIAL_SLEEP": "0.3"})
    try:
        wait_for(lambda: status(lab)["state"] == "running", 60, "the loop to start")
        assert _run(lab)["deadline_at"] is None
        before = time.time()
        out = cli("extend", str(lab), "--hours", str(SHORT_H)).stdout
        assert "no time limit" in out
        [event] = _extended(lab)
        assert event["old_deadline"] is None
        assert event["new_deadline"] >= before + SHORT_H * 3600
    finally:
        _finish(loop, lab)  # the loop took the deadline: the time budget ends it
    assert _run(lab)["end_reason"] == "time budget reached"
    assert "hours extended" in log.read_text() and "(no time limit)" in log.read_text()


@pytest.mark.parametrize("hours", ["-1", "0", "nan", "inf", "-inf", "1e9", "abc"])
def test_hostile_hours_are_refused(make_lab, hours):
    lab = make_lab()
    got = cli("extend", str(lab), f"--hours={hours}", check=False)
    assert got.returncode != 0
    text = got.stderr + got.stdout
    assert "hours" in text.lower() and "Traceback" not in text


def test_a_night_that_is_not_running_is_refused(make_lab):
    lab = make_lab()
    got = cli("extend", str(lab), "--hours", "1", check=False)
    assert got.returncode != 0 and "not running (state: new)" in got.stderr
    cli("run", str(lab), "--max-trials", "1")
    got = cli("extend", str(lab), "--hours", "1", check=False)
    assert got.returncode != 0 and "not running (state: finished)" in got.stderr
    assert _extended(lab) == []


def test_a_finish_up_at_the_end_of_the_night_moves_with_it(make_lab):
    lab = make_lab(max_trials=10_000)
    loop = spawn_loop(lab, "--run-hours", "1", "--finishup-minutes", "10",
                      env={"TEST_TRIAL_SLEEP": "0.3"})  # fmt: skip
    try:
        wait_for(lambda: status(lab)["state"] == "running", 60, "the loop to start")
        before = Lab(lab).finish_up_show()
        out = cli("extend", str(lab), "--hours", "0.5").stdout
        assert "the finish-up moves with it" in out
        after = Lab(lab).finish_up_show()
        assert after["run_hours"] == 1.5 and after["ends_at"] == pytest.approx(
            before["ends_at"] + 1800
        )
        assert after["ends_at"] == pytest.approx(_run(lab)["deadline_at"], abs=5)
    finally:
        cli("stop", str(lab), "--now", check=False)
        loop.wait(60)
