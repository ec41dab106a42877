"""A hostile review of `start --slurm` (trials/loop_job.py, loop/loop_job_signals.py), without
a cluster: Slurm's signals reaching the loop job at the worst moments (mid-open, mid-launch,
mid-close, after a stop), a stop the requeue must not lose, a planted link at the job's
script, a setting that would put a line of shell into the batch script.

The loop runs in a child process (a signal left at its default kills it): the child marks
itself a loop job (`loop_job.job`) and `scontrol requeue` is replaced by a file it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightlab.config import load_config
from nightlab.loop.journal import Journal
from nightlab.store.db import Run, Store
from nightlab.trials import loop_job

from conftest import build_lab, rows

DRIVER = r"""
import json, os, signal, sys
from pathlib import Path
from nightlab.config import load_config
from nightlab.loop import loop as loop_mod
from nightlab.trials import sacct

lab, scenario, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
sacct.requeue = lambda job: (out / "requeued").write_text(job) and None
L = loop_mod.Loop(lab, load_config(lab), slots=int(sys.argv[4]), report=lambda line: None)
L.loop_job.job = "42"  # as under `start --slurm`: NIGHTLAB_LOOP_JOB == SLURM_JOB_ID
me, Loop = os.getpid(), loop_mod.Loop

if scenario == "usr1-during-close":  # the night ends on its own as the time limit nears
    def close_run(state, reason):
        os.kill(me, signal.SIGUSR1)
        return Loop._close_run(L, state, reason)
    L._close_run = close_run
elif scenario == "usr2-during-open":  # `stop --now` as the loop opens its run
    def open_(night):
        os.kill(me, signal.SIGUSR2)
        return Loop._open(L, night)
    L._open = open_
elif scenario == "stop-now-then-usr1":  # `stop --now`, then the time-limit warning
    def main():
        L.stop_now = True
        os.kill(me, signal.SIGUSR1)
        return Loop._main(L)
    L._main = main
elif scenario == "usr1-mid-launch":  # the warning comes while the loop fills its slots
    def start(run, worker=None):
        trial = Loop._start(L, run, worker)
        os.kill(me, signal.SIGUSR1)
        return trial
    L._start = start

final = L.run()
(out / "final.json").write_text(json.dumps({"state": final["state"],
                                            "reason": final.get("end_reason")}))
"""


def run_loop(tmp_path: Path, lab: Path, scenario: str, slots: int = 1) -> dict:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(lab), scenario, str(out), str(slots)],
        env={**os.environ, "NIGHTLAB_PLAIN": "1"}, capture_output=True, text=True,
        timeout=300, cwd=lab,
    )  # fmt: skip
    assert proc.returncode == 0, f"the loop died ({proc.returncode}): {proc.stderr[-2000:]}"
    final = json.loads((out / "final.json").read_text())
    final["requeued"] = (out / "requeued").is_file()
    return final


def runs(lab: Path) -> list[tuple[str, str]]:
    return [(r["state"], r["end_reason"]) for r in rows(lab, "SELECT * FROM runs ORDER BY id")]


def test_sigusr1_while_a_finished_night_closes_does_not_kill_or_requeue_it(tmp_path):
    """Near the job's limit the night ends on its own: SIGUSR1 during the close (report,
    MLflow, notices) killed the loop (the handler was already gone: SIGUSR1's default is to
    terminate), leaving the run `running`, then `crashed`, and the job not requeued."""
    lab = build_lab(tmp_path / "lab", max_trials=1, baseline_repeats=1)
    final = run_loop(tmp_path, lab, "usr1-during-close")
    assert final["state"] == "finished" and not final["requeued"]


def test_stop_now_during_the_opening_stops_the_night(tmp_path):
    """`stop --now` (SIGUSR2 through scancel) once the run is `running` but before the
    handlers were installed killed the loop outright: its trials ran on, the run crashed."""
    lab = build_lab(tmp_path / "lab", max_trials=2, baseline_repeats=1)
    final = run_loop(tmp_path, lab, "usr2-during-open")
    assert final["state"] == "stopped" and not final["requeued"]


def test_a_night_stopped_now_is_not_requeued_into_a_new_night(tmp_path):
    """`stop --now` then SIGUSR1 before the loop ended: the night closed `stopped` with the
    requeue's reason, and the job requeued itself; its restart (without --hours) would have
    begun a fresh night the user had stopped."""
    lab = build_lab(tmp_path / "lab", max_trials=2, baseline_repeats=1)
    final = run_loop(tmp_path, lab, "stop-now-then-usr1")
    assert final["state"] == "stopped" and not final["requeued"]
    assert "requeue" not in (final["reason"] or "")


def test_a_detach_heard_mid_launch_starts_no_more_trials(tmp_path):
    """SIGUSR1 while the loop fills free slots: it went on launching (an agent's cycle and an
    sbatch each) until every slot was full, eating the 180 s before the limit."""
    lab = build_lab(tmp_path / "lab", max_trials=6, baseline_repeats=3)
    final = run_loop(tmp_path, lab, "usr1-mid-launch", slots=3)
    assert final["state"] == "requeued" and final["requeued"]
    assert len(rows(lab, "SELECT id FROM trials")) == 1
    time.sleep(0.5)  # the detached trial ends on its own (a local one, here)


def test_a_stop_asked_before_the_requeue_is_honoured_after_it(tmp_path):
    """`nightlab stop` (graceful), then the job is requeued (its running trials keep it from
    stopping at once): the resumed loop opened a fresh run without the stop request and took
    new trials all night; it must inherit the request."""
    store = Store(tmp_path / "state.db")
    store.migrate()
    try:
        journal = Journal(store, tmp_path, "lab", "score")
        first, deadline = journal.open_run(2.0, None, {})
        store.request_stop(first, by=1)
        journal.close_run("requeued", "the loop job nears its time limit", mlflow=False)
        second, resumed = journal.open_run(None, None, {})
        assert resumed == deadline
        with store.tx() as s:
            assert s.get(Run, second).stop_requested
        journal.close_run("stopped", "stop requested", mlflow=False)
        third, _ = journal.open_run(None, None, {})  # a stopped night's next run: no stop
        with store.tx() as s:
            assert not s.get(Run, third).stop_requested
    finally:
        store.close()


def test_a_link_planted_at_the_loop_jobs_script_is_not_written_through(tmp_path, monkeypatch):
    """`submit` wrote `.nightlab/loop_job.sh` with write_text, following a link planted
    there (by a trial or an agent that reached .nightlab/) onto any file of the user's."""
    lab = build_lab(tmp_path / "lab", decisions=[])
    (lab / "nightlab.toml").write_text((lab / "nightlab.toml").read_text()
                                       + '\n[executor]\nkind = "slurm"\n')  # fmt: skip
    state = lab / ".nightlab"
    state.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / loop_job.SCRIPT).symlink_to(victim)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text("#!/bin/sh\necho 77\n")
    (bin_ / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    assert loop_job.submit(load_config(lab), lab, state, []) == "77"
    assert victim.read_text() == "precious\n"
    assert not (state / loop_job.SCRIPT).is_symlink()


@pytest.mark.parametrize("key", ["partition", "account", "qos"])
def test_a_setting_with_a_line_break_cannot_add_a_line_to_the_batch_script(tmp_path, key):
    """shlex.quote keeps a value one shell word, but an `#SBATCH` line is a comment to bash:
    a line break in [executor] partition/account/qos started a new line of shell code."""
    lab = build_lab(tmp_path / "lab", decisions=[])
    value = json.dumps(f"x\ntouch {tmp_path}/PWNED #")  # a TOML basic string, \n escaped
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + f'\n[executor]\nkind = "slurm"\n{key} = {value}\n')
    with pytest.raises(loop_job.LoopJobError, match=key):
        loop_job.script(load_config(lab), lab, lab / ".nightlab", [])


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue: str,
               name: str = "nightlab-loop-tiny") -> None:  # fmt: skip
    """squeue answering `queue` for any job, named `name` (nothing when empty); scancel
    succeeding, its arguments appended to fakebin/scancelled."""
    bin_ = tmp_path / "fakebin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "squeue").write_text(
        f"#!/bin/sh\n[ -n '{queue}' ] && echo '{queue}|{name}'\nexit 0\n"
    )
    (bin_ / "scancel").write_text(f'#!/bin/sh\necho "$@" >> {bin_}/scancelled\nexit 0\n')
    for tool in ("squeue", "scancel"):
        (bin_ / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")


def test_run_or_start_beside_a_queued_loop_job_is_refused(tmp_path, monkeypatch):
    """The night's loop job waits in the queue (first start, or requeued): `nightlab start`
    / `run` on the login node began a second loop of the same night, and the job, once it
    started, a third (or one that fails on the lock, leaving the night `requeued`)."""
    from conftest import cli

    lab = build_lab(tmp_path / "lab", decisions=[])
    (lab / ".nightlab").mkdir()
    (lab / ".nightlab" / loop_job.RECORD).write_text(json.dumps({"job_id": "4242"}))
    fake_slurm(tmp_path, monkeypatch, "PENDING")
    for command in ("start", "run"):
        out = cli(command, str(lab), check=False)
        assert out.returncode != 0, out.stdout
        assert "4242 is PENDING" in out.stderr + out.stdout
        assert "scancel 4242" in out.stderr + out.stdout
    assert not (lab / ".nightlab" / "state.db").exists()  # no run was opened


def test_the_loop_job_itself_may_run_its_night(tmp_path, monkeypatch):
    from nightlab.lab.api import Lab
    from nightlab.lab.errors import LabError
    from nightlab.lab.slurm_loop import refuse_beside_job

    lab = build_lab(tmp_path / "lab", decisions=[])
    (lab / ".nightlab").mkdir()
    (lab / ".nightlab" / loop_job.RECORD).write_text(json.dumps({"job_id": "4242"}))
    fake_slurm(tmp_path, monkeypatch, "RUNNING")
    with pytest.raises(LabError, match="4242"):
        refuse_beside_job(Lab(lab))
    monkeypatch.setenv(loop_job.ENV, "4242")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    refuse_beside_job(Lab(lab))  # the job's own `nightlab run`
    fake_slurm(tmp_path, monkeypatch, "")  # the job has left the queue: nothing to refuse
    monkeypatch.delenv(loop_job.ENV)
    refuse_beside_job(Lab(lab))


def requeued_night(lab: Path, job: str = "4242") -> None:
    (lab / ".nightlab").mkdir(exist_ok=True)
    (lab / ".nightlab" / loop_job.RECORD).write_text(json.dumps({"job_id": job}))
    store = Store(lab / ".nightlab" / "state.db")
    store.migrate()
    try:
        journal = Journal(store, lab / ".nightlab", "tiny", "score")
        journal.open_run(2.0, None, {})
        journal.close_run("requeued", "Slurm stopped the loop job (preempted or requeued); "
                          "it resumes when Slurm starts it again", mlflow=False)  # fmt: skip
    finally:
        store.close()


def test_a_requeued_night_whose_job_left_the_queue_can_be_stopped(tmp_path, monkeypatch):
    """A plain `scancel` (or a failure, a time-out) SIGTERMs the loop as a preemption does: it
    closes `requeued`, but no job resumes it. `stop` said "not running; nothing to stop" and
    the night stayed `requeued` for good; watch said it resumes; status gave no way out."""
    from nightlab.lab.watch import ending

    from conftest import cli, status

    lab = build_lab(tmp_path / "lab", decisions=[])
    requeued_night(lab)
    fake_slurm(tmp_path, monkeypatch, "")  # job 4242 has left the queue
    st = status(lab)
    assert st["state"] == "requeued" and st["loop_job"] == {"job_id": "4242", "queue": None}
    assert "start --slurm" in ending(st, "score") and "nightlab stop" in ending(st, "score")
    shown = cli("status", str(lab)).stdout
    assert "start --slurm" in shown, shown
    out = cli("stop", str(lab))
    assert "left Slurm's queue" in out.stdout, out.stdout
    assert status(lab)["state"] == "stopped"
    assert "nothing to stop" in cli("stop", str(lab)).stdout  # and only once


@pytest.mark.parametrize("state", ["new", "finished", "stopped", "requeued"])
def test_watch_right_after_start_slurm_follows_the_queued_job(state):
    """`start --slurm` says "follow it with nightlab watch": while the job waited in the queue,
    watch ended at once, saying the lab "has not run yet" (or how the last night ended)."""
    from nightlab.lab.watch import goes_on

    st = {"state": state, "loop_job": {"job_id": "4242", "queue": "PENDING"}}
    assert goes_on(st)
    assert not goes_on({**st, "loop_job": {"job_id": "4242", "queue": None}})
    assert not goes_on({"state": state})


@pytest.mark.parametrize(
    ("last", "resumes"),
    [
        (None, False),  # requeued before it opened a run (preempted as it started): a first start
        (("requeued", "42"), True),
        (("running", "42"), True),  # killed outright (SIGKILL): its run left `running`
        (("crashed", "42"), True),
        (("requeued", "41"), False),  # another job's night: `start --slurm` again, options win
        (("stopped", "42"), False),
        (("requeued", None), False),
    ],
)
def test_the_loop_not_the_restart_count_says_whether_the_nights_clocks_stand(
    tmp_path, monkeypatch, last, resumes
):
    """The script dropped --run-hours and the finish-up whenever SLURM_RESTART_COUNT > 0: a job
    preempted (or its node lost) before it opened its first run restarted without them, and
    ran a night without its end time (config hours, or none) and without its finish-up."""
    from types import SimpleNamespace

    from nightlab.loop.loop_job_signals import LoopJob

    monkeypatch.setenv(loop_job.ENV, "42")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    store = Store(tmp_path / "state.db")
    store.migrate()
    try:
        if last is not None:
            journal = Journal(store, tmp_path, "lab", "score")
            journal.open_run(2.0, None, {"loop_job": last[1]} if last[1] else {})
            if last[0] != "running":
                journal.close_run(last[0], "", mlflow=False)
        loop = SimpleNamespace(hours=8.0, finish_request="the finish-up")
        LoopJob("slurm", print).resume(loop, store)
        assert (loop.hours, loop.finish_request) == (
            (None, None) if resumes else (8.0, "the finish-up")
        )
        loop = SimpleNamespace(hours=8.0, finish_request=None)
        LoopJob("local", print).resume(loop, store)  # no loop job: nothing changes
        assert loop.hours == 8.0
    finally:
        store.close()


def test_a_record_naming_another_job_is_not_obeyed(tmp_path, monkeypatch):
    """A `.nightlab/loop_job.json` naming one of the user's other jobs: `stop` would have
    cancelled it, `start`/`run` refused for it. The job's Slurm name must be this lab's."""
    from conftest import cli, status

    lab = build_lab(tmp_path / "lab", decisions=[])
    (lab / ".nightlab").mkdir()
    (lab / ".nightlab" / loop_job.RECORD).write_text(json.dumps({"job_id": "777"}))
    fake_slurm(tmp_path, monkeypatch, "RUNNING", name="my-week-long-training")
    assert status(lab)["loop_job"] == {"job_id": "777", "queue": None}
    cli("stop", str(lab))
    assert not (tmp_path / "fakebin" / "scancelled").exists()


def test_stop_while_the_requeued_job_resumes_does_not_cancel_it(tmp_path, monkeypatch):
    """The job started between `stop` reading `requeued` and cancelling: cancelling would
    SIGTERM a loop that just opened its run (it detaches again, its trials unwatched). The
    stop request is left for it instead, and the run it opens carries it."""
    from conftest import cli, rows

    lab = build_lab(tmp_path / "lab", decisions=[])
    requeued_night(lab)
    fake_slurm(tmp_path, monkeypatch, "RUNNING")
    out = cli("stop", str(lab))
    assert "resuming now, stops after its running trials" in out.stdout, out.stdout
    assert not (tmp_path / "fakebin" / "scancelled").exists()
    assert rows(lab, "SELECT stop_requested FROM runs")[-1][0] == 1
    store = Store(lab / ".nightlab" / "state.db")
    try:  # the job's loop opens its run: it carries the stop
        Journal(store, lab / ".nightlab", "tiny", "score").open_run(None, None, {})
    finally:
        store.close()
    assert rows(lab, "SELECT state, stop_requested FROM runs ORDER BY id")[-1] == ("running", 1)


def test_stop_cancels_a_pending_requeued_job_and_says_what_runs_on(tmp_path, monkeypatch):
    from conftest import cli, execute, status

    lab = build_lab(tmp_path / "lab", decisions=[])
    requeued_night(lab)
    execute(lab, "INSERT INTO trials (id, run_id, cycle_id, decision_id, kind, status, "
                 "params, seed, slot, \"commit\", base_commit, hypothesis, started_at, metrics)"
                 " VALUES (1, 1, 1, 1, 'baseline', 'running', '{}', 0, 0, 'a', 'a', '', 0, "
                 "'{}')")  # fmt: skip  # the trial job the detached loop left running
    fake_slurm(tmp_path, monkeypatch, "PENDING")
    out = cli("stop", str(lab))
    assert "cancelled the loop job 4242" in out.stdout
    assert "1 trial job(s) the loop left run on" in out.stdout
    assert (tmp_path / "fakebin" / "scancelled").read_text().split() == ["4242"]
    assert status(lab)["state"] == "stopped"


def test_a_time_limit_warning_after_a_preemption_does_not_requeue_again(monkeypatch):
    """SIGTERM (Slurm requeues the job itself), then SIGUSR1: a second `scontrol requeue`
    of a job already being requeued only failed, with a misleading line."""
    import signal

    from nightlab.loop import loop_job_signals

    monkeypatch.setenv(loop_job.ENV, "42")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    asked: list[str] = []
    monkeypatch.setattr(loop_job_signals.sacct, "requeue", lambda job: asked.append(job))
    said: list[str] = []
    job = loop_job_signals.LoopJob("slurm", said.append)
    assert job.heard(signal.SIGTERM) and job.heard(signal.SIGUSR1)
    job.requeue_if_due("lab", "requeued")
    assert asked == [] and "preempted" in (job.detach or "")
    alone = loop_job_signals.LoopJob("slurm", said.append)
    assert alone.heard(signal.SIGUSR1)
    alone.requeue_if_due("lab", "requeued")
    assert asked == ["42"]


def test_a_percent_in_the_lab_path_is_not_an_sbatch_pattern(tmp_path):
    lab = build_lab(tmp_path / "lab 100%j", decisions=[])
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + '\n[executor]\nkind = "slurm"\n')
    text = loop_job.script(load_config(lab), lab, lab / ".nightlab", [])
    assert f"#SBATCH --output='{tmp_path}/lab 100%%j/.nightlab/loop.log'" in text


def test_stop_now_cancels_only_this_labs_trial_jobs(tmp_path, monkeypatch):
    """`stop --now` after the loop is gone scancels the trial jobs the store names — only
    ones Slurm has under this lab's trial job name, never an id that is an option."""
    from conftest import cli, execute

    lab = build_lab(tmp_path / "lab", decisions=[])
    requeued_night(lab)
    for trial, job in ((1, "777"), (2, "--user=root"), (3, "778")):
        execute(lab, "INSERT INTO trials (id, run_id, cycle_id, decision_id, kind, status, "
                     "params, seed, slot, \"commit\", base_commit, hypothesis, started_at, "
                     f"metrics) VALUES ({trial}, 1, 1, 1, 'worker', 'running', '{{}}', 0, 0, "
                     "'a', 'a', '', 0, '{}')")  # fmt: skip
        store = Store(lab / ".nightlab" / "state.db")
        try:
            with store.tx() as s:
                Store.event(s, "trial_started", trial_id=trial, executor="slurm", job_id=job)
        finally:
            store.close()
    execute(lab, "UPDATE trials SET status = 'succeeded' WHERE id = 3")  # recorded: not left
    scancelled = tmp_path / "fakebin" / "scancelled"
    fake_slurm(tmp_path, monkeypatch, "RUNNING", name="my-week-long-training")
    out = cli("stop", str(lab), "--now")
    assert "cancelled the trial jobs the loop left (none were still queued" in out.stdout
    assert not scancelled.exists()
    fake_slurm(tmp_path, monkeypatch, "RUNNING", name="nightlab-tiny")
    out = cli("stop", str(lab), "--now")
    assert "cancelled the trial jobs the loop left (777)" in out.stdout
    assert scancelled.read_text().split() == ["777"]
    scancelled.unlink()
    out = cli("stop", str(lab))  # without --now: nothing is cancelled
    assert "nothing to stop" in out.stdout and not scancelled.exists()
