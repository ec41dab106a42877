"""MLflow: one run per trial (params, metric history, tags, artifacts).

The store is the record; MLflow is a mirror written by a separate process
(`python -m nightlab.tracking.mirror`) so that neither a slow or unreachable server nor MLflow's
own CPU and import time hold up the loop. That process logs every finished trial whose
`mlflow_run_id` is still empty, so a gap (a crash, a server down) is caught up later.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from nightlab.store import paths
from nightlab.store.paths import LabPaths
from nightlab.store.redact import redact_data

RUN_ID_FILE = paths.MLFLOW_RUN_ID  # in the trial folder: the run a trial logged into itself
ARTIFACTS = (paths.PARAMS, paths.RESULT, paths.DIFF, paths.ENV, paths.STDOUT, paths.STDERR)
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "timeout": "KILLED", "killed": "KILLED"}


def default_uri(state_dir: Path) -> str:
    """sqlite in the lab's `.nightlab/mlflow.db` (see LabPaths.mlflow_uri)."""
    return LabPaths.of_state(state_dir).mlflow_uri


class Tracker:
    """Writes one finished trial to MLflow (called by the tracking process, see serve)."""

    def __init__(self, uri: str, experiment: str, artifact_dir: Path, night_id: str) -> None:
        self.night_id = night_id  # trial ids restart after a reset: runs are (night, trial)
        self.uri = uri
        self.experiment = experiment
        self.artifact_dir = artifact_dir
        self._client: Any = None
        self._experiment_id: str | None = None

    def _connect(self) -> Any:
        if self._client is None:
            import logging

            logging.getLogger("mlflow").setLevel(logging.WARNING)
            logging.getLogger("alembic").setLevel(logging.WARNING)
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                self.artifact_dir.mkdir(parents=True, exist_ok=True)
                exp_id = client.create_experiment(
                    self.experiment, artifact_location=self.artifact_dir.resolve().as_uri()
                )
            else:
                exp_id = exp.experiment_id
            self._client, self._experiment_id = client, exp_id
        return self._client

    def prepare(self) -> str:
        """Create the store's tables and the experiment if need be; the experiment id."""
        self._connect()
        assert self._experiment_id is not None
        return self._experiment_id

    def open_run(self, trial_id: int) -> str:
        """Create a trial's run before it starts (`[tracking] trial_run`); returns its id."""
        run = self._connect().create_run(
            self._experiment_id,
            tags={"nightlab.trial_id": str(trial_id), "nightlab.night_id": self.night_id},
            run_name=f"trial-{trial_id}",
        )
        return run.info.run_id

    def log_trial(self, trial: dict[str, Any], trial_dir: Path, maybe_logged: bool = True) -> str:
        """Create (or, when `maybe_logged`, find) the trial's run and fill it; returns the
        MLflow run id. A run the trial logged into itself (see open_run) keeps what the
        trial logged: nightlab adds only the params and metrics it does not have."""
        from mlflow.entities import Metric, Param, RunTag

        client = self._connect()
        opened = trial_dir / RUN_ID_FILE
        own = opened.read_text().strip() if opened.is_file() else ""
        tags = {
            "nightlab.trial_id": str(trial["id"]),
            "nightlab.night_id": self.night_id,
            "nightlab.cycle_trace_id": trial["trace_id"],
            "nightlab.kind": trial["kind"],
            "nightlab.status": trial["status"],
            "nightlab.verdict": trial.get("verdict") or "",
            "nightlab.dimension": trial.get("dimension") or "",
            "nightlab.hypothesis": (trial.get("hypothesis") or "")[:4000],
            "nightlab.commit": trial["commit"],
            "nightlab.seed": str(trial["seed"]),
        }
        tags = redact_data(tags)
        found = (
            not own
            and maybe_logged
            and client.search_runs(
                [self._experiment_id],
                f"tags.`nightlab.trial_id` = '{trial['id']}' "
                f"and tags.`nightlab.night_id` = '{self.night_id}'",
                max_results=1,
            )
        )
        had: Any = None
        if own:
            run_id = own
            had = client.get_run(run_id).data
        elif found:
            run_id = found[0].info.run_id
        else:
            run = client.create_run(
                self._experiment_id,
                start_time=int(trial["started_at"] * 1000),
                tags=tags,
                run_name=f"trial-{trial['id']}",
            )
            run_id = run.info.run_id
        ts = int((trial.get("ended_at") or time.time()) * 1000)
        metrics = [
            Metric(p["name"], p["value"], ts, int(p["step"]))
            for p in trial.get("history", [])
            if math.isfinite(p["value"])
        ]
        params = [Param(k, str(v)[:6000]) for k, v in redact_data(trial["params"]).items()]
        if had is not None:  # MLflow refuses to change a param the trial logged already
            params = [p for p in params if p.key not in had.params]
            metrics = [m for m in metrics if m.key not in had.metrics]
        for start in range(0, max(len(metrics), 1), 1000):
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 1000],
                params=params if start == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [],
            )
        for name in ARTIFACTS:
            path = trial_dir / name
            if path.is_file() and path.stat().st_size:
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status=STATUS.get(trial["status"], "FAILED"), end_time=ts)
        return run_id


class TrackingProcess:
    """The loop's handle on the tracking process: wake it per trial, drain it at the end."""

    def __init__(
        self, db: Path, uri: str, experiment: str, artifact_dir: Path, log: Path, night_id: str
    ):
        opts = {
            "db": str(db),
            "uri": uri,
            "experiment": experiment,
            "artifacts": str(artifact_dir),
            "night": night_id,
        }
        # A remote server that is down should fail a call in seconds, not minutes of retries.
        env = {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
            **os.environ,
        }
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nightlab.tracking.mirror", json.dumps(opts)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.log = log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, trial_id: int) -> None:
        """A trial finished: log it now rather than at the next scan."""
        try:
            self.proc.stdin.write(f"{trial_id}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process is gone; its trials are logged by the next one

    def close(self, timeout: float = 120.0) -> bool:
        """Let it log what is left (up to `timeout`); False if it had to be stopped."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
            return self.proc.returncode == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


def serve(db: Path, tracker: Tracker, wake: IO[bytes], scan_s: float = 5.0) -> None:
    """Log unlogged finished trials until `wake` closes; retry failures with backoff."""
    from nightlab.store.db import Store
    from nightlab.store.folder import read_history

    where = LabPaths.of_db(db)
    # One mirror per lab: a process left by a loop that died finishes its pass first.
    lock = open(where.tracking_lock, "w")  # noqa: SIM115 (held for the whole life)
    fcntl.flock(lock, fcntl.LOCK_EX)
    since = time.time()  # a trial that ended later cannot have a run from an earlier process
    store = Store(db)
    retry_at: dict[int, tuple[float, float]] = {}  # trial → (next attempt, backoff)
    open_ = True
    while True:
        if open_:
            ready, _, _ = select.select([wake], [], [], scan_s)
            if ready and not os.read(wake.fileno(), 65536):
                open_ = False  # the loop has ended: one last pass, then exit
        rows = store.unlogged_trials()
        now = time.time()
        for row, trace in rows:
            if retry_at.get(row.id, (0.0, 0.0))[0] > now and open_:
                continue
            trial_dir = where.trial(row.id)
            record = {**row.record(trace), "history": read_history(trial_dir)}
            try:
                maybe = row.ended_at is None or row.ended_at < since
                run_id = tracker.log_trial(record, trial_dir, maybe_logged=maybe)
            except Exception as exc:  # a server down must not lose the trial: retry later
                wait = min(retry_at.get(row.id, (0.0, 2.5))[1] * 2, 300.0)
                retry_at[row.id] = (now + wait, wait)
                with store.tx() as s:
                    Store.event(
                        s,
                        "tracking_error",
                        trial_id=row.id,
                        retry_in_s=wait,
                        error=f"{type(exc).__name__}: {exc}"[:2000],
                    )
                break  # the server is likely down for all of them: wait, then retry
            store.set_mlflow_run(row.id, run_id)
            retry_at.pop(row.id, None)
        if not open_:
            return


def main() -> None:
    """Entry of the tracking process; its one argument is the JSON that TrackingProcess
    writes (this is plumbing between nightlab's own processes, not a user command)."""
    opts = json.loads(sys.argv[1])
    os.nice(10)  # the mirror yields the CPU to the trials and the loop
    tracker = Tracker(opts["uri"], opts["experiment"], Path(opts["artifacts"]), opts["night"])
    serve(Path(opts["db"]), tracker, sys.stdin.buffer)


if __name__ == "__main__":
    main()
