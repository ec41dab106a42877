"""What a loop running as a Slurm loop job (`nightlab start --slurm`, trials/loop_job.py)
does with Slurm's signals: SIGTERM (preempted, requeued or cancelled) and SIGUSR1 (the time
limit is near) make it *detach*: stop taking trials, leave its trial jobs running, close its
run as `requeued`; after SIGUSR1 it requeues its own job. SIGUSR2 (`stop --now` from the
login node) is a stop now, as SIGTERM is for a loop that is not a job."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from nightlab.store.db import Run, Store
from nightlab.store.kinds import REQUEUED
from nightlab.trials import loop_job, sacct


class LoopJob:
    def __init__(self, executor_kind: str, report: Callable[[str], None]) -> None:
        # only with Slurm trials: local trials would die with the job they left behind
        self.job = loop_job.this_job() if executor_kind == "slurm" else None
        self.report = report
        self.detach: str | None = None  # why the loop left the night to its requeued job
        self._requeue = False
        self.held: list[int] = []  # the signals `hold` holds
        self._kept: dict[int, Any] = {}

    def signals(self) -> list[int]:
        return [signal.SIGUSR1, signal.SIGUSR2] if self.job else []

    def hold(self, handler: Callable[[int, Any], None]) -> None:
        """From the run's start to its end, its opening, close and requeue included, send a
        loop job's signals (SIGUSR1, SIGUSR2, SIGTERM) to `handler`: left at their default,
        SIGUSR1 and SIGUSR2 would kill the loop mid-open or mid-close (its run left `running`,
        then `crashed`; its job not requeued). Nothing for a loop that is no job."""
        self.held = [*self.signals(), signal.SIGTERM] if self.job else []
        self._kept = {n: signal.signal(n, handler) for n in self.held}

    def release(self) -> None:
        self.give_back(self._kept)
        self._kept = {}

    def take(self, handler: Callable[[int, Any], None], *signums: int) -> dict[int, Any]:
        """Send `signums` to `handler` (those `hold` holds stay held); the handlers replaced."""
        return {n: signal.signal(n, handler) for n in signums if n not in self.held}

    @staticmethod
    def give_back(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def why(self, end: str) -> str | None:
        """The close's reason when the night detached (ended `requeued`), else None."""
        return self.detach if end == REQUEUED else None

    def resume(self, loop: Any, store: Store) -> None:
        """A restart of this job resumes its night when the last run is one this job opened
        (`requeued`, or `running`/`crashed`: killed outright): the options that set the
        night's clocks (`hours`, the finish-up), passed again by the script, are dropped, so
        the night keeps its end time and its finish-up request. Decided from the record, not
        from SLURM_RESTART_COUNT: a job requeued before it opened a run (preempted as it
        started, a node failure) still sets them, and does not run a night without its
        --run-hours."""
        if not self.job:
            return
        with store.tx() as s:
            last = s.scalars(select(Run).order_by(Run.id.desc()).limit(1)).first()
            ours = last is not None and (last.options or {}).get("loop_job") == self.job
            if ours and last.state in (REQUEUED, "running", "crashed"):
                loop.hours, loop.finish_request = None, None

    def heard(self, signum: int) -> bool:
        """Take SIGTERM / SIGUSR1 as a detach (True); anything else is not for it."""
        if not self.job or signum not in (signal.SIGTERM, signal.SIGUSR1):
            return False
        if self.detach is None:  # after a SIGTERM, Slurm requeues (or ends) the job itself
            self._requeue = signum == signal.SIGUSR1
        self.detach = self.detach or (
            f"the loop job {self.job} nears its time limit: requeued, it resumes"
            if signum == signal.SIGUSR1
            else f"Slurm stopped the loop job {self.job} (preempted or requeued); "
            "it resumes when Slurm starts it again"
        )
        return True

    def requeue_if_due(self, lab: object, end: str) -> None:
        """After the run is closed as `end`: requeue this job when its time limit is why it
        detached. A night that ended otherwise (stopped now, finished) before or while SIGUSR1
        came is not requeued: the restart, without --hours, would begin a new night."""
        if not (self._requeue and self.job and end == REQUEUED):
            return
        self.report(f"requeueing the loop job {self.job} (its trial jobs run on)")
        if error := sacct.requeue(self.job):
            self.report(f"the loop job could not be requeued: {error}; resume the night with "
                        f"`nightlab start {lab} --slurm`")  # fmt: skip
