"""`nightlab start LAB --slurm`: the loop itself is a requeueable Slurm job on the local
cluster. Requeued mid-night (its time-limit warning, then a requeue by Slurm), it leaves its
trial jobs running, resumes from the store and re-attaches; the night completes with every
trial recorded once. `status` and `stop` work from outside the job."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NIGHTLAB, cli, rows, status, try_rows, wait_for

SLEEP_S = 4.0


@pytest.fixture(autouse=True)
def no_jobs_left(slurm_cluster):
    yield
    slurm_cluster.run(["scancel", "--user", "root"], check=False)


def loop_lab(
    make_lab, cluster, *, max_trials: int, name: str = "looplab", sleep: float = SLEEP_S
) -> Path:
    """One trial job at a time next to the loop job (the node has two CPUs)."""
    decisions = [
        {"action": "run", "rationale": f"probe {i} of a slow trial",
         "params": {"sleep": sleep, "boost": i / 100}}
        for i in range(1, 20)
    ]  # fmt: skip
    lab = make_lab(decisions=decisions, max_trials=max_trials, name=name, budget=120,
                   baseline_repeats=1)  # fmt: skip
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text() + f'\n[executor]\nkind = "slurm"\npartition = "{cluster.partition}"\n'
        "max_concurrent = 1\nloop_cpus = 1\nloop_mem = 1\nloop_time = 30\n"
    )
    return lab


def submit(lab: Path, *args: str) -> str:
    out = cli("start", str(lab), "--slurm", *args)
    job = json.loads((lab / ".nightlab" / "loop_job.json").read_text())["job_id"]
    assert f"Slurm job {job}" in out.stdout
    return job


def running_trial(lab: Path, after: int) -> tuple[int, str] | None:
    """(id, job) of a trial past `after` whose Slurm job runs now."""
    found = try_rows(lab, "SELECT t.id, json_extract(e.data, '$.job_id') FROM trials t JOIN "
                          "events e ON e.trial_id = t.id AND e.kind = 'trial_started' "
                          "WHERE t.status = 'running' AND t.id > ?", after)  # fmt: skip
    return (found[0][0], found[0][1]) if found else None


def runs(lab: Path) -> list[tuple]:
    return [tuple(r) for r in rows(lab, "SELECT state, deadline_at FROM runs ORDER BY id")]


def resume_now(cluster, job: str, lab: Path) -> None:
    """Once the loop closed its run as `requeued`, past Slurm's ~2 min hold of a requeued
    job (see test_requeue.start_now)."""
    wait_for(lambda: status(lab)["state"] == "requeued", timeout=30, what="the run closed")
    wait_for(lambda: cluster.state(job) == "PENDING", timeout=60, what=f"job {job} requeued")
    time.sleep(2)  # not in the second of the requeue: slurmd refuses the new credential then
    cluster.run(["scontrol", "update", f"jobid={job}", "starttime=now"])


def test_the_loop_job_is_requeued_twice_and_the_night_completes_once(make_lab, slurm_cluster):
    lab = loop_lab(make_lab, slurm_cluster, max_trials=5)
    job = submit(lab, "--run-hours", "2")
    wait_for(lambda: status(lab)["state"] == "running", timeout=60, what="the loop job runs")
    assert status(lab)["loop_job"] == {"job_id": job, "queue": "RUNNING"}

    # 1: the time-limit warning (--signal=B:USR1): the loop requeues its own job
    first = wait_for(lambda: running_trial(lab, 1), timeout=60, what="a trial job running")
    slurm_cluster.run(["scancel", "--batch", "--signal=USR1", job])
    resume_now(slurm_cluster, job, lab)
    left = slurm_cluster.accounted_state(first[1])
    assert not left.startswith("CANCELLED"), f"the trial job was left alone, not {left}"
    # 2: Slurm requeues the job (as after a preemption): SIGTERM, then the queue
    wait_for(lambda: status(lab)["state"] == "running", timeout=60, what="the resumed loop")
    second = wait_for(lambda: running_trial(lab, first[0]), timeout=60, what="another trial")
    slurm_cluster.run(["scontrol", "requeue", job])
    resume_now(slurm_cluster, job, lab)

    wait_for(lambda: status(lab)["state"] in ("finished", "stopped"), timeout=180,
             what="the night completed")  # fmt: skip
    final = status(lab)
    assert final["end_reason"] == "max_trials=5 reached"
    trials = rows(lab, "SELECT id, status FROM trials ORDER BY id")
    assert [tuple(t) for t in trials] == [(i, "succeeded") for i in range(1, 6)]
    ended = rows(lab, "SELECT trial_id, COUNT(*) FROM events WHERE kind = 'trial_finished' "
                      "GROUP BY trial_id")  # fmt: skip
    assert all(n == 1 for _, n in ended) and len(ended) == 5, "every trial recorded once"
    states = runs(lab)
    assert [s for s, _ in states] == ["requeued", "requeued", final["state"]]
    assert len({d for _, d in states}) == 1, "the resumed night kept its end time"
    log = (lab / ".nightlab" / "loop.log").read_text()
    assert log.count(f"loop job {job} restarted") == 2
    assert f"still running (job {first[1]})" in log or f"still running (job {second[1]})" in log
    assert "nears its time limit" in log and "Slurm stopped the loop job" in log
    assert slurm_cluster.wait_state(job, ["COMPLETED"], timeout=60)


def test_stop_cancels_a_loop_job_waiting_to_resume(make_lab, slurm_cluster):
    lab = loop_lab(make_lab, slurm_cluster, max_trials=3, name="stoplab", sleep=30)
    job = submit(lab)
    wait_for(lambda: running_trial(lab, 1), timeout=60, what="a worker's trial job running")
    trial_job = running_trial(lab, 1)[1]  # sleeps 30 s: runs on past the stop
    slurm_cluster.run(["scontrol", "requeue", job])
    wait_for(lambda: status(lab)["state"] == "requeued", timeout=60, what="the loop detached")
    wait_for(lambda: status(lab)["loop_job"]["queue"] == "PENDING", timeout=60,
             what="the loop job queued again")  # fmt: skip
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    watcher = subprocess.Popen(
        [*NIGHTLAB, "watch", str(lab), "--interval", "0.5"], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(3)
        assert watcher.poll() is None, "watch follows a night whose loop job waits to resume"
        done = cli("stop", str(lab))
        assert f"cancelled the loop job {job}" in done.stdout
        shown, _ = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert "the night stopped" in shown
    wait_for(lambda: slurm_cluster.state(job) == "", timeout=30, what="the job gone")
    final = status(lab)
    assert final["state"] == "stopped" and "waited to resume" in final["end_reason"]
    assert "1 trial job(s) the loop left run on" in done.stdout
    assert slurm_cluster.state(trial_job) == "RUNNING"
    killed = cli("stop", str(lab), "--now")  # the trial job it left: cancelled, by name only
    assert f"cancelled the trial jobs the loop left ({trial_job})" in killed.stdout
    wait_for(lambda: slurm_cluster.state(trial_job) == "", timeout=30, what="the trial job gone")
    again = cli("start", str(lab), "--slurm")  # a stopped night may be started again
    assert "submitted" in again.stdout


def test_start_slurm_refuses_a_second_loop_job(make_lab, slurm_cluster):
    lab = loop_lab(make_lab, slurm_cluster, max_trials=2, name="twicelab")
    slurm_cluster.run(["scontrol", "update", "nodename=localhost", "state=drain",
                       "reason=test"])  # fmt: skip  # the job stays PENDING
    try:
        job = submit(lab)
        second = cli("start", str(lab), "--slurm", check=False)
        assert second.returncode != 0
        assert f"loop job {job} is PENDING" in second.stderr
    finally:
        slurm_cluster.run(["scancel", "--user", "root"], check=False)
        slurm_cluster.run(["scontrol", "update", "nodename=localhost", "state=resume"])
