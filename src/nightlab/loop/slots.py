"""The slots in flight: a trial is launched on a free slot (its folder, worktree, command
and environment prepared), watched until it ends, checked for protected files it changed,
and handed to the loop to record; a restarted loop watches again what a dead one left.

Local and Slurm trials are told apart only here and in trials/.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nightlab.loop.night import Night, NightError, Run
from nightlab.loop.pruning import CHECK_S as PRUNE_CHECK_S
from nightlab.loop.pruning import Pruning
from nightlab.ratchet import Best
from nightlab.store import files, fmt, folder, history, kinds, paths
from nightlab.store.db import Trial
from nightlab.trials import executor, launch, local, protect, training_spec
from nightlab.trials.workspace import WorkspaceError
from nightlab.trials.worktrees import WorktreePool

POLL_S = 0.01
CHECK_S = 0.1  # budget, hang and divergence checks of running trials

Record = Callable[[int, str, str, local.Outcome], None]  # trial, trace, kind, outcome


@dataclass
class Active:
    """A trial occupying a slot."""

    trial: executor.Trial
    trace: str  # its cycle's trace id
    kind: str  # baseline|trial|confirm|test
    tree: str  # its tree; "" when re-attached from a loop that died
    commit: str = ""  # the code the tree holds (its own files are not outputs)


class Slots:
    def __init__(
        self, night: Night, runner: executor.Executor, record: Record, pruning: Pruning
    ) -> None:
        self.night, self.executor, self.record = night, runner, record
        self.pruning = pruning
        self.running: dict[int, Active] = {}  # by slot
        self.trees: WorktreePool | None = None
        self.gpus: list[str] = []
        self.data: Any = None
        self.mlflow: dict[str, Any] | None = None  # a trial's own MLflow run, if tracked

    def open(self, gpus: list[str], mlflow: dict[str, Any] | None) -> None:
        """Ready to launch: the GPUs, the shared data's fingerprint, the worktree pool."""
        night = self.night
        self.gpus, self.mlflow = gpus, mlflow
        self.data = folder.fingerprint(night.lab, night.cfg.trial.share)
        busy = {a.tree for a in self.running.values() if a.tree}
        self.trees = WorktreePool(night.ws, night.cfg.trial.share, busy=busy)

    def close(self) -> None:
        if self.trees:
            self.trees.close()

    @property
    def free(self) -> bool:
        return len(self.running) < self.night.slots

    def kinds(self) -> list[str]:
        return [a.kind for a in self.running.values()]

    def in_flight(self) -> list[dict[str, Any]]:
        return [{"trial": a.trial.spec.trial_id, "kind": a.kind} for a in self.running.values()]

    # ------------------------------------------------------------------ launch
    def launch(self, run: Run, worker: str) -> int:
        """Record and start a trial of `run.commit` (the admitted code) on a free slot."""
        night, cfg, decision, kind = self.night, self.night.cfg, run.decision, run.kind
        best: Best | None = None if kind == "baseline" else (run.best or night.best())
        base = best.commit if best else night.base_commit
        params = cfg.normalize({**(best.params if best else cfg.defaults()), **decision.params})
        slot = min(set(range(night.slots)) - set(self.running))
        # the normalised spec is what runs; it is checked before anything is recorded
        ran = None
        if cfg.trial.spec:
            ran = training_spec.for_commit(cfg, night.reader(run.commit))
        trial_id, trace = night.journal.open_trial(
            worker, decision, usage=run.usage, kind=kind, params=params, seed=run.seed,
            slot=slot, commit=run.commit, base_commit=base,
            base_trial_id=best.trial if best else None, confirms=run.confirms,
        )  # fmt: skip
        if run.commit != base:
            night.ws.keep_trial(trial_id, run.commit)
        trial_dir = night.trial_dir(trial_id)
        try:
            tree, workdir = self.trees.acquire(run.commit)
        except WorkspaceError as exc:  # e.g. a file name the disk refuses: the trial fails
            self._unlaunchable(trial_id, trace, kind, f"its code could not be checked out: {exc}")
            return trial_id
        diff = night.ws.diff(night.base_commit, run.commit)
        folder.prepare(trial_dir, params, diff, run.commit, self.data)
        if cfg.trial.evaluate:  # the sealed evaluation's own copy of the protected files
            self._evaluation_files(trial_dir / paths.EVAL)
        gpus = self.gpus if self.executor.local_gpus else None  # else each trial gets its own
        build = launch.build(
            cfg, night.lab, trial_dir, trial_id, params, run.seed, workdir, slot, gpus,
            mlflow=self.mlflow, protected=night.protected, test=kind == "test",
            tree=night.ws.tree_root(tree),
        )  # fmt: skip
        if ran is not None:  # the normalised spec is what runs, and is recorded
            (trial_dir / "spec.json").write_text(ran.text())
            (trial_dir / paths.OUT / "spec.json").write_text(ran.text())  # the trial's copy
            build.env["NIGHTLAB_SPEC"] = str(trial_dir / paths.OUT / "spec.json")
        running = self.executor.start(build)
        night.journal.started(trial_id, trace, running, slot, tree)
        self.pruning.started(trial_id, kind, params, decision.asked)
        self.running[slot] = Active(running, trace, kind, tree, run.commit)
        shown = " ".join(f"{k}={fmt.value(v)}" for k, v in decision.params.items())
        if decision.edits:
            shown += f" edits {', '.join(sorted({e.file for e in decision.edits}))}"
        night.report(f"trial {trial_id} ({kind}) started on slot {slot}: {shown}")
        return trial_id

    def _evaluation_files(self, folder: Path) -> None:
        """The night's base commit's protected files, each checked against its hash, and
        links to the `[trial] share` entries (as in a trial's tree; read-only in its box)."""
        night = self.night
        for path, digest in night.protected.items():
            data = night.ws.blob(night.base_commit, path)
            if hashlib.sha256(data).hexdigest() != digest:
                raise NightError(f"protected file {path} no longer matches its hash at start")
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for entry in night.cfg.trial.share:
            link = folder / entry
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                link.symlink_to(Path(night.lab).resolve() / entry)

    def _unlaunchable(self, trial_id: int, trace: str, kind: str, reason: str) -> None:
        outcome = local.Outcome(
            status="failed", exit_code=None, objective=None, metrics={}, wall_s=0.0,
            peak_rss_mb=None, log_tail=None, reason=reason,
        )  # fmt: skip
        self.night.report.warning(f"trial {trial_id} ({kind}) failed before it started: {reason}")
        self.record(trial_id, trace, kind, outcome)

    # ------------------------------------------------------------------ watch
    def poll(self) -> None:
        """Record every trial that has ended since the last poll."""
        for slot in list(self.running):
            self._poll(slot)

    def wait(self, timeout: float, wake: int | None) -> None:
        """Sleep until a trial ends, `wake` turns readable, or `timeout` passes."""
        if self.pruning.active and "trial" in self.kinds():  # a condemning line: stop it soon
            timeout = min(timeout, PRUNE_CHECK_S)
        executor.wait_any([a.trial for a in self.running.values()], timeout, wake)

    def kill_all(self, reason: str, wait: bool = True) -> None:
        for active in self.running.values():
            active.trial.kill("killed", reason)
        while wait and self.running:
            self.poll()
            time.sleep(POLL_S)

    def _poll(self, slot: int) -> None:
        night, active = self.night, self.running[slot]
        outcome = active.trial.poll()
        self._drain_events(active)
        trial_id = active.trial.spec.trial_id
        if outcome is None:
            self.pruning.check(trial_id, active.kind, active.trial)
            return
        del self.running[slot]
        outcome = self.pruning.outcome(trial_id, outcome)
        workdir = active.trial.spec.workdir  # the lab itself for a trial re-attached after a
        watched = night.protected and workdir != night.lab  # crash: its worktree is unknown
        if watched and (touched := protect.changed(workdir, night.protected)):
            outcome = replace(
                outcome, status="failed", objective=None,
                reason=f"{protect.REASON}: the trial changed {', '.join(touched)} (protected; "
                "restored)",
            )  # fmt: skip
        folder.collect(night.trial_dir(trial_id))
        self.record(trial_id, active.trace, active.kind, outcome)
        if active.tree:
            outputs = night.trial_dir(trial_id) / paths.OUTPUTS
            self.trees.release(active.tree, night.base(), outputs, active.commit)

    def _drain_events(self, active: Active) -> None:
        """Store what a running trial reported about itself (e.g. a Slurm job requeued)."""
        while active.trial.events:
            event = active.trial.events.pop(0)
            kind, trial_id = event.pop("kind"), active.trial.spec.trial_id
            self.night.event(kind, trial_id=trial_id, **event)
            if message := event.get("message"):
                self.night.report(f"trial {trial_id}: {message}")

    # ------------------------------------------------------------------ restart
    def reattach(self) -> None:
        """Trials a dead loop left `running`: watch the live ones, settle the rest."""
        night, cfg = self.night, self.night.cfg
        for row in night.store.trials(Trial.status == "running"):
            trial_dir = night.trial_dir(row.id)
            pid = row.pid or _read_pid(trial_dir)
            watch = launch.build(
                cfg, night.lab, trial_dir, row.id, row.params, row.seed, night.lab
            )  # only watched: it was started long ago
            kind, job = history.started_as(night.store, row.id)
            handle = executor.Handle(kind, pid, row.pid_started_at, job)
            live = executor.attach(cfg, watch, handle, row.started_at, using=self.executor)
            trace = night.journal.reconciled(row, pid, alive=live is not None)
            if live is not None and row.slot < night.slots and row.slot not in self.running:
                self.running[row.slot] = Active(
                    live, trace, row.kind, row.worktree or "", row.commit or ""
                )
                who = f"job {job}" if job else f"pid {pid}"
                night.report(f"trial {row.id} still running ({who}): watching it again")
                continue
            if live is not None:  # more trials than slots now: end it, settle it as killed
                live.kill("killed", f"{kinds.INTERRUPTED}: no slot for it after a restart")
                while (outcome := live.poll()) is None:
                    time.sleep(POLL_S)
            elif (trial_dir / "exit_code").is_file():
                outcome = local.from_files(watch, row.started_at)  # it ended unwatched
            else:
                outcome = local.Outcome(
                    status="killed", exit_code=None, objective=None, metrics={},
                    wall_s=round(time.time() - row.started_at, 3), peak_rss_mb=None,
                    log_tail=files.trial_logs_tail(trial_dir),
                    reason=f"{kinds.INTERRUPTED}: the loop died while this trial ran",
                )  # fmt: skip
            folder.collect(trial_dir)
            self.record(row.id, trace, row.kind, outcome)


def _read_pid(trial_dir: Path) -> int | None:
    try:
        return int((trial_dir / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
