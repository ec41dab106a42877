"""`nightlab stop`: through the store for a running loop (and SIGTERM for `--now` on its
host), through Slurm for a loop job (lab/slurm_loop.py); a lab that is not running is left
as it is."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from nightlab.lab import slurm_loop
from nightlab.lab.errors import LabError

if TYPE_CHECKING:
    from nightlab.lab.api import Lab


def stop(lab: Lab, *, now: bool, wait: bool, timeout: float) -> dict[str, Any]:
    """Ask the running loop to stop after its running trials (`now`: kill them too).
    A lab not running is left as it is (`not_running` set; with `now`, the Slurm trial
    jobs its loop left running are cancelled); a queued loop job cancelled."""
    current = lab.status()
    job = slurm_loop.stop(lab, current, now) if current.get("loop_job") else None
    if job is not None:
        return job
    if current["state"] != "running":  # `now`: the Slurm trial jobs it left, cancelled
        return {**current, "not_running": True, **slurm_loop.left_trials(lab, now)}
    from nightlab.store.db import Store

    store = Store(lab.db)
    try:
        store.request_stop(current["run"], now=now, by=os.getpid())
    finally:
        store.close()
    as_job = (current.get("loop_job") or {}).get("queue") == "RUNNING"
    if now and not as_job:  # a loop job got its signal through Slurm
        if current["host"] != socket.gethostname():
            raise LabError(
                f"the loop runs on {current['host']}: `stop --now` works only "
                "there; a graceful stop has been requested"
            )
        try:
            os.kill(current["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    if wait:
        deadline = time.time() + timeout
        while lab.status()["state"] == "running":
            if time.time() > deadline:
                raise LabError(f"still running after {timeout:g}s")
            time.sleep(0.2)
    return lab.status()
