"""Trials that crash, hang, overrun their budget, diverge, ignore SIGTERM, leave children
behind or eat memory, all in one night: each is recorded with the right status and reason
and the night carries on to the next trial.

tests/nights/test_night.py already checks hang, nan, crash and silent one night each (with nothing
after them), the budget kill, and `mode=orphan` (whose child, `sleep 300
nightlab-test-orphan`, is rejected by GNU sleep at once: that check never sees a live
child). Here: all of them in one night with a good trial after the faults, plus a trial
that ignores SIGTERM, children that really live (in the trial's process group and outside
it), `[trial] max_rss_mb`, and a metrics line that nightlab cannot read.
"""

from __future__ import annotations

import json

import pytest
from helpers import (
    CHILD_MARK,
    assert_store_intact,
    assert_trials_recorded_once,
    cmdline,
    fault_lab,
    lab_processes,
    reap,
)

from nightlab import Lab

from conftest import rows, spawn_loop

pytestmark = pytest.mark.slow

HANG_S, BUDGET_S, MAX_RSS_MB = 1, 4, 200


def run(mode: str, why: str, **params) -> dict:
    return {"action": "run", "rationale": f"{why} ({mode})", "params": {"mode": mode, **params}}


NIGHT = [  # (decision, status, reason) of each trial after the baseline
    (run("crash", "a trial that crashes at once"), "failed", "exit status 1"),
    (run("ok", "a good trial right after a crash", boost=0.5), "succeeded", None),
    (run("hang", "a trial that goes silent"), "killed",
     f"hang: no output for hang_seconds={HANG_S}"),
    (run("chatty", "a trial that never ends but keeps talking"), "timeout",
     f"budget: exceeded budget_seconds={BUDGET_S}"),
    (run("nan", "a trial whose objective diverges"), "killed", "diverged: score=nan"),
    (run("stubborn", "a trial that ignores SIGTERM and goes silent"), "killed",
     f"hang: no output for hang_seconds={HANG_S}"),
    (run("graceful", "a trial that saves a checkpoint on SIGTERM"), "killed",
     f"hang: no output for hang_seconds={HANG_S}"),
    (run("leaver", "a trial that leaves a child in its group"), "succeeded", None),
    (run("escape", "a trial that leaves a daemon outside its group"), "succeeded", None),
    (run("alloc", "a trial that holds 300 MB of memory"), "killed",
     f"exceeded max_rss_mb={MAX_RSS_MB}"),
    (run("silent", "a trial that never reports its metric"), "failed", "never reported 'score'"),
    (run("ok", "a good trial after all the faults", boost=1.0), "succeeded", None),
]  # fmt: skip


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One night through every fault (~10 s): the lab, the final status, the rows of the
    trials after the baseline (in order) and the processes left behind, by mode."""
    lab = fault_lab(
        tmp_path_factory.mktemp("faults") / "lab",
        decisions=[d for d, _, _ in NIGHT],
        max_trials=30,
        budget=BUDGET_S,
        trial_extra=f"hang_seconds = {HANG_S}\nmax_rss_mb = {MAX_RSS_MB}",
    )
    try:
        final = Lab(lab).run(report=lambda line: None)
        trials = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
        left = {mode: [p for p in lab_processes(lab) if mode in cmdline(p)] for mode in
                ("leaver", "escape")}  # fmt: skip
        yield lab, final, trials, left
    finally:
        reap(lab_processes(lab))


def test_each_fault_is_recorded_and_the_night_carries_on(night):
    lab, final, trials, _ = night
    assert final["state"] == "finished", final
    assert final["end_reason"] == f"the worker stopped the night: all {len(NIGHT)} replayed"
    assert len(trials) == len(NIGHT)
    for t, (decision, status, reason) in zip(trials, NIGHT, strict=True):
        what = decision["rationale"]
        assert t["status"] == status, (what, t["status"], t["reason"])
        if reason is None:
            assert t["reason"] is None and t["objective"] is not None, what
        else:
            assert reason in (t["reason"] or ""), (what, t["reason"])
            assert t["objective"] is None and t["verdict"] == "discarded", what
            tail = "tick" if "chatty" in what else "starting"
            assert tail in (t["log_tail"] or ""), what  # the log tail is kept
    by_mode = {json.loads(t["params"])["mode"]: t for t in trials}
    assert "boom: the trial crashed on purpose" in by_mode["crash"]["log_tail"]
    # the good trials after the faults were judged and kept: the night went on normally
    good = [t for t in trials if t["status"] == "succeeded" and t["verdict"] == "kept"]
    assert [json.loads(t["params"])["boost"] for t in good] == [0.5, 1.0]
    assert final["best"]["trial"] == trials[-1]["id"]
    assert final["trials"]["running"] == 0
    assert_store_intact(lab)
    assert_trials_recorded_once(lab)


def test_kills_take_as_long_as_they_should(night):
    _, _, trials, _ = night
    wall = {json.loads(t["params"])["mode"]: t["wall_s"] for t in trials}
    assert HANG_S <= wall["hang"] < HANG_S + 3
    assert BUDGET_S <= wall["chatty"] < BUDGET_S + 3
    assert wall["nan"] < 3
    assert wall["stubborn"] < HANG_S + 7  # SIGTERM ignored: SIGKILL after the grace at most


def test_a_killed_trial_gets_its_grace_period(night):
    _, _, trials, _ = night
    by_mode = {json.loads(t["params"])["mode"]: t for t in trials}
    assert "saved a checkpoint on SIGTERM" in by_mode["graceful"]["log_tail"]
    assert by_mode["stubborn"]["wall_s"] >= HANG_S + 2.5  # SIGKILL only after the grace


def test_memory_is_measured_and_the_limit_enforced(night):
    _, _, trials, _ = night
    by_mode = {json.loads(t["params"])["mode"]: t for t in trials}
    hog = by_mode["alloc"]
    assert hog["peak_rss_mb"] and hog["peak_rss_mb"] > MAX_RSS_MB, hog["peak_rss_mb"]
    assert f"MB exceeded max_rss_mb={MAX_RSS_MB}" in hog["reason"]
    assert hog["reason"].startswith("memory: ")
    assert (by_mode["ok"]["peak_rss_mb"] or 0) < MAX_RSS_MB  # None: ended before a sample


def test_no_trial_process_is_left_running(night):
    lab, _, _, left = night
    assert left["leaver"] == []  # the child left in the trial's process group was killed
    stragglers = [p for p in lab_processes(lab) if "escape" not in cmdline(p)]
    assert stragglers == []


def test_a_child_that_left_the_trials_process_group_is_reaped(night):
    _, _, _, left = night
    assert left["escape"] == [], f"{CHILD_MARK} escaped: {left['escape']}"


def test_a_metrics_line_nightlab_cannot_read_does_not_take_the_night_down(tmp_path):
    decisions = [
        run("bigstep", "a trial logging step=10**400 through nightlab.log's JSON lines"),
        run("ok", "a good trial after it", boost=0.5),
    ]
    lab = fault_lab(tmp_path / "lab", decisions=decisions, max_trials=10)
    loop = spawn_loop(lab, log=tmp_path / "loop.log")
    try:
        code = loop.wait(timeout=120)
    finally:
        reap(lab_processes(lab))
    out = (tmp_path / "loop.log").read_text()
    assert code == 0 and "Traceback" not in out, out[-3000:]
    statuses = rows(lab, "SELECT status FROM trials WHERE kind='trial' ORDER BY id")
    assert statuses == [("succeeded",), ("succeeded",)]  # its printed score still counts
