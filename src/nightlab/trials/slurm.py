"""Trials as Slurm jobs, submitted with submitit (`[executor] kind = "slurm"`).

The job runs the same wrapper as a local trial (it writes `pid` and `exit_code` into the
trial folder, stdout/stderr into its logs), so nightlab watches a job like a local process:
metrics as they are printed, its budget, hangs and divergence. Slurm's own time limit is
the budget plus a minute, a backstop. submitit's files (the sbatch script, its logs, the
pickled call) live in the trial's folder under `slurm/`. The job id is recorded as an event,
so a restarted loop re-attaches to jobs still queued or running.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.trials.local import TrialSpec, conclude, limit_broken, sandboxed_wrapper
from nightlab.trials.metrics import MetricReader

STATE_EVERY_S = 1.0  # ask Slurm (squeue/sacct, through submitit) at most this often
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
         "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}  # fmt: skip


class SlurmError(Exception):
    """Slurm refused the job or is not reachable; the message says what to do."""


class Command:
    """What the job runs on its node: the trial's wrapper shell (picklable for submitit)."""

    def __init__(self, spec: TrialSpec) -> None:
        self.script = sandboxed_wrapper(spec)
        self.cwd, self.env, self.trial_dir = str(spec.workdir), dict(spec.env), spec.trial_dir

    def __call__(self) -> int:
        env = {**self.env, "NIGHTLAB_TRIAL_DIR": str(self.trial_dir)}
        with (
            open(self.trial_dir / "stdout.log", "ab") as out,
            open(self.trial_dir / "stderr.log", "ab") as err,
        ):
            done = subprocess.run(
                ["/bin/sh", "-c", self.script], cwd=self.cwd, env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            return done.returncode


def executor(cfg: Config, folder: Path) -> Any:
    """A submitit SlurmExecutor with the lab's `[executor]` settings."""
    import submitit

    ex = cfg.executor
    params: dict[str, Any] = {
        "time": math.ceil(cfg.trial.budget_seconds / 60) + 1,
        "cpus_per_task": ex.cpus_per_trial,
        "job_name": f"nightlab-{cfg.lab.name}"[:64],
        "use_srun": False,
    }
    optional = {"partition": ex.partition, "account": ex.account, "qos": ex.qos,
                "mem": f"{ex.mem_gb:g}GB" if ex.mem_gb else None,
                "gpus_per_node": ex.gpus_per_trial or None,
                "setup": list(ex.setup) or None}  # fmt: skip
    params.update({k: v for k, v in optional.items() if v is not None})
    if ex.extra_sbatch:
        params["additional_parameters"] = _extra(ex.extra_sbatch)
    slurm = submitit.SlurmExecutor(folder=folder)
    slurm.update_parameters(**params)
    return slurm


def start(cfg: Config, spec: TrialSpec) -> SlurmTrial:
    spec.trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        job = executor(cfg, spec.trial_dir / "slurm").submit(Command(spec))
    except Exception as exc:  # sbatch missing, partition unknown, controller down…
        raise SlurmError(f"sbatch refused trial {spec.trial_id}: {exc}") from None
    return SlurmTrial(spec, job, time.time())


def attach(spec: TrialSpec, job_id: str, started_at: float) -> SlurmTrial | None:
    """Re-attach to a job a dead loop submitted; None when it has already ended."""
    from submitit.slurm.slurm import SlurmJob

    trial = SlurmTrial(spec, SlurmJob(spec.trial_dir / "slurm", job_id), started_at)
    return None if trial.state(force=True) in ENDED else trial


class SlurmTrial:
    """A trial running as a Slurm job; the loop's watcher interface (poll, kill)."""

    pid = None  # no local process: nothing to signal or wait for here
    pidfd = None
    created = None

    def __init__(self, spec: TrialSpec, job: Any, started_at: float) -> None:
        self.spec, self.job, self.started_at = spec, job, started_at
        self.job_id = str(job.job_id)
        self.reader = MetricReader(spec.trial_dir, spec.metric)
        self.last_output = time.time()
        self._kill: tuple[str, str] | None = None
        self._state, self._asked = "PENDING", 0.0

    def state(self, force: bool = False) -> str:
        """The job's Slurm state (refreshed at most every STATE_EVERY_S)."""
        now = time.time()
        if force or now - self._asked >= STATE_EVERY_S:
            self._asked = now
            try:
                info = self.job.get_info(mode="force")
                self._state = (info.get("State") or self._state).split()[0]
            except Exception:
                pass  # squeue/sacct hiccup: keep the last state, ask again later
        return self._state

    def poll(self, now: float | None = None) -> Any:
        now = now or time.time()
        new = self.reader.read()
        if self.reader.grew:
            self.last_output = now
        code = _exit_code(self.spec.trial_dir)  # written by the wrapper as its last act
        state = self.state()
        if code is None and state not in ENDED:
            self._check_limits(now, new)
            return None
        self.reader.read(final=True)
        if code is not None and (code < 0 or code >= 128) and self._kill is None:
            state = self.state(force=True)  # killed by a signal: was it Slurm's doing?
            if state in ENDED - {"COMPLETED", "FAILED"}:
                self._kill = ("killed", f"slurm: job {self.job_id} ended {state}")
        if code is None:
            if self._kill is None:
                verdict = "timeout" if state == "TIMEOUT" else "killed"
                self._kill = (verdict, f"slurm: job {self.job_id} ended {state}")
        return conclude(self.spec, self.reader, code, self._kill, now - self.started_at, None)

    def _check_limits(self, now: float, new: list[dict]) -> None:
        if broken := limit_broken(self, now, new):
            self.kill(*broken)

    def kill(self, status: str, reason: str, grace: float = 0.0) -> None:
        """scancel the job (Slurm signals its processes, then kills them after KillWait)."""
        if self._kill is None:
            self._kill = (status, reason)
            subprocess.run(["scancel", self.job_id], capture_output=True, timeout=30)
            self._asked = 0.0


def _exit_code(trial_dir: Path) -> int | None:
    try:
        return int((trial_dir / "exit_code").read_text().strip())
    except (OSError, ValueError):
        return None  # not there yet, or being written


def _extra(lines: list[str]) -> dict[str, Any]:
    """`extra_sbatch = ["--constraint=a100", "--exclusive"]` as submitit's parameters."""
    out: dict[str, Any] = {}
    for line in lines:
        key, _, value = line.removeprefix("--").removeprefix("#SBATCH ").partition("=")
        out[key.strip().replace("-", "_")] = value.strip() or True
    return out
