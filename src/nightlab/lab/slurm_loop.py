"""`nightlab start LAB --slurm` and what `status` / `stop` do for a loop that runs as a Slurm
job (trials/loop_job.py has the job itself). The login node and the job share the lab
folder: the store says how the night goes, Slurm's queue says where the job is."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from nightlab.lab.errors import LabError
from nightlab.store.kinds import REQUEUED
from nightlab.trials import loop_job

if TYPE_CHECKING:
    from nightlab.lab.api import Lab


def submit(lab: Lab, args: list[str]) -> str:
    """Submit the loop job with `nightlab run` options `args`; returns the job id."""
    cfg = lab.config
    if cfg.executor.kind != "slurm":
        raise LabError(
            "`start --slurm` runs the loop as a Slurm job that submits its trials as Slurm "
            f'jobs: set [executor] kind = "slurm" in {lab.path}/nightlab.toml (now '
            f'"{cfg.executor.kind}")'
        )
    if "--dashboard" in args:
        raise LabError(
            "`--dashboard` with `--slurm` would serve from a compute node: run "
            f"`nightlab dashboard {lab.path}` on the login node instead"
        )
    from nightlab.loop import extras

    extras.check(cfg, _option(args, "--worker"))  # in this terminal, not in the job's log
    current = lab.status()
    if current["state"] == "running":
        raise LabError(f"{lab.name} is already running on {current['host']} (PID "
                       f"{current['pid']}); `nightlab stop` it first")  # fmt: skip
    if (queued := queued_job(lab)) is not None:
        job, state = queued
        raise LabError(f"{lab.name}'s loop job {job} is {state} in Slurm's queue; "
                       f"`nightlab stop {lab.path}` cancels it")  # fmt: skip
    return loop_job.submit(cfg, lab.path.resolve(), lab.state.resolve(), args)


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def refuse_beside_job(lab: Lab) -> None:
    """`run` / `start` beside the lab's loop job while Slurm still has it (waiting to start,
    or to resume a requeued night) would run the night twice once the job starts (the lab's
    lock may not hold across nodes): refused, unless this process is that job."""
    found = loop_job.recorded(lab.state)
    if found is None or loop_job.this_job() == found["job_id"]:
        return
    if (state := loop_job.queue_state(found["job_id"], lab.name)) is not None:
        job = found["job_id"]
        raise LabError(f"{lab.name}'s loop job {job} is {state} in Slurm's queue and runs (or "
                       f"resumes) the night itself; to run it here instead, `scancel {job}` "
                       f"first (`nightlab stop {lab.path}` would end the night)")  # fmt: skip


def queued_job(lab: Lab) -> tuple[str, str] | None:
    """(job id, Slurm state) of the lab's loop job while Slurm still has it."""
    found = loop_job.recorded(lab.state)
    if found is None:
        return None
    state = loop_job.queue_state(found["job_id"], lab.name)
    return None if state is None else (found["job_id"], state)


def describe(lab: Lab, status: dict[str, Any]) -> dict[str, Any] | None:
    """`status`'s `loop_job`: {job_id, queue} (queue None: no longer in Slurm's queue)."""
    found = loop_job.recorded(lab.state)
    if found is None:
        return None
    return {"job_id": found["job_id"], "queue": loop_job.queue_state(found["job_id"], lab.name)}


def stop(lab: Lab, current: dict[str, Any], now: bool) -> dict[str, Any] | None:
    """`stop` for a loop job: while the job waits in the queue to resume (`requeued`), or has
    not started its first run yet, cancel it; a running job stops through the store as any
    loop, and `--now` reaches it with SIGUSR2. None: not a loop job's business."""
    queued = queued_job(lab)
    if queued is None:
        return _left_queue(lab, current, now)
    job, state = queued
    if current["state"] == "running":
        if now and (error := loop_job.signal(job, "USR2")):
            raise LabError(f"could not signal the loop job {job}: {error}")
        return None  # the store's stop request (made by the caller) does the rest
    if current["state"] == REQUEUED:
        # the request first: a job that starts meanwhile opens its run stopping (the journal
        # carries it over), and is not cancelled under it
        _store(lab, lambda s: s.request_stop(current["run"], by=os.getpid(), loop_job=job))
        queued = queued_job(lab)
        if queued is not None and queued[1] == "RUNNING":
            return {**lab.status(), "resuming_job": job}
        _store(lab, lambda s: s.end_run(
            current["run"], "stopped", f"stopped by the user while its loop job {job} waited "
            "to resume (scancel)", by=os.getpid()))  # fmt: skip
    if error := loop_job.cancel(job):
        raise LabError(f"could not cancel the loop job {job} ({state}): {error}")
    return {**lab.status(), "cancelled_job": job, **left_trials(lab, now)}


def _store(lab: Lab, do: Any) -> None:
    from nightlab.store.db import Store

    store = Store(lab.db)
    try:
        do(store)
    finally:
        store.close()


def _left_queue(lab: Lab, current: dict[str, Any], now: bool) -> dict[str, Any] | None:
    """A night `requeued` whose loop job has left the queue (cancelled with a plain scancel,
    failed, timed out: the loop cannot tell these from a preemption) would stay `requeued`
    for good, `stop` saying "nothing to stop": stopping it ends it."""
    if current["state"] != REQUEUED:
        return None
    _store(lab, lambda s: s.end_run(
        current["run"], "stopped", "stopped by the user: its loop job had left Slurm's queue "
        "without resuming the night", by=os.getpid()))  # fmt: skip
    return {**lab.status(), "ended_requeued": True, **left_trials(lab, now)}


def left_trials(lab: Lab, now: bool) -> dict[str, list[str]]:
    """With `now`, once no loop holds the night: scancel the Slurm jobs of the trials it left
    running (the store names them; only jobs Slurm has under this lab's trial job name).
    They stay `running` in the record until the next `nightlab run` re-attaches and records
    them. {"cancelled_trial_jobs": [...]}, or {} without `now` or such trials."""
    if not now or not lab.db.is_file():
        return {}
    from sqlalchemy import select

    from nightlab.store import history
    from nightlab.store.db import Store, Trial

    store = Store(lab.db)
    try:
        with store.tx() as s:
            running = list(s.scalars(select(Trial.id).where(Trial.status == "running")))
        started = [history.started_as(store, trial) for trial in running]
    finally:
        store.close()
    jobs = [job for kind, job in started if kind == "slurm" and job]
    return {"cancelled_trial_jobs": loop_job.cancel_trials(jobs, lab.name)} if jobs else {}
