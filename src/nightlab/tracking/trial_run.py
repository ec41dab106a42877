"""`[tracking] trial_run`: open the trial's MLflow run, then become the trial's command.

Runs as `python -m nightlab.tracking.trial_run OPTS COMMAND` at the front of the trial
(inside the sandbox when there is one): it creates the run, writes its id to the trial's
out/ folder (the loop copies it into the record, and the tracking process fills that same
run afterwards), and execs `/bin/sh -c
COMMAND` with MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID and MLFLOW_RUN_ID set. The exec
keeps the process, so budgets, signals and the exit code are the trial's own.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from nightlab.store.files import write_atomic


def wrap(command: str, opts: dict[str, Any]) -> str:
    """`command` preceded by the run opener (`opts`: uri, experiment, artifacts, night,
    trial_id)."""
    return shlex.join([sys.executable, "-m", __name__, json.dumps(opts), command])


def prepare(opts: dict[str, Any], timeout: float = 300) -> str | None:
    """Create the MLflow store and experiment once, before trials open runs in parallel
    (concurrent first connections to a new sqlite store break its migration); the error,
    or None."""
    argv = [sys.executable, "-m", __name__, "--prepare", json.dumps(opts)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"no answer from {opts['uri']} in {timeout:g} s"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return None if done.returncode == 0 else (lines[-1] if lines else f"exit {done.returncode}")


def main() -> int:
    from nightlab.tracking.mirror import RUN_ID_FILE, Tracker

    if sys.argv[1] == "--prepare":
        opts = json.loads(sys.argv[2])
        tracker = Tracker(opts["uri"], opts["experiment"], Path(opts["artifacts"]), opts["night"],
                          opts.get("night_name", ""))  # fmt: skip
        tracker.prepare()
        tracker.night_run()  # once, before trials open their runs in it in parallel
        return 0
    opts, command = json.loads(sys.argv[1]), sys.argv[2]
    tracker = Tracker(opts["uri"], opts["experiment"], Path(opts["artifacts"]), opts["night"],
                      opts.get("night_name", ""))  # fmt: skip
    out = os.environ.get("NIGHTLAB_METRICS")  # in the trial's own out/, the one it writes
    opened = Path(out).parent / RUN_ID_FILE if out else None
    try:
        experiment = tracker.prepare()
        if opened is not None and opened.is_file():  # a requeued job: the same run again
            run_id = opened.read_text().strip()
        else:
            run_id = tracker.open_run(int(opts["trial_id"]))
    except Exception as exc:  # the trial fails with the reason, never runs untracked
        print(
            f"nightlab: could not open the trial's MLflow run at {opts['uri']}: "
            f"{type(exc).__name__}: {exc}. Fix the server or set [tracking] trial_run = false "
            "(a remote server from inside the sandbox needs [trial] network = true).",
            file=sys.stderr,
        )
        return 2
    if opened is not None:
        write_atomic(opened, run_id)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": opts["uri"],
        "MLFLOW_EXPERIMENT_ID": str(experiment),
        "MLFLOW_RUN_ID": run_id,
    }
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("/bin/sh", ["/bin/sh", "-c", command], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
