"""Where a lab keeps what nightlab writes: every `.nightlab/...` path is built here.

    .nightlab/
      state.db            the store (mlflow.db, mlartifacts/: the default MLflow mirror)
      trials/<id>/        one trial's folder: params.json, stdout.log, stderr.log,
                          metrics.jsonl, result.json, diff.patch, env.json (the record),
                          out/ (the trial's own: params copy, metrics it logs, artifacts/),
                          outputs/, eval/, eval.log, ...
      artifacts/          storyline.md, workpad.md, shared_todo.md, mentor_notes.md
      reports/<night>/    the morning report
      worktrees/<t>/      the trees trials run in: plain copies of a commit, recreated per trial
      loop.lock, loop.log, tracking.log, FINISH_UP.json, agents/, ...

Standard library only: the fast views use it too.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".nightlab"

# the files of a trial folder, `.nightlab/trials/<id>/`
PARAMS = "params.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"
METRICS = "metrics.jsonl"
RESULT = "result.json"
DIFF = "diff.patch"
ENV = "env.json"
ARTIFACTS = "artifacts"
SPEC = "spec.json"  # the normalised training spec the trial ran with
PID = "pid"
EXIT_CODE = "exit_code"
MLFLOW_RUN_ID = "mlflow_run_id"  # the MLflow run a trial logged into itself
OUTPUTS = "outputs"
OUT = "out"  # the one folder of its own a trial may write: metrics.jsonl, artifacts/, params
EVAL = "eval"  # sealed evaluation: the base's protected files, run on the trial's artifacts
EVAL_LOG = "eval.log"  # what the evaluation printed
EVAL_EXIT_CODE = "eval_exit_code"
LOGS = (STDERR, STDOUT)  # a trial's logs, in the order a tail shows them

LOCK_NAME = "loop.lock"

# the MLflow mirror's default home (kept by `reset` unless `--drop-tracking`)
MLFLOW_DB = "mlflow.db"
MLARTIFACTS = "mlartifacts"


class LabPaths:
    """The paths of one lab's state; `LabPaths(lab).trial(7)` is `.nightlab/trials/7`."""

    __slots__ = ("lab", "state")

    def __init__(self, lab: str | Path, state: str | Path | None = None) -> None:
        self.lab = Path(lab)
        self.state = self.lab / STATE_DIR if state is None else Path(state)

    @classmethod
    def of_state(cls, state: str | Path) -> LabPaths:
        """The paths around a state folder (a lab's `.nightlab/`)."""
        return cls(Path(state).parent, state)

    @classmethod
    def of_db(cls, db: str | Path) -> LabPaths:
        """The paths around a store file (`.nightlab/state.db`)."""
        return cls.of_state(Path(db).parent)

    def __repr__(self) -> str:
        return f"LabPaths({str(self.state)!r})"

    # the store and its neighbours ---------------------------------------------------
    @property
    def db(self) -> Path:
        return self.state / "state.db"

    @property
    def lock(self) -> Path:
        """The loop's lock: one loop per lab, holding its PID."""
        return self.state / LOCK_NAME

    @property
    def loop_log(self) -> Path:
        """The output of a loop started in the background (`nightlab start`)."""
        return self.state / "loop.log"

    @property
    def finish_up(self) -> Path:
        """The finish-up request, mirrored for people and scripts."""
        return self.state / "FINISH_UP.json"

    # trials -------------------------------------------------------------------------
    @property
    def trials(self) -> Path:
        return self.state / "trials"

    def trial(self, trial_id: int) -> Path:
        """A trial's folder (its files: PARAMS, STDOUT, RESULT, ... in this module)."""
        return self.trials / str(int(trial_id))

    @property
    def worktrees(self) -> Path:
        return self.state / "worktrees"

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    @property
    def repair(self) -> Path:
        """Auto-repair's ledger and clones."""
        return self.state / "repair"

    @property
    def autofix_configs(self) -> Path:
        return self.state / "autofix_configs"

    @property
    def agents(self) -> Path:
        """One folder per coding-agent call (prompt, output, decision)."""
        return self.state / "agents"

    # tracking -----------------------------------------------------------------------
    @property
    def tracking_log(self) -> Path:
        return self.state / "tracking.log"

    @property
    def tracking_lock(self) -> Path:
        """Held by the one MLflow mirror process of this lab."""
        return self.state / "tracking.lock"

    @property
    def mlflow_db(self) -> Path:
        return self.state / MLFLOW_DB

    @property
    def mlflow_uri(self) -> str:
        """The default MLflow tracking URI: sqlite in `.nightlab/mlflow.db`."""
        return f"sqlite:///{self.mlflow_db.resolve()}"

    @property
    def mlartifacts(self) -> Path:
        return self.state / MLARTIFACTS

    # what people read ---------------------------------------------------------------
    @property
    def artifacts(self) -> Path:
        """The rendered storyline, workpad, TODO list and mentor notes."""
        return self.state / "artifacts"

    @property
    def storyline(self) -> Path:
        return self.artifacts / "storyline.md"

    @property
    def workpad(self) -> Path:
        return self.artifacts / "workpad.md"

    @property
    def shared_todo(self) -> Path:
        return self.artifacts / "shared_todo.md"

    @property
    def mentor_notes(self) -> Path:
        return self.artifacts / "mentor_notes.md"

    @property
    def reports(self) -> Path:
        return self.state / "reports"

    def report(self, night_id: str) -> Path:
        """One night's report folder."""
        return self.reports / night_id
