"""What every executor's trials share with the loop that watches them: what a trial runs
(`TrialSpec`, built by launch.py), where it runs (`Handle`, recorded so a restarted loop
finds it again), how it ended (`Outcome`), and `wait_any`, the loop's sleep between polls.
The `Trial` and `Executor` protocols are in executor.py."""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nightlab.trials.executor import Trial


@dataclass
class TrialSpec:
    """One trial to run: its command, where, with what environment, and its limits."""

    trial_id: int
    command: str
    workdir: Path
    trial_dir: Path
    env: dict[str, str]
    budget_s: float
    hang_s: float | None
    metric: str
    reduce: str
    maximize: bool
    max_rss_mb: float | None = None
    sandbox: list[str] = field(default_factory=list)  # argv prefix: bwrap … --
    limits: Any = None  # [limits]: caps on what a trial may print and log (None: defaults)
    evaluate: str | None = None  # [trial] evaluate: the objective comes from it alone
    eval_sandbox: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    status: str  # succeeded|failed|timeout|killed|pruned
    exit_code: int | None
    wall_s: float
    peak_rss_mb: float | None
    objective: float | None
    metrics: dict[str, float]
    reason: str | None
    log_tail: str | None
    history: list[dict] = field(default_factory=list)
    pruning: dict | None = None  # a pruned trial's step, value and reference (the loop's)


@dataclass(frozen=True)
class Handle:
    """Where a started trial runs, as the store records it: what an executor needs to watch
    it again after the loop that started it died (`Executor.attach`)."""

    kind: str | None = None  # the executor that started it (None: recorded before kinds were)
    pid: int | None = None  # a process on this machine (it leads its own process group)
    pid_started_at: float | None = None  # its create time: tells the pid from a reused one
    job_id: str | None = None  # a job in a queue (a Slurm job id)


def wait_any(trials: Sequence[Trial], timeout: float, wake: int | None = None) -> None:
    """Sleep until one of `trials` ends, `wake` (an fd) turns readable, or `timeout` passes,
    whichever comes first. A trial without a file descriptor (`fileno()` is None: a Slurm
    job, an old kernel, a vanished pid) is polled every `poll_every` seconds instead."""
    fds, every = [], []
    for trial in trials:
        fd = trial.fileno()
        if fd is None:
            every.append(trial.poll_every)
        else:
            fds.append(fd)
    if every:
        timeout = min(timeout, max(every))
    if wake is not None:
        fds.append(wake)
    if fds:
        select.select(fds, [], [], timeout)
    else:
        time.sleep(timeout)
