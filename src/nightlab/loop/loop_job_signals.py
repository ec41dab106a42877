"""What a loop running as a Slurm loop job (`nightlab start --slurm`, trials/loop_job.py)
does with Slurm's signals: SIGTERM (preempted, requeued or cancelled) and SIGUSR1 (the time
limit is near) make it *detach*: stop taking trials, leave its trial jobs running, close its
run as `requeued`; after SIGUSR1 it requeues its own job. SIGUSR2 (`stop --now` from the
login node) is a stop now, as SIGTERM is for a loop that is not a job."""

from __future__ import annotations

import signal
from collections.abc import Callable

from nightlab.trials import loop_job, sacct


class LoopJob:
    def __init__(self, executor_kind: str, report: Callable[[str], None]) -> None:
        # only with Slurm trials: local trials would die with the job they left behind
        self.job = loop_job.this_job() if executor_kind == "slurm" else None
        self.report = report
        self.detach: str | None = None  # why the loop left the night to its requeued job
        self._requeue = False

    def signals(self) -> list[int]:
        return [signal.SIGUSR1, signal.SIGUSR2] if self.job else []

    def heard(self, signum: int) -> bool:
        """Take SIGTERM / SIGUSR1 as a detach (True); anything else is not for it."""
        if not self.job or signum not in (signal.SIGTERM, signal.SIGUSR1):
            return False
        self._requeue = self._requeue or signum == signal.SIGUSR1
        self.detach = self.detach or (
            f"the loop job {self.job} nears its time limit: requeued, it resumes"
            if signum == signal.SIGUSR1
            else f"Slurm stopped the loop job {self.job} (preempted or requeued); "
            "it resumes when Slurm starts it again"
        )
        return True

    def requeue_if_due(self, lab: object) -> None:
        """After the run is closed: requeue this job when its time limit is why it ended."""
        if not (self._requeue and self.job):
            return
        self.report(f"requeueing the loop job {self.job} (its trial jobs run on)")
        if error := sacct.requeue(self.job):
            self.report(f"the loop job could not be requeued: {error}; resume the night with "
                        f"`nightlab start {lab} --slurm`")  # fmt: skip
