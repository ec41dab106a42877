"""Trials as Slurm jobs, submitted with submitit (`[executor] kind = "slurm"`).

The job runs the same wrapper as a local trial (it writes `pid` and `exit_code` into the
trial folder, stdout/stderr into its logs), so nightlab watches a job like a local process:
metrics as they are printed, its budget, hangs and divergence. Slurm's own time limit is
the budget plus a minute, a backstop. submitit's files (the sbatch script, its logs, the
pickled call) live in the trial's folder under `slurm/`. The job id is recorded as an event,
so a restarted loop re-attaches to jobs still queued or running.

A job lost to its node (NODE_FAIL) or to preemption (PREEMPTED) is requeued once, under the
same job id (by Slurm with `--requeue`, else by nightlab with `scontrol requeue`), as a
`trial_requeued` event; a second restart ends the trial as killed (the job is cancelled).
The count comes from Slurm's records and `slurm/requeues.json` in the trial folder, so a
restarted loop neither forgets nor repeats. See SlurmTrial for a requeued run's budget.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from nightlab import UserError
from nightlab.config import Config, require
from nightlab.store import files
from nightlab.trials import loop_job, sacct
from nightlab.trials.local import conclude, limit_broken, reader_for, sandboxed_wrapper
from nightlab.trials.metrics import MetricReader
from nightlab.trials.watch import Handle, Outcome, TrialSpec

KIND = "slurm"

STATE_EVERY_S = 1.0  # ask Slurm (sacct) at most this often
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
         "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}  # fmt: skip
LOST = {"NODE_FAIL", "PREEMPTED"}  # the job's fault: none; requeued once
REQUEUED = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"}  # an attempt ended, the job queued again
WAITING = {"PENDING", "CONFIGURING", *REQUEUED}  # not running (yet): no output to expect
MAX_REQUEUES = 1
SIGNAL_WAIT_S = 30.0  # a signal exit status: wait this long for Slurm to say what happened
REQUEUES = "slurm/requeues.json"  # in the trial folder: the requeues nightlab has recorded
LOGS = ("stdout.log", "stderr.log", "out/metrics.jsonl")  # what the metric reader follows
POLL_EVERY_S = 0.05  # wait_any's sleep: a job has no file descriptor to wait on


class SlurmError(UserError):
    """Slurm refused the job or is not reachable; the message says what to do."""


class Command:
    """What the job runs on its node: the trial's wrapper shell (picklable for submitit)."""

    def __init__(self, spec: TrialSpec) -> None:
        self.script = sandboxed_wrapper(spec)
        self.cwd, self.env, self.trial_dir = str(spec.workdir), dict(spec.env), spec.trial_dir

    def __call__(self) -> int:
        self._new_attempt()
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

    def _new_attempt(self) -> None:
        """A run of the job starts: the exit status and pid of an earlier run (one that Slurm
        requeued) must not pass for this one's; its torn last lines are ended."""
        for name in ("exit_code", "pid"):
            (self.trial_dir / name).unlink(missing_ok=True)
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        if restarts in ("", "0"):
            return
        job = os.environ.get("SLURM_JOB_ID", "?")
        for name in LOGS:
            path = self.trial_dir / name
            if path.is_file() and path.stat().st_size:
                with path.open("rb+") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
            if not name.endswith(".jsonl"):
                with path.open("a") as fh:
                    fh.write(f"[nightlab] Slurm restarted job {job} (restart {restarts}), "
                             "the run starts over\n")  # fmt: skip


def executor(cfg: Config, folder: Path) -> Any:
    """A submitit SlurmExecutor with the lab's `[executor]` settings."""
    require("submitit", "slurm", f"[executor] kind = \"{KIND}\"")
    import submitit

    ex = cfg.executor
    params: dict[str, Any] = {
        "time": math.ceil(cfg.trial.budget_seconds / 60) + 1,
        "cpus_per_task": ex.cpus_per_trial,
        "job_name": loop_job.trial_job_name(cfg.lab.name),
        "use_srun": False,
    }
    optional = {"partition": ex.partition, "account": ex.account, "qos": ex.qos,
                "mem": f"{ex.mem_gb:g}GB" if ex.mem_gb else None,
                "gpus_per_node": ex.gpus_per_trial or None,
                "setup": list(ex.setup) or None}  # fmt: skip
    params.update({k: v for k, v in optional.items() if v is not None})
    extra = _extra(ex.extra_sbatch or [])
    if "no_requeue" not in extra:  # requeued by Slurm when lost, even where JobRequeue=0
        extra = {"requeue": True, **extra}
    params["additional_parameters"] = extra
    slurm = submitit.SlurmExecutor(folder=folder)
    slurm.update_parameters(**params)
    return slurm


class SlurmExecutor:
    """`[executor] kind = "slurm"`: each trial a Slurm job, `max_concurrent` at once (default
    `slots`), with the GPUs Slurm gives it; implements executor.Executor."""

    kind = KIND
    local_gpus = False  # Slurm gives each job its own GPUs

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.slots = cfg.executor.max_concurrent or cfg.executor.slots

    def start(self, spec: TrialSpec) -> SlurmTrial:
        return start(self.cfg, spec)

    def attach(self, spec: TrialSpec, handle: Handle, started_at: float) -> SlurmTrial | None:
        if handle.job_id is None:
            return None
        return attach(spec, handle.job_id, started_at)


def start(cfg: Config, spec: TrialSpec) -> SlurmTrial:
    spec.trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        job = executor(cfg, spec.trial_dir / "slurm").submit(Command(spec))
    except Exception as exc:  # sbatch missing, partition unknown, controller down…
        raise SlurmError(f"sbatch refused trial {spec.trial_id}: {exc}") from None
    return SlurmTrial(spec, job, time.time())


def attach(spec: TrialSpec, job_id: str, started_at: float) -> SlurmTrial | None:
    """Re-attach to a job a dead loop submitted; None when it has already ended (unless it
    ended lost and is requeued now, or nightlab has a verdict on it: lost a second time)."""
    require("submitit", "slurm", f"[executor] kind = \"{KIND}\"")
    from submitit.slurm.slurm import SlurmJob

    trial = SlurmTrial(spec, SlurmJob(spec.trial_dir / "slurm", job_id), started_at)
    ended = trial.state(force=True) in ENDED
    return None if ended and trial._kill is None else trial


class SlurmTrial:
    """A trial running as a Slurm job; implements executor.Trial (poll, kill, events).

    After a requeue the budget clock starts afresh: `started_at` is the moment the requeued
    run starts on a node (sacct's Start), so the lost run's time is not charged to it. While
    it waits in the queue, the clock runs from the requeue, or from the time Slurm makes it
    eligible (Slurm holds a requeued job back ~2 minutes), whichever is later: a job that never
    gets a node again times out instead of holding its slot forever; and nothing counts as a
    hang while the job is not running. The lost run's output stays in the logs, but only the
    requeued run's metrics count (the reader starts where the logs ended at the requeue).
    """

    poll_every = POLL_EVERY_S

    def __init__(self, spec: TrialSpec, job: Any, started_at: float) -> None:
        self.spec, self.job, self.started_at = spec, job, started_at
        self.job_id = str(job.job_id)
        self.events: list[dict[str, Any]] = []  # drained by the loop into the store
        self.last_output = time.time()
        self._kill: tuple[str, str] | None = None
        self._state, self._asked = "PENDING", 0.0
        self._signalled: float | None = None  # when a signal exit status was first seen
        done = _read_requeues(spec.trial_dir)  # recorded by an earlier loop
        self.requeues = len(done)
        self._restarted = not done  # the requeued run's start is known (no requeue: moot)
        self.reader = _reader(spec, done[-1]["offsets"] if done else None)
        if done:
            self.started_at = max(started_at, done[-1]["clock"])

    @property
    def handle(self) -> Handle:
        return Handle(kind=KIND, job_id=self.job_id)

    def fileno(self) -> None:
        return None  # nothing local to wait on: wait_any polls it every POLL_EVERY_S

    def state(self, force: bool = False) -> str:
        """The job's Slurm state (refreshed at most every STATE_EVERY_S); a lost job is
        requeued here, once, and a second loss sets the verdict."""
        now = time.time()
        if force or now - self._asked >= STATE_EVERY_S:
            self._asked = now
            attempts = sacct.runs(self.job_id)
            if attempts:  # [] or None: sacct hiccup, or not accounted yet: ask again later
                self._follow(attempts, now)
        return self._state

    def _follow(self, attempts: list[sacct.Attempt], now: float) -> None:
        state = attempts[-1].state
        restarts = len(attempts) - 1 + (state in REQUEUED)
        causes, by = [a.state for a in attempts], "slurm"
        if state in LOST:  # ended lost, or requeued by Slurm and sacct does not say so yet
            live = sacct.job(self.job_id)
            if live and live["JobState"] not in ENDED:
                state, restarts = live["JobState"], max(restarts, int(live["Restarts"]))
            # giving up: kill() scancels, so a job Slurm requeues after all never runs unseen
            elif self._kill is None and self.requeues >= MAX_REQUEUES:
                self.kill("killed", f"slurm: job {self.job_id} ended {state} again after "
                          "it was requeued once already: not requeued again")  # fmt: skip
            elif self._kill is None:
                if error := sacct.requeue(self.job_id):
                    self.kill("killed", f"slurm: job {self.job_id} ended {state} and could "
                              f"not be requeued: {error}")  # fmt: skip
                else:
                    state, restarts, by = "REQUEUED", restarts + 1, "nightlab"
        # the run going on now, if sacct has it (not while a requeued job has no record yet)
        current = attempts[restarts] if restarts < len(attempts) else None
        while self.requeues < restarts and self._kill is None:
            cause = causes[self.requeues] if self.requeues < len(causes) else "REQUEUED"
            if self.requeues >= MAX_REQUEUES:
                self.kill("killed", f"slurm: job {self.job_id} was requeued again ({cause}) "
                          "after it was requeued once already: not run a third time")  # fmt: skip
            else:
                self._requeued(cause, by, current, now)
        if not self._restarted and current and current.state not in WAITING:
            self._restarted = True  # the requeued run started: its own, fresh budget clock
            self.started_at = current.start or now
            self.last_output = max(self.last_output, self.started_at)
        self._state = state

    def _requeued(self, cause: str, by: str, current: sacct.Attempt | None, now: float) -> None:
        """Record a requeue: an event, the file a restarted loop reads, a fresh watch."""
        self.requeues += 1
        self._restarted = False
        eligible = sacct.epoch((sacct.job(self.job_id) or {}).get("EligibleTime"))
        self.started_at = max(now, eligible or now)
        self.last_output = now
        started = current.start if current and current.state not in WAITING else None
        for name in ("exit_code", "pid"):  # the lost run's, unless the requeued run (which
            path = self.spec.trial_dir / name  # deletes them first) already wrote its own
            if started is None or _mtime(path) < started:
                path.unlink(missing_ok=True)
        offsets = {name: _size(self.spec.trial_dir / name) for name in LOGS}
        self.reader = _reader(self.spec, offsets)
        done = _read_requeues(self.spec.trial_dir)
        done.append({"at": now, "after": cause, "by": by, "clock": self.started_at,
                     "offsets": offsets})  # fmt: skip
        _write_requeues(self.spec.trial_dir, done)
        self.events.append({
            "kind": "trial_requeued", "job_id": self.job_id, "after": cause, "by": by,
            "requeue": self.requeues, "eligible_at": eligible,
            "message": f"Slurm job {self.job_id} lost its run ({cause}) and was requeued by "
                       f"{by}: it starts over with a fresh budget; a second loss ends it",
        })  # fmt: skip

    def poll(self, now: float | None = None) -> Outcome | None:
        now = now or time.time()
        state = self.state()
        new = self.reader.read()
        if self.reader.grew or state in WAITING:
            self.last_output = now
        code = _exit_code(self.spec.trial_dir)  # written by the wrapper as its last act
        if code is not None and (code < 0 or code >= 128) and self._kill is None:
            state = self.state(force=True)  # killed by a signal: was it Slurm's doing?
            code = _exit_code(self.spec.trial_dir)  # gone if the job was requeued meanwhile
            if code is not None and state not in ENDED:
                self._signalled = self._signalled or now
                if now - self._signalled < SIGNAL_WAIT_S:
                    return None  # the job ends or is requeued in a moment: Slurm will say
            if code is not None and state in ENDED - {"COMPLETED", "FAILED"}:
                self._kill = ("killed", f"slurm: job {self.job_id} ended {state}")
        if code is None and state not in ENDED:
            self._check_limits(now, new)
            return None
        self.reader.read(final=True)
        if code is None:
            if self._kill is None:
                verdict = "timeout" if state == "TIMEOUT" else "killed"
                self._kill = (verdict, f"slurm: job {self.job_id} ended {state}")
        wall = max(0.0, now - self.started_at)  # 0: a requeued run ended before it started
        return conclude(self.spec, self.reader, code, self._kill, wall, None)

    def _check_limits(self, now: float, new: list[dict]) -> None:
        if broken := limit_broken(self, now, new):
            self.kill(*broken)

    def kill(self, status: str, reason: str, grace: float = 0.0) -> None:
        """scancel the job (Slurm signals its processes, then kills them after KillWait)."""
        if self._kill is None:
            self._kill = (status, reason)
            subprocess.run(["scancel", self.job_id], capture_output=True, timeout=30)
            self._asked = 0.0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _reader(spec: TrialSpec, offsets: dict[str, int] | None) -> MetricReader:
    """A metric reader of the trial folder that skips what the logs held at `offsets`."""
    reader = reader_for(spec)
    for tail in (*reader._text, reader._json):
        rel = tail.path.relative_to(spec.trial_dir).as_posix()
        tail.offset = (offsets or {}).get(rel, (offsets or {}).get(tail.path.name, 0))
    return reader


def _read_requeues(trial_dir: Path) -> list[dict[str, Any]]:
    try:
        done = json.loads((trial_dir / REQUEUES).read_text())
        return done if isinstance(done, list) else []
    except (OSError, ValueError):
        return []


def _write_requeues(trial_dir: Path, done: list[dict[str, Any]]) -> None:
    (trial_dir / REQUEUES).parent.mkdir(parents=True, exist_ok=True)
    files.write_json(trial_dir / REQUEUES, done, indent=1)


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
