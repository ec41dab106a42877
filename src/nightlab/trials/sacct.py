"""What Slurm says about a job, through its client commands: every run of it (sacct), the
controller's view (scontrol show job), and a requeue (scontrol requeue)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass


@dataclass
class Attempt:
    """One run of the job, as sacct keeps it (its start in seconds since the epoch, or None)."""

    state: str
    start: float | None



def _client(args: list[str]) -> subprocess.CompletedProcess | None:
    """A Slurm client command, times as seconds since the epoch; None if it cannot run."""
    env = {**os.environ, "SLURM_TIME_FORMAT": "%s"}
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None


def runs(job_id: str) -> list[Attempt] | None:
    """Every run of the job, oldest first (sacct -D: a requeued job has one record per run)."""
    out = _client(["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "JobID,State,Start"])
    if out is None or out.returncode != 0:
        return None
    rows = [line.split("|") for line in out.stdout.splitlines()]
    return [
        Attempt((row[1].split() or ["UNKNOWN"])[0], epoch(row[2]))
        for row in rows
        if len(row) >= 3 and row[0] == job_id
    ]


def job(job_id: str) -> dict[str, str] | None:
    """The controller's view of the job (JobState, Restarts, EligibleTime); None once it has
    forgotten the job (MinJobAge after its end) or cannot be asked."""
    out = _client(["scontrol", "-o", "show", "job", job_id])
    if out is None or out.returncode != 0:
        return None
    found = dict(re.findall(r"\b(JobState|Restarts|EligibleTime)=(\S+)", out.stdout))
    return found if {"JobState", "Restarts"} <= found.keys() else None


def requeue(job_id: str) -> str | None:
    """`scontrol requeue` the job (same id, back in the queue); the error, if it failed."""
    out = _client(["scontrol", "requeue", job_id])
    if out is None:
        return "scontrol could not be run"
    if out.returncode != 0:
        return (out.stderr or out.stdout).strip()[:300] or f"exit status {out.returncode}"
    return None


def epoch(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # "Unknown", "None"
