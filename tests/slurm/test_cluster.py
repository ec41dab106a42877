"""The local cluster is a real Slurm with accounting, and what nightlab needs from it works:
sbatch + sacct, submitit round trips, cancellation that ends `result()` instead of hanging,
a small submit → RUNNING latency, and two jobs at once."""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

LATENCY_TARGET_S = 2.0


@pytest.fixture
def submitit():
    try:
        import cloudpickle
        import submitit
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("submitit is not installed (pip install submitit)")
        pytest.skip("submitit is not installed (pip install submitit)")
    # The jobs run this module's functions; it is not importable there (tests/ is not on the
    # job's sys.path), so its functions travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return submitit


@pytest.fixture
def executor(submitit, slurm_cluster, tmp_path):
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    ex.update_parameters(slurm_partition=slurm_cluster.partition, timeout_min=1)
    return ex


# --- what the jobs run (pickled by value: imports inside) ----------------------------------


def add_in_job(a: int, b: int) -> dict:
    import os
    import socket

    return {"sum": a + b, "job_id": os.environ.get("SLURM_JOB_ID"), "host": socket.gethostname()}


def sleep_and_time(seconds: float) -> tuple[float, float]:
    import time

    start = time.time()
    time.sleep(seconds)
    return start, time.time()


# --- helpers ---------------------------------------------------------------------------------


def wait_running(cluster, job_id: str, timeout: float = 30) -> float:
    """Poll squeue every 20 ms until the job is RUNNING; returns the monotonic time it was."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = cluster.state(job_id)
        if state == "RUNNING":
            return time.monotonic()
        if state not in ("", "PENDING", "CONFIGURING"):
            break
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} is {state!r}, not RUNNING")


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# --- the tests -------------------------------------------------------------------------------


def test_sbatch_job_completes_and_is_accounted(slurm_cluster, tmp_path):
    parts = slurm_cluster.run(["sinfo", "-h", "-o", "%P %a %t"]).stdout.split("\n")
    assert {p.split()[0] for p in parts if p} == {"debug*", "long"}  # debug is the default
    node = slurm_cluster.run(["scontrol", "show", "node", "localhost"]).stdout
    assert int(node.split("CPUTot=")[1].split()[0]) >= 2

    out = tmp_path / "job.out"
    wrap = "sleep 1; echo hello from $SLURM_JOB_ID"
    submitted = slurm_cluster.run(["sbatch", "--parsable", "-o", str(out), "--wrap", wrap])
    job_id = submitted.stdout.strip().split(";")[0]
    assert slurm_cluster.wait_state(job_id, ["COMPLETED", "FAILED", "CANCELLED"]) == "COMPLETED"
    sacct = slurm_cluster.run(["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode"])
    assert f"{job_id}|COMPLETED|0:0" in sacct.stdout.splitlines()
    assert out.read_text().strip() == f"hello from {job_id}"
    assert "Partition=debug " in slurm_cluster.run(["scontrol", "show", "job", job_id]).stdout


def test_submitit_returns_the_value(executor, slurm_cluster):
    t0 = time.monotonic()
    job = executor.submit(add_in_job, 2, 3)
    result = job.result()
    print(f"\nsubmitit submit → result of a tiny function: {time.monotonic() - t0:.2f}s")
    assert result["sum"] == 5
    assert result["job_id"] == job.job_id
    # job.state alone may be stale ("UNKNOWN": the result file came before any sacct call)
    assert job.get_info(mode="force")["State"] == "COMPLETED"
    assert job.state == "COMPLETED"
    assert slurm_cluster.accounted_state(job.job_id) == "COMPLETED"


def test_cancelled_job_raises_instead_of_hanging(submitit, executor, slurm_cluster):
    marker = f"nightlab-slurm-test-{uuid.uuid4().hex[:8]}"
    command = ["bash", "-c", f"sleep 60 && : {marker}"]
    job = executor.submit(submitit.helpers.CommandFunction(command))
    wait_running(slurm_cluster, job.job_id)
    deadline = time.monotonic() + 10
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker), "the job's command never started"

    slurm_cluster.run(["scancel", job.job_id])
    t0 = time.monotonic()
    outcome: dict = {}

    def wait_result() -> None:
        try:
            outcome["value"] = job.result()
        except BaseException as e:  # noqa: BLE001 - the outcome is what we check
            outcome["error"] = e

    waiter = threading.Thread(target=wait_result, daemon=True)
    waiter.start()
    waiter.join(timeout=30)
    elapsed = time.monotonic() - t0
    assert not waiter.is_alive(), "job.result() still waiting 30s after scancel"
    error = outcome.get("error")
    print(f"\nscancel → job.result() raised {type(error).__name__} after {elapsed:.2f}s")
    # Slurm's linuxproc tracking signals the job's processes one by one, so the order is a race:
    # UncompletedJobError when sacct said CANCELLED first, FailedJobError when the command died
    # of SIGTERM first (submitit's own process ignores SIGTERM and reports it). "&&" keeps a
    # bash that outlives its killed sleep from exiting 0 (CI once got a result of '' that way).
    errors = (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError)
    assert isinstance(error, errors), outcome
    assert elapsed < 15
    # sacct says CANCELLED once the job has fully ended (at most KillWait=5 s later)
    deadline = time.monotonic() + 15
    while not job.get_info(mode="force").get("State", "").startswith("CANCELLED"):
        assert time.monotonic() < deadline, f"state {job.get_info(mode='force')} after scancel"
        time.sleep(0.2)
    print(f"scancel → sacct says CANCELLED after {time.monotonic() - t0:.2f}s")
    assert job.state.startswith("CANCELLED")  # e.g. "CANCELLED by 0"
    assert slurm_cluster.accounted_state(job.job_id).startswith("CANCELLED")

    deadline = time.monotonic() + 10  # KillWait=5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == [], "the cancelled job's command is still running"


def test_submit_to_running_latency(submitit, executor, slurm_cluster, tmp_path):
    running, started = [], []
    for i in range(3):
        stamp = tmp_path / f"started-{i}"
        command = ["bash", "-c", f"date +%s.%N > {stamp}; sleep 30"]
        t_wall, t0 = time.time(), time.monotonic()
        job = executor.submit(submitit.helpers.CommandFunction(command))
        running.append(wait_running(slurm_cluster, job.job_id) - t0)
        deadline = time.monotonic() + 15
        while not (stamp.exists() and stamp.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        started.append(float(stamp.read_text()) - t_wall)
        slurm_cluster.run(["scancel", job.job_id])
    print(
        f"\nsubmit → RUNNING (squeue): {', '.join(f'{s:.2f}s' for s in running)}; "
        f"submit → the command runs: {', '.join(f'{s:.2f}s' for s in started)}"
    )
    assert statistics.median(running) <= LATENCY_TARGET_S
    assert max(running) < 5


def test_two_jobs_run_at_once(executor):
    jobs = [executor.submit(sleep_and_time, 3) for _ in range(2)]
    (start1, end1), (start2, end2) = (job.result() for job in jobs)
    overlap = min(end1, end2) - max(start1, start2)
    print(f"\ntwo 3s jobs overlapped for {overlap:.2f}s")
    assert overlap > 1.5, f"the jobs ran one after the other: {[(start1, end1), (start2, end2)]}"
