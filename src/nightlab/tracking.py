"""MLflow: one run per trial (params, metric history, tags, artifacts).

The store is the record; MLflow is a mirror written from a background thread so a slow or
unreachable tracking server never holds up the loop. A trial whose run is not yet in
MLflow (`mlflow_run_id` empty) is logged again when the loop next starts.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARTIFACTS = ("params.json", "result.json", "diff.patch", "env.json", "stdout.log", "stderr.log")
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "timeout": "KILLED", "killed": "KILLED"}


def default_uri(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'mlflow.db').resolve()}"


class Tracker:
    """Writes finished trials to MLflow (synchronously; see TrackingThread)."""

    def __init__(self, uri: str, experiment: str, artifact_dir: Path) -> None:
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

    def log_trial(self, trial: dict[str, Any], trial_dir: Path) -> str:
        """Create (or find) the trial's run and fill it; returns the MLflow run id."""
        from mlflow.entities import Metric, Param, RunTag

        client = self._connect()
        tags = {
            "nightlab.trial_id": str(trial["id"]),
            "nightlab.cycle_trace_id": trial["trace_id"],
            "nightlab.kind": trial["kind"],
            "nightlab.status": trial["status"],
            "nightlab.verdict": trial.get("verdict") or "",
            "nightlab.dimension": trial.get("dimension") or "",
            "nightlab.hypothesis": (trial.get("hypothesis") or "")[:4000],
            "nightlab.commit": trial["commit"],
            "nightlab.seed": str(trial["seed"]),
        }
        found = client.search_runs(
            [self._experiment_id], f"tags.`nightlab.trial_id` = '{trial['id']}'", max_results=1
        )
        if found:
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
        params = [Param(k, str(v)[:6000]) for k, v in trial["params"].items()]
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


class TrackingThread:
    """Drains a queue of finished trials into MLflow; failures are reported, not raised."""

    def __init__(
        self,
        tracker: Tracker,
        on_logged: Callable[[int, str], None],
        on_error: Callable[[int, str], None],
    ) -> None:
        self.tracker = tracker
        self.on_logged = on_logged
        self.on_error = on_error
        self.queue: queue.Queue[tuple[dict[str, Any], Path] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="nightlab-mlflow", daemon=True)
        self.thread.start()

    def submit(self, trial: dict[str, Any], trial_dir: Path) -> None:
        self.queue.put((trial, trial_dir))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            trial, trial_dir = item
            try:
                self.on_logged(trial["id"], self.tracker.log_trial(trial, trial_dir))
            except Exception as exc:  # an unreachable server must not end the night
                self.on_error(trial["id"], f"{type(exc).__name__}: {exc}")

    def close(self, timeout: float = 120.0) -> int:
        """Finish what is queued (up to `timeout`); returns how many were left behind."""
        self.queue.put(None)
        self.thread.join(timeout)
        return self.queue.qsize() if self.thread.is_alive() else 0
