"""A Slurm job lost to its node (NODE_FAIL) or to a job of higher priority (PREEMPTED) is
requeued once, under the same job id, and the requeue is recorded; a second loss ends the
trial as killed, even when the loop restarted in between. The losses are real: the node is
set DOWN with scontrol, and a job of a preempting QOS takes the whole node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import NIGHTLAB, try_rows, wait_for

SLEEP_S = 8.0  # the trial runs this long: time to hit it while it runs


def one_trial_lab(make_lab, cluster) -> Path:
    """A night of one trial (the baseline), a Slurm job that sleeps SLEEP_S then scores."""
    lab = make_lab(decisions=[], max_trials=1, sleep=SLEEP_S, budget=120, name="requeue",
                   baseline_repeats=1)  # fmt: skip
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        + f'\n[executor]\nkind = "slurm"\npartition = "{cluster.partition}"\n'
    )
    return lab


class Night:
    """`nightlab run` in a subprocess (it can be SIGKILLed like a crashed loop); its output
    goes to a file."""

    def __init__(self, lab: Path, name: str = "night") -> None:
        self.lab, self.out = lab, lab.parent / f"{name}.out"
        env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(
                [*NIGHTLAB, "run", str(lab)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.out.read_text()

    def wait(self, timeout: float = 90, code: int = 0) -> str:
        """The night's output once it ends with exit status `code` (3: no baseline)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the night did not end in {timeout}s:\n{self.output()}") from None
        assert self.proc.returncode == code, self.output()
        return self.output()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def query(lab: Path, sql: str) -> list[tuple]:
    """The rows of `sql`; none while the loop has not made its store."""
    return try_rows(lab, sql) or []


def job_of(lab: Path) -> str | None:
    found = query(lab, "SELECT json_extract(data, '$.job_id') FROM events "
                       "WHERE kind = 'trial_started' AND trial_id = 1")  # fmt: skip
    return found[0][0] if found and found[0][0] else None


def requeued_events(lab: Path) -> list[dict]:
    found = query(lab, "SELECT data FROM events WHERE kind = 'trial_requeued' ORDER BY id")
    return [json.loads(data) for (data,) in found]


def trial(lab: Path) -> tuple:
    return query(lab, "SELECT status, reason, objective FROM trials WHERE id = 1")[0]


def attempts(cluster, job: str) -> list[str]:
    """The job's runs as sacct keeps them, oldest first (one record per run)."""
    out = cluster.run(["sacct", "-n", "-X", "-D", "-P", "-j", job, "-o", "State"])
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def running_with_output(lab: Path, cluster, runs: int = 1) -> str:
    """Wait until trial 1's job runs and its command (run number `runs`) has printed."""
    job = wait_for(lambda: job_of(lab), timeout=60, what="trial 1 submitted")
    log = lab / ".nightlab" / "trials" / "1" / "stdout.log"
    wait_for(lambda: log.is_file() and log.read_text().count("starting") >= runs,
             timeout=60, what=f"run {runs} of the trial printing")  # fmt: skip
    assert cluster.state(job) == "RUNNING"
    return job


def fail_node(cluster) -> None:
    """A node failure: the node is set DOWN; Slurm requeues its jobs (NODE_FAIL) and, the
    node's slurmd still answering, takes it back into service (ReturnToService=2)."""
    cluster.run(["scontrol", "update", "nodename=localhost", "state=down", "reason=test"])


def preempt(cluster) -> str:
    """A job of the preempting QOS `urgent` takes the whole node for 3 s."""
    out = cluster.run(["sbatch", "--parsable", "--qos=urgent", "--exclusive", "-o", "/dev/null",
                       "--wrap", "sleep 3"])  # fmt: skip
    return out.stdout.strip().split(";")[0]


def start_now(cluster, job: str) -> None:
    """Slurm holds a requeued job back ~2 minutes (its EligibleTime): not in a test. But not
    in the second of the requeue either: slurmd refuses the job's new credential then."""
    wait_for(lambda: cluster.state(job) == "PENDING", timeout=30, what=f"job {job} requeued")
    time.sleep(2)
    cluster.run(["scontrol", "update", f"jobid={job}", "starttime=now"])


def node_idle(cluster) -> bool:
    out = cluster.run(["sinfo", "-h", "-N", "-n", "localhost", "-o", "%t"], check=False)
    return out.stdout.split()[:1] in (["idle"], ["mix"], ["alloc"])  # a line per partition


@pytest.fixture
def cluster(slurm_cluster) -> Iterator:
    """The session's cluster with a preempting QOS; afterwards no job is left, the node is
    back in service and the QOS settings are as before."""
    slurm_cluster.run(["sacctmgr", "-i", "add", "qos", "urgent"], check=False)
    slurm_cluster.run(["sacctmgr", "-i", "modify", "qos", "urgent", "set", "Preempt=normal"])
    yield slurm_cluster
    slurm_cluster.run(["scancel", "--user", "root"], check=False)
    if not node_idle(slurm_cluster):
        slurm_cluster.run(["scontrol", "update", "nodename=localhost", "state=resume"],
                          check=False)  # fmt: skip
    slurm_cluster.run(["sacctmgr", "-i", "modify", "qos", "normal", "set", "PreemptMode=cluster"])
    slurm_cluster.run(["sacctmgr", "-i", "delete", "qos", "urgent"], check=False)
    wait_for(lambda: node_idle(slurm_cluster), timeout=60, what="the node back in service")


def lose_the_run(make_lab, cluster, how) -> tuple[Path, str, str]:
    """A one-trial night whose running job loses its run to `how(cluster)`; the requeued
    job starts at once (past Slurm's hold). (the lab, the job id, the night's output)"""
    lab = one_trial_lab(make_lab, cluster)
    night = Night(lab)
    try:
        job = running_with_output(lab, cluster)
        how(cluster)
        start_now(cluster, job)
        return lab, job, night.wait()
    finally:
        night.kill()


def test_a_node_failure_requeues_the_job_once_and_the_trial_succeeds(make_lab, cluster):
    lab, job, output = lose_the_run(make_lab, cluster, fail_node)
    assert trial(lab)[0] == "succeeded" and trial(lab)[2] is not None, trial(lab)
    assert attempts(cluster, job) == ["NODE_FAIL", "COMPLETED"]  # the same job id, run twice
    [event] = requeued_events(lab)
    assert (event["job_id"], event["after"], event["by"]) == (job, "NODE_FAIL", "slurm")
    assert f"trial 1: Slurm job {job} lost its run (NODE_FAIL)" in output
    folder = lab / ".nightlab" / "trials" / "1"
    assert f"Slurm restarted job {job} (restart 1)" in (folder / "stdout.log").read_text()
    assert json.loads((folder / "slurm" / "requeues.json").read_text())[0]["after"] == "NODE_FAIL"
    assert (folder / "exit_code").read_text() == "0"


def test_a_cancelled_preempted_job_is_requeued_by_nightlab(make_lab, cluster):
    # PreemptMode=CANCEL: Slurm ends the preempted job (PREEMPTED) instead of requeueing it
    cluster.run(["sacctmgr", "-i", "modify", "qos", "normal", "set", "PreemptMode=cancel"])
    lab, job, output = lose_the_run(make_lab, cluster, preempt)
    assert trial(lab)[0] == "succeeded", trial(lab)
    assert attempts(cluster, job) == ["REQUEUED", "COMPLETED"]  # scontrol requeue's mark
    [event] = requeued_events(lab)
    assert (event["job_id"], event["after"], event["by"]) == (job, "PREEMPTED", "nightlab")
    assert f"Slurm job {job} lost its run (PREEMPTED) and was requeued by nightlab" in output


def test_a_second_loss_ends_the_trial_even_across_a_loop_restart(make_lab, cluster):
    lab = one_trial_lab(make_lab, cluster)
    first = Night(lab, "first")
    second = None
    try:
        job = running_with_output(lab, cluster)
        preempt(cluster)  # PreemptMode=REQUEUE: Slurm requeues the job itself
        wait_for(lambda: requeued_events(lab), timeout=30, what="the requeue recorded")
        first.kill()  # the loop dies while the job waits in the queue
        start_now(cluster, job)
        second = Night(lab, "second")
        running_with_output(lab, cluster, runs=2)  # the requeued run, watched by the new loop
        fail_node(cluster)
        output = second.wait(code=3)  # its one trial, the baseline, was killed: no baseline
    finally:
        first.kill()
        if second:
            second.kill()
    assert f"still running (job {job})" in output
    status, reason, _ = trial(lab)
    assert status == "killed", (status, reason)
    assert f"job {job} was requeued again (NODE_FAIL)" in reason
    assert "requeued once already" in reason
    [event] = requeued_events(lab)  # not recorded again by the second loop
    assert (event["after"], event["by"]) == ("PREEMPTED", "slurm")
    assert attempts(cluster, job)[:2] == ["PREEMPTED", "NODE_FAIL"]
    assert cluster.wait_state(job, ["CANCELLED"], timeout=30)
