"""Nights on a real Slurm (scripts/slurm-local.sh): trials are submitit jobs, two at a time;
`stop --now` cancels them, an `scancel` is recorded as killed, and a restarted loop watches
the jobs its dead predecessor submitted."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from nightlab import Lab

from conftest import NIGHTLAB, cli, rows, status, try_rows, wait_for


def slurm_lab(make_lab, cluster, *, sleep: float, max_trials: int, name: str = "lab") -> Path:
    """Two Slurm jobs at a time; the baseline is quick, the replayed trials after it sleep
    `sleep` s (conftest's TRIAL and its `sleep` knob)."""
    decisions = [{"action": "run", "rationale": f"probe {i} of a slow trial",
                  "params": {"sleep": sleep, "boost": i / 100}} for i in range(1, 20)]  # fmt: skip
    lab = make_lab(decisions=decisions, max_trials=max_trials, name=name, budget=120)
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        + f'\n[executor]\nkind = "slurm"\npartition = "{cluster.partition}"\nmax_concurrent = 2\n'
    )
    return lab


@pytest.fixture(autouse=True)
def no_jobs_left(slurm_cluster):
    """Each test starts on an empty cluster, whatever the one before left queued."""
    yield
    slurm_cluster.run(["scancel", "--user", "root"], check=False)


def trials(lab: Path) -> list[tuple]:
    found = try_rows(
        lab,
        "SELECT t.id, t.status, t.reason, t.objective, json_extract(e.data, '$.job_id') "
        "FROM trials t JOIN events e ON e.trial_id = t.id AND e.kind = 'trial_started' "
        "ORDER BY t.id",
    )
    return found or []  # none while the loop has not made its store


def test_a_night_runs_its_trials_as_slurm_jobs_two_at_a_time(make_lab, slurm_cluster):
    lab = slurm_lab(make_lab, slurm_cluster, sleep=1.0, max_trials=5)
    final = Lab(lab).run(report=lambda line: None)
    assert final["end_reason"] == "max_trials=5 reached"
    ran = trials(lab)
    assert [r[1] for r in ran] == ["succeeded"] * 5 and all(r[3] is not None for r in ran)
    for trial, *_, job in ran:
        assert slurm_cluster.accounted_state(job).startswith("COMPLETED")
        folder = lab / ".nightlab" / "trials" / str(trial)
        assert "score=" in (folder / "stdout.log").read_text()
        assert list((folder / "slurm").glob(f"{job}_*")), "submitit's files in the trial folder"
    spans = rows(lab, "SELECT started_at, ended_at FROM trials ORDER BY id")
    overlap = any(a[0] < b[1] and b[0] < a[1] for a in spans for b in spans if a != b)
    assert overlap, "two jobs ran at the same time"


def test_stop_now_cancels_the_jobs_and_scancel_is_recorded(make_lab, slurm_cluster):
    lab = slurm_lab(make_lab, slurm_cluster, sleep=30.0, max_trials=10)
    cli("start", str(lab))
    try:
        cancel_then_stop(lab, slurm_cluster)
    finally:
        if status(lab)["state"] == "running":
            cli("stop", str(lab), "--now", "--wait", check=False)


def cancel_then_stop(lab: Path, slurm_cluster) -> None:
    wait_for(lambda: len(trials(lab)) >= 5, timeout=60, what="two slow jobs submitted")
    job = trials(lab)[3][4]  # trial 4: the first after the 3 baseline repeats
    slurm_cluster.wait_state(job, ["RUNNING"], timeout=30)
    slurm_cluster.run(["scancel", job])  # someone cancels one job by hand
    wait_for(lambda: trials(lab)[3][1] != "running", timeout=60, what="the cancelled trial")
    assert trials(lab)[3][1] == "killed" and "CANCELLED" in trials(lab)[3][2]
    wait_for(lambda: len(trials(lab)) >= 6, timeout=60, what="the night goes on")
    cli("stop", str(lab), "--now", "--wait")
    assert status(lab)["state"] == "stopped"
    for _, state, _, _, other in trials(lab):
        assert state != "running"
        assert slurm_cluster.wait_state(other, ["CANCELLED", "COMPLETED"], timeout=30)


def test_a_restarted_loop_watches_the_jobs_it_left(make_lab, slurm_cluster):
    lab = slurm_lab(make_lab, slurm_cluster, sleep=6.0, max_trials=5)
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen([*NIGHTLAB, "run", str(lab)], env=env, **quiet)
    wait_for(lambda: len(trials(lab)) >= 5, timeout=60, what="two slow jobs submitted")
    job = trials(lab)[3][4]
    slurm_cluster.wait_state(job, ["RUNNING"], timeout=30)
    proc.send_signal(signal.SIGKILL)  # the loop dies; Slurm keeps the jobs running
    proc.wait()
    assert slurm_cluster.state(job) == "RUNNING"
    lines: list[str] = []
    final = Lab(lab).run(report=lines.append)
    assert any(f"still running (job {job})" in line for line in lines)
    ran = trials(lab)
    assert [r[1] for r in ran] == ["succeeded"] * 5 and ran[3][4] == job
    assert final["trials"]["total"] == 5
