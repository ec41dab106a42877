"""The loop itself as a Slurm job (`nightlab start LAB --slurm`), for clusters that kill long
processes on login nodes.

The job is a short batch script, `.nightlab/loop_job.sh`, that `exec`s `nightlab run`, so the
loop is the batch shell and gets Slurm's signals itself (submitit would put a shell between:
its runner is not the batch shell when it runs without srun). The script asks for
`--requeue` and `--signal=B:USR1@LEAD_S`:

- near the time limit the loop hears SIGUSR1: it stops taking trials, leaves its trial jobs
  running, closes its run as `requeued` and requeues its own job (`scontrol requeue`);
- preempted, Slurm sends SIGTERM and requeues the job itself: the loop detaches the same way.

A restarted job (SLURM_RESTART_COUNT > 0) runs the same `nightlab run`: the loop drops the
options that start a night's clock (`--run-hours`, the finish-up) when its last run is one
this job opened (loop/loop_job_signals.py `resume`), so the resumed night keeps its end
time; it re-attaches to the trial jobs still queued or running. (Dropping them by the
restart count lost them for a job requeued before it opened its first run.)
`.nightlab/loop_job.json` names the job for `status` and `stop` on the login node.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nightlab import UserError
from nightlab.config import Config
from nightlab.store import files

ENV = "NIGHTLAB_LOOP_JOB"  # set in the job: the loop is a Slurm loop job, this is its id
SCRIPT = "loop_job.sh"
RECORD = "loop_job.json"
LEAD_S = 180  # the time-limit warning comes this long before the limit


class LoopJobError(UserError):
    """sbatch refused the loop job, or Slurm cannot be asked."""


def this_job() -> str | None:
    """The loop job's id when this process is one (its script exports it, and Slurm's own
    SLURM_JOB_ID agrees), else None."""
    job = os.environ.get(ENV, "").strip()
    return job if job.isdigit() and os.environ.get("SLURM_JOB_ID") == job else None


def script(cfg: Config, lab: Path, state: Path, args: list[str]) -> str:
    """The batch script: `args` are `nightlab run` options (a restart passes them again: the
    loop knows a resumed night by its record)."""
    ex = cfg.executor
    run = [sys.executable, "-m", "nightlab", "run", str(lab), *args]
    sbatch = {
        "job-name": job_name(cfg.lab.name),
        "time": str(ex.loop_time),
        "cpus-per-task": str(ex.loop_cpus),
        "mem": f"{max(1, round(ex.loop_mem * 1024))}M",
        "signal": f"B:USR1@{LEAD_S}",
        "output": str(state / "loop.log").replace("%", "%%"),  # a pattern to sbatch
        "open-mode": "append",
        "chdir": str(lab),
        "partition": ex.partition, "account": ex.account, "qos": ex.qos,
    }  # fmt: skip
    for key, value in sbatch.items():  # an #SBATCH line is a comment to bash: a line break
        if value is not None and ("\n" in value or "\r" in value):  # would start shell code
            raise LoopJobError(f"the loop job's {key} ({value!r}) has a line break: remove "
                               "it ([executor] in nightlab.toml, or the lab's path)")  # fmt: skip
    lines = ["#!/bin/bash", "# nightlab's loop job (`nightlab start --slurm`): written by nightlab"]
    lines += [f"#SBATCH --{k}={shlex.quote(v)}" for k, v in sbatch.items() if v is not None]
    lines += [
        "#SBATCH --requeue",
        f'export {ENV}="$SLURM_JOB_ID" NIGHTLAB_PLAIN=1',
        'if [ "${SLURM_RESTART_COUNT:-0}" != 0 ]; then',
        '  echo "[nightlab] loop job $SLURM_JOB_ID restarted (restart $SLURM_RESTART_COUNT):'
        ' resuming the night"',
        "fi",
        f"exec {shlex.join(run)}",
        "",
    ]
    return "\n".join(lines)


def submit(cfg: Config, lab: Path, state: Path, args: list[str]) -> str:
    """Write the script, sbatch it, record the job; returns the job id."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / SCRIPT
    files.write_atomic(path, script(cfg, lab, state, args))  # a planted link is replaced
    try:
        out = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True,
                             text=True, timeout=60, cwd=lab)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoopJobError(f"sbatch could not be run ({exc}): is Slurm's client installed "
                           "and this a login node of the cluster?") from None  # fmt: skip
    job = out.stdout.strip().split(";")[0]
    if out.returncode != 0 or not job.isdigit():
        why = (out.stderr or out.stdout).strip()[-500:] or f"exit status {out.returncode}"
        raise LoopJobError(f"sbatch refused the loop job: {why} (see {path})")
    files.write_json(state / RECORD, {"job_id": job, "submitted_at": time.time(),
                                      "script": str(path)})  # fmt: skip
    return job


def recorded(state: Path) -> dict[str, Any] | None:
    """The last loop job `start --slurm` submitted for this lab, if any."""
    raw = files.read_regular(state / RECORD, limit=1 << 16)
    try:
        found = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(found, dict) or not str(found.get("job_id", "")).isdigit():
        return None
    return found


def job_name(lab_name: str) -> str:
    """The loop job's Slurm name: what tells it from the user's other jobs."""
    return f"nightlab-loop-{lab_name}"[:64]


def trial_job_name(lab_name: str) -> str:
    """A trial job's Slurm name (trials/slurm.py submits under it)."""
    return f"nightlab-{lab_name}"[:64]


def queue_state(job: str, lab_name: str) -> str | None:
    """The job's state while Slurm has it queued or running (PENDING, RUNNING, REQUEUED…);
    None once it has left the queue, when squeue cannot say, or when the job there is not
    this lab's loop job (a record naming another job is not obeyed: `stop` would cancel it)."""
    return _queued_as(job, job_name(lab_name))


def cancel_trials(jobs: list[str], lab_name: str) -> list[str]:
    """scancel those of `jobs` Slurm still has as this lab's trial jobs (by name: a record
    naming someone else's job cancels nothing); the ones cancelled."""
    name = trial_job_name(lab_name)
    return [job for job in dict.fromkeys(jobs) if _queued_as(job, name) and cancel(job) is None]


def _queued_as(job: str, name: str) -> str | None:
    if not job.replace("_", "").isdigit():  # a job id (an array task: 12_3), never an option
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T|%j"], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = out.stdout.strip().splitlines()
    if out.returncode != 0 or not found:
        return None
    state, _, named = found[0].strip().partition("|")
    return state.strip() if named.strip() == name else None


def signal(job: str, name: str) -> str | None:
    """Send signal `name` (e.g. "USR2") to the loop job's batch shell: the loop; the error,
    if any."""
    return _scancel(["--batch", f"--signal={name}", job])


def cancel(job: str) -> str | None:
    return _scancel([job])


def _scancel(args: list[str]) -> str | None:
    try:
        out = subprocess.run(["scancel", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scancel could not be run: {exc}"
    return None if out.returncode == 0 else (out.stderr or out.stdout).strip()[:300]
