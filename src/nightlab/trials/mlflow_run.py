"""`[tracking] trial_run`: open the trial's MLflow run, then become the trial's command.

Runs as `python -m nightlab.trials.mlflow_run OPTS COMMAND` at the front of the trial
(inside the sandbox when there is one): it creates the run, writes its id to the trial
folder (so the tracking process fills that same run afterwards), and execs `/bin/sh -c
COMMAND` with MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID and MLFLOW_RUN_ID set. The exec
keeps the process, so budgets, signals and the exit code are the trial's own.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any


def wrap(command: str, opts: dict[str, Any]) -> str:
    """`command` preceded by the run opener (`opts`: uri, experiment, artifacts, night,
    trial_id)."""
    return shlex.join([sys.executable, "-m", __name__, json.dumps(opts), command])


def main() -> int:
    from nightlab.tracking import RUN_ID_FILE, Tracker

    opts, command = json.loads(sys.argv[1]), sys.argv[2]
    tracker = Tracker(opts["uri"], opts["experiment"], Path(opts["artifacts"]), opts["night"])
    try:
        run_id = tracker.open_run(int(opts["trial_id"]))
        experiment = tracker.experiment_id
    except Exception as exc:  # the trial fails with the reason, never runs untracked
        print(
            f"nightlab: could not open the trial's MLflow run at {opts['uri']}: "
            f"{type(exc).__name__}: {exc}. Fix the server or set [tracking] trial_run = false "
            "(a remote server from inside the sandbox needs [trial] network = true).",
            file=sys.stderr,
        )
        return 2
    trial_dir = os.environ.get("NIGHTLAB_TRIAL_DIR")
    if trial_dir:
        (Path(trial_dir) / RUN_ID_FILE).write_text(run_id)
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
