"""MLflow: one run per trial (params, metric history, tags, artifacts).

The store is the record; MLflow a mirror written by a separate process (`python -m
nightlab.tracking.mirror`), so no slow server nor MLflow's import holds up the loop; it logs
every finished trial whose `mlflow_run_id` is still empty (a gap is caught up later).

What a trial wrote is hostile input: names MLflow would refuse are made valid or skipped
(`tracking_names` event), one trial that cannot be logged never holds up the others, and
artifacts go up as redacted copies, only into the lab's own folder (tracking/guard.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import IO, Any

from nightlab.config import CONFIG_NAME
from nightlab.store import paths
from nightlab.store.paths import LabPaths
from nightlab.store.redact import add_secret_names, redact, redact_bytes, redact_data
from nightlab.tracking import guard
from nightlab.tracking.points import MAX_KEY, metric_points, mlflow_key  # noqa: F401 (tests)
from nightlab.tracking.tags import run_name, trial_tags

RUN_ID_FILE = paths.MLFLOW_RUN_ID  # in the trial folder: the run a trial logged into itself
ARTIFACTS = (paths.PARAMS, paths.RESULT, paths.DIFF, paths.ENV, paths.STDOUT, paths.STDERR)
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "timeout": "KILLED", "killed": "KILLED",
          "pruned": "KILLED"}
# MLflow's answers that blame the data logged, not the server (other trials can still go)
DATA_ERRORS = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_ALREADY_EXISTS"}
NIGHT_RUN = "nightlab.night_run"  # the tag of a night's parent run


def default_uri(state_dir: Path) -> str:
    """sqlite in the lab's `.nightlab/mlflow.db` (see LabPaths.mlflow_uri)."""
    return LabPaths.of_state(state_dir).mlflow_uri


class Tracker:
    """Writes one finished trial to MLflow (called by the tracking process, see serve)."""

    def __init__(
        self, uri: str, experiment: str, artifact_dir: Path, night_id: str, night_name: str = ""
    ) -> None:
        self.night_id = night_id  # trial ids restart after a reset: runs are (night, trial)
        self.night_name = night_name or night_id[:12]  # the parent run's name (see run_name)
        self._night_run: str | None = None
        self.uri = uri
        self.experiment = experiment
        self.artifact_dir = artifact_dir
        self._client: Any = None
        self._experiment_id: str | None = None
        self.changed_names: dict[str, str | None] = {}  # of the last trial logged (see serve)

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

    def night_run(self) -> str:
        """The night's parent run (its trials' runs are nested in it): found by its tags,
        else created; when two processes raced to create it, the oldest."""
        if self._night_run is None:
            client = self._connect()
            found = client.search_runs(
                [self._experiment_id],
                f"tags.`{NIGHT_RUN}` = '1' and tags.`nightlab.night_id` = '{self.night_id}'",
                order_by=["attributes.start_time ASC"],
                max_results=1,
            )
            if found:
                run = found[0]
                if run.info.status != "RUNNING":  # a resumed night
                    client.update_run(run.info.run_id, status="RUNNING")
            else:
                note = f"nightlab night {self.night_id} of {self.experiment}: its trials' runs"
                tags = {NIGHT_RUN: "1", "nightlab.night_id": self.night_id,
                        "mlflow.note.content": redact(note)}  # fmt: skip
                run = client.create_run(self._experiment_id, tags=tags, run_name=self.night_name)
            self._night_run = run.info.run_id
        return self._night_run

    def close_night(self) -> None:
        """The night's run ends with the loop (a resumed night reopens it); never raises."""
        try:
            if self._night_run is not None:
                self._connect().set_terminated(self._night_run, status="FINISHED")
        except Exception:
            pass

    def open_run(self, trial_id: int) -> str:
        """Create a trial's run before it starts (`[tracking] trial_run`); returns its id."""
        tags = {"nightlab.trial_id": str(trial_id), "nightlab.night_id": self.night_id,
                "mlflow.parentRunId": self.night_run()}  # fmt: skip
        run = self._connect().create_run(
            self._experiment_id, tags=tags, run_name=run_name(self.night_name, trial_id)
        )
        return run.info.run_id

    def log_trial(self, trial: dict[str, Any], trial_dir: Path, maybe_logged: bool = True) -> str:
        """Create (or, when `maybe_logged`, find) the trial's run and fill it; returns the
        MLflow run id. A run the trial logged into itself (see open_run) keeps what the
        trial logged: nightlab adds only the params and metrics it does not have."""
        from mlflow.entities import Param, RunTag

        self.changed_names = {}
        client = self._connect()
        had = self._own_run(client, trial_dir, trial["id"])
        tags = {**trial_tags(trial, self.night_id), "mlflow.parentRunId": self.night_run()}
        found = (
            had is None
            and maybe_logged
            and client.search_runs(
                [self._experiment_id],
                f"tags.`nightlab.trial_id` = '{trial['id']}' "
                f"and tags.`nightlab.night_id` = '{self.night_id}'",
                max_results=1,
            )
        )
        if had is not None:
            run_id, had = had.info.run_id, had.data
        elif found:
            run_id = found[0].info.run_id
        else:
            run = client.create_run(
                self._experiment_id,
                start_time=int(trial["started_at"] * 1000),
                tags=tags,
                run_name=run_name(self.night_name, trial["id"]),
            )
            run_id = run.info.run_id
        ts = int((trial.get("ended_at") or time.time()) * 1000)
        metrics, self.changed_names = metric_points(trial.get("history", []), ts)
        params: dict[str, str] = {}
        for name, value in redact_data(trial["params"]).items():
            key = mlflow_key(name)
            if key is None or key in params:
                self.changed_names[str(name)[:300]] = None
            else:
                params[key] = str(value)[:6000]
                if key != name:
                    self.changed_names[str(name)[:300]] = key
        if had is not None:  # MLflow refuses to change a param the trial logged already
            params = {k: v for k, v in params.items() if k not in had.params}
            metrics = [m for m in metrics if m.key not in had.metrics]
        # MLflow's batch limits: 100 params, 100 tags, 1000 entries in all
        pairs = [Param(k, v) for k, v in params.items()]
        for i in range(0, max(len(pairs), 1), 100):
            tagged = [RunTag(k, v) for k, v in tags.items()] if i == 0 else []
            client.log_batch(run_id, params=pairs[i : i + 100], tags=tagged)
        for i in range(0, len(metrics), 1000):
            self._log_metrics(client, run_id, metrics[i : i + 1000])
        if guard.sealed(client.get_run(run_id).info.artifact_uri, self.artifact_dir):
            self._log_artifacts(client, run_id, trial_dir)
        client.set_terminated(run_id, status=STATUS.get(trial["status"], "FAILED"), end_time=ts)
        return run_id

    def _log_metrics(self, client: Any, run_id: str, metrics: list[Any]) -> None:
        """One batch; if the store refuses it while it answers (a file store cannot hold
        both `a` and `a/b`), a batch per key, leaving out the keys it refuses."""
        try:
            client.log_batch(run_id, metrics=metrics)
            return
        except Exception:
            if not self.reachable():
                raise
        by_key: dict[str, list[Any]] = {}
        for m in metrics:
            by_key.setdefault(m.key, []).append(m)
        for key, points in by_key.items():
            try:
                client.log_batch(run_id, metrics=points)
            except Exception:
                if not self.reachable():
                    raise
                self.changed_names[key] = None

    def _own_run(self, client: Any, trial_dir: Path, trial_id: int) -> Any:
        """The run the trial opened for itself (see open_run), or None: a run id file the
        trial wrote is trusted only for a run of this trial in this night's experiment."""
        from mlflow.exceptions import MlflowException

        opened = trial_dir / RUN_ID_FILE
        if opened.is_symlink() or not opened.is_file():
            return None
        own = opened.read_text(errors="replace").strip()[:100]
        try:
            run = client.get_run(own) if own else None
        except MlflowException as exc:
            if getattr(exc, "error_code", None) in {"RESOURCE_DOES_NOT_EXIST", *DATA_ERRORS}:
                return None  # not a run: the trial gets one of its own below
            raise
        tags = run.data.tags if run is not None else {}
        mine = (
            run is not None
            and run.info.experiment_id == self._experiment_id
            and tags.get("nightlab.trial_id") == str(trial_id)
            and tags.get("nightlab.night_id") == self.night_id
        )
        return run if mine else None

    @staticmethod
    def _log_artifacts(client: Any, run_id: str, trial_dir: Path) -> None:
        """The trial's files as redacted copies (the raw logs never leave the lab)."""
        with tempfile.TemporaryDirectory(prefix="nightlab-mlflow-") as tmp:
            for name in ARTIFACTS:
                path = trial_dir / name
                if path.is_symlink() or not path.is_file() or not path.stat().st_size:
                    continue  # a trial could plant a link to a file outside its folder
                copy = Path(tmp) / name
                copy.write_bytes(redact_bytes(path.read_bytes()))
                client.log_artifact(run_id, str(copy))

    def reachable(self) -> bool:
        """Whether the store answers now (after a failure: the trial's fault or the server's)."""
        if self._client is None:
            return False
        try:
            self._client.get_experiment(self._experiment_id)
            return True
        except Exception:
            return False


class TrackingProcess:
    """The loop's handle on the tracking process: wake it per trial, drain it at the end."""

    def __init__(
        self, db: Path, uri: str, experiment: str, artifact_dir: Path, log: Path, night_id: str,
        night_name: str = "",
    ):  # fmt: skip
        opts = {
            "db": str(db),
            "uri": uri,
            "experiment": experiment,
            "artifacts": str(artifact_dir),
            "night": night_id,
            "night_name": night_name,
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
                judged = (row.judgement or {}).get("stage") == "confirm"  # logged screened
                maybe = row.ended_at is None or row.ended_at < since or judged
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
                        error=redact(f"{type(exc).__name__}: {exc}")[:2000],
                    )
                if tracker.reachable():
                    continue  # this trial's data: the others are logged all the same
                break  # the server is likely down for all of them: wait, then retry
            if tracker.changed_names:
                with store.tx() as s:
                    Store.event(s, "tracking_names", trial_id=row.id, changed=tracker.changed_names)
            store.set_mlflow_run(row.id, run_id, logged=(row.verdict,))
            retry_at.pop(row.id, None)
        if not open_:
            tracker.close_night()
            return


def agents_key_env(lab: Path) -> str | None:
    """`[agents] api_key_env` of the lab's config (its value is redacted here too); None
    when unset or unreadable (the loop has read and checked the config already)."""
    try:
        raw = tomllib.loads((Path(lab) / CONFIG_NAME).read_text())
        name = raw.get("agents", {}).get("api_key_env")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def main() -> None:
    """Entry of the tracking process; its one argument is the JSON that TrackingProcess
    writes (this is plumbing between nightlab's own processes, not a user command)."""
    opts = json.loads(sys.argv[1])
    os.nice(10)  # the mirror yields the CPU to the trials and the loop
    add_secret_names(agents_key_env(LabPaths.of_db(opts["db"]).lab))
    tracker = Tracker(
        opts["uri"], opts["experiment"], Path(opts["artifacts"]), opts["night"],
        opts.get("night_name", ""),
    )  # fmt: skip
    serve(Path(opts["db"]), tracker, sys.stdin.buffer)


if __name__ == "__main__":
    main()
