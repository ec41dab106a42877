"""Finish-up: scheduled or forced by a limit, it stops exploring, confirms the top candidates
on new seeds, computes the held-out test metric once for the final pick, writes the report
and ends the night; `--show`, `--cancel` and `--report-now` behave. A loop killed during
finish-up (while the test run is in flight, or after it ended) never runs a second one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.lab.errors import LabError

from conftest import cli, git, rows, spawn_loop, status, try_rows, wait_for, wait_until

# score = 1 + boost + seed noise; the test split is read only when NIGHTLAB_TEST is set (each
# read is logged in the trial's artifacts), and a `leak` parameter prints it anyway. The test
# run alone sleeps TEST_RUN_SLEEP seconds (0 unless a test sets it): time to kill its loop.
TRAIN = """
import json, os, time
from pathlib import Path
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
time.sleep(p.get("sleep", 0.0))
if os.environ.get("NIGHTLAB_TEST"):
    time.sleep(float(os.environ.get("TEST_RUN_SLEEP", "0")))
score = 1.0 + p.get("boost", 0.0) + 0.01 * ((seed * 7) % 3 - 1)
print(f"score={score}")
if os.environ.get("NIGHTLAB_TEST") or p.get("leak"):
    (Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "test_read").write_text("")
    print(f"test_score={score - 0.1}")
"""


def lab_with_test_metric(make_lab, decisions: list[dict], **kw) -> Path:
    lab = make_lab(decisions=decisions, **kw)
    (lab / "train.py").write_text(TRAIN)
    toml = lab / "nightlab.toml"
    text = toml.read_text().replace(
        'direction = "maximize"', 'direction = "maximize"\ntest_metric = "test_score"'
    )
    toml.write_text(text + "\n[search.leak]\nchoices = [false, true]\ndefault = false\n")
    git(lab, "add", "-A")
    return lab


def probe(i: int, boost: float, **params) -> dict:
    return {
        "action": "run",
        "rationale": f"probe {i}: boost {boost} maps the response",
        "dimension": "optimization",
        "params": {"boost": boost, **params},
    }


def test_a_limit_with_finishup_pending_confirms_tests_and_reports(make_lab):
    decisions = [probe(1, 0.5), probe(2, 0.2), probe(3, 0.9), probe(4, 0.3, leak=True)]
    lab = lab_with_test_metric(make_lab, decisions, max_trials=7)
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=2, top_k=2, note="t")
    final = Lab(lab).run(report=lambda line: None)

    assert final["end_reason"] == "finish-up complete"
    phases = [json.loads(d)["phase"] for (d,) in rows(
        lab, "SELECT data FROM events WHERE kind='finishup_phase' ORDER BY id")]  # fmt: skip
    assert phases == ["active", "confirming", "reporting", "done"]
    # top 2 by objective: boost 0.9 and boost 0.5; two new seeds each
    confirm = rows(lab, "SELECT params, seed, [commit] FROM trials WHERE kind='confirm'")
    boosts = sorted(json.loads(p)["boost"] for p, _, _ in confirm)
    assert boosts == [0.5, 0.5, 0.9, 0.9] and all(seed >= 1000 for _, seed, _ in confirm)
    # the test split: read once by the test run of the final pick, and by the leaky trial
    # (whose printed test_score was dropped: selection saw validation only)
    (pick,) = rows(lab, "SELECT id FROM trials WHERE kind='trial' AND params LIKE '%0.9%'")
    (leaky,) = rows(lab, "SELECT id FROM trials WHERE kind='trial' AND params LIKE '%true%'")
    (test_run,) = rows(lab, "SELECT id FROM trials WHERE kind='test'")
    marks = (lab / ".nightlab" / "trials").glob("*/out/artifacts/test_read")
    assert sorted(int(p.parts[-4]) for p in marks) == [leaky[0], test_run[0]]
    metrics = rows(lab, f"SELECT metrics FROM trials WHERE id={leaky[0]}")[0][0]
    assert "test_score" not in json.loads(metrics)
    (event,) = rows(lab, "SELECT data FROM events WHERE kind='test_metric'")
    assert json.loads(event[0]) == {
        "trial": pick[0], "metric": "test_score", "value": pytest.approx(1.8, abs=0.02),
        "test_trial": test_run[0],
    }  # fmt: skip
    assert rows(lab, "SELECT count(*) FROM events WHERE kind='test_metric_ignored'") == [(1,)]
    # max_trials counts exploration only; the leaderboard has no test row
    assert final["trials"]["total"] == 7 + 4 + 1
    assert all(r["kind"] != "test" for r in Lab(lab).leaderboard(None))
    mirror = json.loads((lab / ".nightlab" / "FINISH_UP.json").read_text())
    assert mirror["phase"] == "done" and mirror["note"] == "t"
    (folder,) = (lab / ".nightlab" / "reports").iterdir()
    assert "test_score = **1.79" in (folder / "final_paper_report.md").read_text()
    assert "finished: finish-up complete" in (folder / "final_condensed_story.md").read_text()


def test_a_scheduled_window_stops_exploring_in_time(make_lab):
    """Trials take ~0.3 s; the window opens at once and lasts 6 s: exploration goes on while
    a trial and the confirmations still fit, then the confirmations, then the report."""
    decisions = [probe(i, i / 1000, sleep=0.3) for i in range(1, 200)]
    lab = lab_with_test_metric(make_lab, decisions, max_trials=500)
    Lab(lab).finish_up(in_minutes=0, minutes_left=0.1, final_rounds=1, top_k=2)
    started = time.time()
    final = Lab(lab).run(report=lambda line: None)
    took = time.time() - started
    assert final["end_reason"] == "finish-up complete"
    assert took < 12, took  # the 6 s window plus the baseline, the test run and the report
    (confirming,) = rows(lab, "SELECT ts FROM events WHERE kind='finishup_phase' "
                              "AND json_extract(data, '$.phase') = 'confirming'")  # fmt: skip
    late = rows(lab, f"SELECT id FROM trials WHERE kind='trial' AND started_at > {confirming[0]}")
    assert late == []  # no exploration after the confirmations began
    assert len(rows(lab, "SELECT id FROM trials WHERE kind='trial'")) >= 3
    # nothing beat the noise: only the baseline can be the pick, and it gets its round
    assert len(rows(lab, "SELECT id FROM trials WHERE kind='confirm'")) >= 1


def test_show_cancel_and_report_now_from_the_command_line(make_lab):
    lab = make_lab(max_trials=5)
    shown = cli("finishup", str(lab), "--at", "2099-01-01T00:00:00Z", "--top-k", "4")
    assert "finish-up scheduled: begins in" in shown.stdout and "top 4" in shown.stdout
    assert "begins in" in cli("finishup", str(lab), "--show").stdout  # in local time, h/min
    mirrored = json.loads((lab / ".nightlab" / "FINISH_UP.json").read_text())
    assert mirrored["top_k"] == 4 and mirrored["begins_at_utc"] == "2099-01-01T00:00:00Z"
    assert "finish-up cancelled" in cli("finishup", str(lab), "--cancel").stdout
    again = cli("finishup", str(lab), "--cancel", check=False)
    assert again.returncode == 2 and "no finish-up to cancel" in again.stderr

    final = Lab(lab).run(report=lambda line: None)  # the cancelled request does nothing
    assert final["end_reason"] == "max_trials=5 reached"
    assert rows(lab, "SELECT count(*) FROM trials WHERE kind IN ('confirm', 'test')") == [(0,)]

    now = cli("finishup", str(lab), "--report-now")
    assert "finish-up done (report now, no final training)" in now.stdout
    (folder,) = (lab / ".nightlab" / "reports").iterdir()
    assert f"report: {folder}/final_paper_report.md" in now.stdout
    assert (folder / "report.html").is_file()
    assert rows(lab, "SELECT count(*) FROM trials WHERE kind IN ('confirm', 'test')") == [(0,)]

    for bad, message in [
        (["--at", "tomorrow"], "is not an ISO 8601 time"),
        (["--at", "2099-01-01T00:00:00Z", "--in-minutes", "5"], "give one of --at, --in-min"),
        ([], "say when: --minutes-left M"),
    ]:
        out = cli("finishup", str(lab), *bad, check=False)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_the_report_is_written_when_a_night_ends(make_lab):
    lab = make_lab(max_trials=4)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("auto = false", "auto = true\ntop_k = 3"))
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    (folder,) = (lab / ".nightlab" / "reports").iterdir()
    assert (folder / "final_leaderboard_top3.json").is_file()
    assert any(line.startswith("report: ") for line in lines)
    assert "max_trials=4 reached" in (folder / "final_condensed_story.md").read_text()


def test_a_running_loop_takes_a_request_within_a_heartbeat(make_lab):
    lab = lab_with_test_metric(
        make_lab, [probe(i, i / 1000, sleep=0.2) for i in range(1, 300)], max_trials=500
    )
    cli("start", str(lab))
    wait_for(lambda: status(lab)["trials"]["total"] >= 5, what="five trials")
    out = cli("finishup", str(lab), "--minutes-left", "0.1", "--final-rounds", "1",
              "--top-k", "1")  # fmt: skip
    assert "finish-up scheduled: began" in out.stdout
    final = wait_for(lambda: (s := status(lab))["state"] != "running" and s, timeout=30)
    assert final["state"] == "finished" and final["end_reason"] == "finish-up complete"
    kinds = [k for (k,) in rows(lab, "SELECT kind FROM trials ORDER BY id")]
    assert kinds[-2:] == ["confirm", "test"] and "trial" not in kinds[kinds.index("confirm") :]


def budget_keys(lab, keys: str) -> None:
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("[budget]\n", f"[budget]\n{keys}\n"))


def test_a_night_set_up_in_nightlab_toml_alone_finishes_up(make_lab):
    """[budget] finishup_minutes, final_rounds and confirm_top: the SPEC's budget keys. A
    night configured in nightlab.toml alone never finished up (only flags could ask)."""
    lab = make_lab(max_trials=3)
    budget_keys(lab, "hours = 2\nfinishup_minutes = 30\nfinal_rounds = 2\nconfirm_top = 4")
    Lab(lab).run(report=lambda line: None)
    wanted = Lab(lab).finish_up_show()
    assert (wanted["run_hours"], wanted["minutes_left"]) == (2, 30)
    assert (wanted["final_rounds"], wanted["top_k"]) == (2, 4)
    # `finishup` without --final-rounds / --confirm-top takes them too; a flag wins
    Lab(lab).finish_up(minutes_left=10)
    assert (Lab(lab).finish_up_show()["final_rounds"], Lab(lab).finish_up_show()["top_k"]) == (2, 4)
    Lab(lab).finish_up(minutes_left=10, final_rounds=0, top_k=1)
    assert (Lab(lab).finish_up_show()["final_rounds"], Lab(lab).finish_up_show()["top_k"]) == (0, 1)


def test_finishup_minutes_without_the_nights_length_is_refused_naming_both(make_lab):
    lab = make_lab(max_trials=3)
    budget_keys(lab, "finishup_minutes = 30")
    with pytest.raises(LabError, match=r"\[budget\] finishup_minutes\) needs the night's length"):
        Lab(lab).run(report=lambda line: None)
    assert Lab(lab).run(report=lambda line: None, hours=1)["state"] == "finished"


@pytest.mark.parametrize("keys", ["finishup_minutes = 0", "finishup_minutes = nan",
                                  "final_rounds = -1", "confirm_top = 0", "confirm_top = 2.5",
                                  'final_rounds = "two"'])  # fmt: skip
def test_hostile_finish_up_budget_keys_fail_at_load(make_lab, keys):
    from nightlab.config import ConfigError, load_config

    lab = make_lab()
    budget_keys(lab, keys)
    with pytest.raises(ConfigError, match=keys.split(" = ")[0]):
        load_config(lab)


# ------------------------------------------------------- a loop killed during finish-up
def night_at_finishup(make_lab) -> Path:
    """Baseline (3) and one probe that is kept, then finish-up: one confirmation run of
    the pick, then its test run."""
    lab = lab_with_test_metric(make_lab, [probe(1, 0.5)], max_trials=4)
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=1, top_k=1)
    return lab


def resume(lab: Path, log: Path) -> str:
    """The restarted loop (`nightlab run`), to its end; its output."""
    loop = spawn_loop(lab, log=log)
    assert loop.wait(timeout=120) == 0, log.read_text()[-2000:]
    return log.read_text()


def assert_tested_once(lab: Path) -> tuple:
    """The night ended `finish-up complete` after a crash, with exactly one test run (its
    id, status, reason); its report written."""
    assert [s for (s,) in rows(lab, "SELECT state FROM runs ORDER BY id")] == [
        "crashed", "finished"]  # fmt: skip
    assert status(lab)["end_reason"] == "finish-up complete"
    (test,) = rows(lab, "SELECT id, status, reason FROM trials WHERE kind='test'")
    assert rows(lab, "SELECT count(*) FROM trials WHERE status='running'") == [(0,)]
    marks = (lab / ".nightlab" / "trials").glob("*/out/artifacts/test_read")
    read = [int(p.parts[-4]) for p in marks]
    assert read in ([test[0]], [])  # the test data: read by that run alone (unless it died first)
    result = lab / ".nightlab" / "trials" / str(test[0]) / "result.json"
    assert json.loads(result.read_text())["status"] == test[1]
    return test


def paper(lab: Path) -> str:
    (folder,) = (lab / ".nightlab" / "reports").iterdir()
    return (folder / "final_paper_report.md").read_text()


@pytest.mark.parametrize("trial_survives", [True, False], ids=["reattached", "lost"])
def test_a_loop_killed_while_the_test_run_is_in_flight_never_tests_again(
    make_lab, tmp_path, trial_survives
):
    """SIGKILL of the loop while the test run sleeps. A test run that outlives its loop is
    watched to its end by the next one and its figure recorded; one lost with its loop is
    recorded as interrupted, and the report says why the held-out figure is missing."""
    lab = night_at_finishup(make_lab)
    sleep = "2" if trial_survives else "60"
    loop = spawn_loop(lab, log=tmp_path / "first.log", env={"TEST_RUN_SLEEP": sleep})
    running = "SELECT id, pid FROM trials WHERE kind='test' AND status='running' AND pid > 0"
    found = wait_until(lambda: try_rows(lab, running), 60, proc=loop)
    assert found, (tmp_path / "first.log").read_text()[-2000:]
    (test_id, pid), *_ = found
    time.sleep(0.2)
    os.killpg(loop.pid, signal.SIGKILL)  # the loop and its git children; the trial has its own
    loop.wait()
    if not trial_survives:
        os.killpg(pid, signal.SIGKILL)  # the machine lost the test run as well

    out = resume(lab, tmp_path / "again.log")
    test = assert_tested_once(lab)
    assert test[0] == test_id
    figures = [json.loads(d) for (d,) in rows(
        lab, "SELECT data FROM events WHERE kind='test_metric'")]  # fmt: skip
    if trial_survives:
        assert f"trial {test_id} still running" in out
        assert test[1] == "succeeded"
        assert [f["test_trial"] for f in figures] == [test_id]
        assert "**Held-out test**: test_score = **" in paper(lab)
    else:
        assert test[1] == "killed" and test[2].startswith("interrupted")
        assert figures == []
        (missing,) = [json.loads(d) for (d,) in rows(
            lab, "SELECT data FROM events WHERE kind='test_metric_missing'")]  # fmt: skip
        assert "interrupted" in missing["reason"] and "not run again" in missing["reason"]
        summary = paper(lab)
        assert "**Held-out test**: no test_score figure" in summary
        assert f"the test run (trial {test_id}) was interrupted" in summary


# The loop as a user runs it, with one change: writing the test run's result.json first reads
# a FIFO, so the loop blocks right after the store recorded the test run and its figure.
TRAPPED_LOOP = """
import os, sys
from pathlib import Path
from nightlab.store import folder
real = folder.finish
def finish(trial_dir, result, history):
    if result.get("kind") == "test":
        Path(os.environ["NIGHTLAB_TEST_TRAP"]).read_text()
    real(trial_dir, result, history)
folder.finish = finish
from nightlab.__main__ import main
sys.argv = ["nightlab", *sys.argv[1:]]
main()
"""


def test_a_loop_killed_after_the_test_run_ended_does_not_test_again(make_lab, tmp_path):
    lab = night_at_finishup(make_lab)
    trap = tmp_path / "trap"
    os.mkfifo(trap)
    with open(tmp_path / "first.log", "ab") as log:
        loop = subprocess.Popen(
            [sys.executable, "-c", TRAPPED_LOOP, "run", str(lab)],
            env={**os.environ, "NIGHTLAB_PLAIN": "1", "NIGHTLAB_TEST_TRAP": str(trap)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    figure = "SELECT trial_id FROM events WHERE kind='test_metric'"
    recorded = wait_until(lambda: try_rows(lab, figure), 60, proc=loop)
    time.sleep(0.2)
    blocked = loop.poll() is None
    os.killpg(loop.pid, signal.SIGKILL)
    loop.wait()
    assert recorded and blocked, (tmp_path / "first.log").read_text()[-2000:]
    (test_id,) = rows(lab, "SELECT id FROM trials WHERE kind='test'")[0]

    resume(lab, tmp_path / "again.log")
    assert assert_tested_once(lab)[:2] == (test_id, "succeeded")
    assert len(rows(lab, figure)) == 1
    assert "**Held-out test**: test_score = **" in paper(lab)
