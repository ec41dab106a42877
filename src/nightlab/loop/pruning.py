"""Pruning on live curves: each running baseline and worker trial's objective, point by
point as the loop reads it, goes to the lab's Optuna study (store/study.py); a worker's
trial the `[pruning]` pruner condemns is stopped at once, its whole tree, as for a budget,
and ends `pruned` with the step, its value and the reference in its record.

What is compared: only points the trial gave a step (`step=N` or `epoch=N` on the printed line, or
`nightlab.log(..., step=N)`), so a lab that prints only a final value is never pruned; each
trial's best value so far against the reference over the finished curves (baseline repeats
included) at the same step. Baseline repeats are reported but never pruned; confirmation,
finish-up and test runs are neither. A curve is the trial's own claim: it can stop the
trial, never keep it, so a forged curve wastes runs but cannot win one; and as a reference
it counts only up to its trial's final objective (LabStudy.finish), so it cannot get
honest trials pruned either.

The study mirrors the store: if it fails (a full disk), the night goes on without pruning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nightlab.loop.night import Night
from nightlab.store import fmt
from nightlab.store.kinds import EXPLORING
from nightlab.store.study import LabStudy

REPORTS_PER_POLL = 64  # points handed to the study in one poll (the rest: the next polls)
CHECK_S = 0.05  # the loop's longest sleep while a prunable trial runs


def on_grid(step: int) -> bool:
    """Which steps are reported: every step to 100, then multiples of 10 to 1,000, of 100
    to 10,000, and so on — at most ~90 a decade whatever a trial prints, the same steps for
    every trial, so curves stay comparable."""
    if step < 0:
        return False
    if step <= 100:
        return True
    return step % 10 ** (len(str(step)) - 2) == 0


@dataclass
class _Watched:
    kind: str
    reader: Any = None  # the trial's MetricReader this cursor walks (a requeue makes a new one)
    cursor: int = 0  # history points already looked at
    steps: set[int] | None = None  # steps already reported


class Pruning:
    def __init__(self, night: Night, study: LabStudy | None) -> None:
        self.night, self.study = night, study
        self.cfg = night.cfg.pruning
        self.metric = night.cfg.objective.metric
        self.watched: dict[int, _Watched] = {}
        self.records: dict[int, dict[str, Any]] = {}  # pruned trials: what they were told
        self.worker: Any = None  # a worker that asks the study (the `search` worker)

    def open(self, worker: Any) -> None:
        """Open the lab's study, settle it with the store, hand it to a worker that asks it."""
        from nightlab.store.db import Trial

        night = self.night
        self.study = self._guard_open(night)
        if self.study is None:
            return
        for line in self.study.repaired:
            night.report(f"Optuna study: {line}")
        counts = self._guard("sync", self.study.sync, night.store.trials(Trial.kind.in_(EXPLORING)))
        if counts and any(counts.values()):
            night.event("study_synced", run_id=night.run_id, **counts)
        if self.study is not None and hasattr(worker, "use_study"):
            self.worker = worker
            worker.use_study(self.study)

    def _guard_open(self, night: Night) -> LabStudy | None:
        try:
            return LabStudy(night.state, night.cfg)
        except Exception as exc:
            night.report.warning(
                f"the Optuna study {night.state / 'optuna.journal'} could not be opened "
                f"({type(exc).__name__}: {exc}): no pruning this night; move the file away to "
                "start a new study"
            )
            return None

    @property
    def active(self) -> bool:
        return self.study is not None and self.cfg.kind != "none"

    def _guard(self, what: str, call: Any, *args: Any) -> Any:
        if self.study is None:
            return None
        try:
            return call(*args)
        except Exception as exc:  # the study is a mirror: the night goes on without it
            self.study = None
            if self.worker is not None:  # nobody tells the study any more: it asks in memory
                self.worker.use_study(None)
            self.night.report.warning(
                f"the Optuna study ({what}) failed: {type(exc).__name__}: {exc}; no pruning "
                "for the rest of this night (the study catches up from the store next start)"
            )
            return None

    def started(self, trial_id: int, kind: str, params: dict[str, Any], asked: int | None) -> None:
        """A baseline or worker trial was launched (`asked`: the study trial its decision
        came from, for the `search` worker)."""
        if kind in EXPLORING and self.study is not None:
            self._guard("begin", self.study.begin, trial_id, kind, params, asked)
            self.watched[trial_id] = _Watched(kind, steps=set())

    def check(self, trial_id: int, kind: str, trial: Any) -> None:
        """Report what the trial printed since the last poll; stop it when condemned."""
        if kind not in EXPLORING or self.study is None:
            return
        reader = getattr(trial, "reader", None)  # a plugin's trial may keep no reader
        if reader is None:
            return
        w = self.watched.get(trial_id)
        if w is None:  # re-attached after a restart: carry on where the study is
            self._guard("begin", self.study.begin, trial_id, kind, {})
            steps = self._guard("read", self.study.steps, trial_id) or set()
            w = self.watched[trial_id] = _Watched(kind, steps=steps)
        if w.reader is not reader:
            w.reader, w.cursor = reader, 0
        self._feed(trial_id, w, reader.history, REPORTS_PER_POLL, trial)

    def _feed(self, trial_id: int, w: _Watched, history: list, limit: float, trial: Any) -> None:
        """Report up to `limit` new points and ask the pruner; stop `trial` (None: it has
        ended) when it is a worker's and condemned. A baseline is asked too, never stopped:
        hyperband records its rungs, where the worker's trials meet it; hyperband is asked
        at every point, so a rung keeps the value at its own step, not a later one."""
        batch = 1 if self.cfg.kind == "hyperband" else limit
        while limit > 0 and (reported := self._report(trial_id, w, history, min(batch, limit))):
            limit -= reported
            if not self.active or trial_id in self.records:
                continue
            condemned = self._guard("prune", self.study.should_prune, trial_id)
            if condemned and trial is not None and w.kind == "trial":
                self._guard("prune", self._prune, trial_id, trial, max(w.steps))

    def _report(self, trial_id: int, w: _Watched, history: list, limit: float) -> int:
        """Hand the study the new points of `history` (at most `limit`); how many."""
        reported = 0
        while w.cursor < len(history) and reported < limit and self.study is not None:
            point = history[w.cursor]
            w.cursor += 1
            step, value = point["step"], point["value"]
            if (
                point["name"] != self.metric
                or not point.get("stepped")
                or point["source"] == "eval"
                or not math.isfinite(value)
                or step in w.steps
                or not on_grid(step)
            ):
                continue
            self._guard("report", self.study.report, trial_id, step, value)
            w.steps.add(step)
            reported += 1
        return reported

    def _prune(self, trial_id: int, trial: Any, step: int) -> None:
        frozen = self.study._frozen(trial_id)
        values = frozen.intermediate_values
        maximize = self.night.cfg.objective.direction == "maximize"
        best = max(values.values()) if maximize else min(values.values())
        ref = self.study.reference(trial_id, step)
        record = {"step": step, "value": values.get(step), "best": best, "kind": self.cfg.kind,
                  **ref}  # fmt: skip
        self.records[trial_id] = record
        trial.kill("pruned", describe(self.metric, record))
        self.night.event("trial_pruned", trial_id=trial_id, **record)

    def outcome(self, trial_id: int, out: Any) -> Any:
        """The outcome with its pruning record, when the pruner stopped it; the points the
        trial printed since the last poll go to the study first (its curve, whole)."""
        record = self.records.pop(trial_id, None)
        w = self.watched.pop(trial_id, None)
        if w is not None:  # the curve's tail: read after the last poll (all of a trial
            self._feed(trial_id, w, out.history or [], math.inf, None)  # whose output is buffered)
        if out.status == "pruned" and record is not None:
            from dataclasses import replace

            return replace(out, pruning=record, objective=None)
        return out

    def ended(self, row: Any) -> None:
        """Tell the study how a recorded trial ended."""
        if row.kind in EXPLORING and self.study is not None:
            self._guard("finish", self.study.finish, row)


def describe(metric: str, record: dict[str, Any]) -> str:
    """The reason a pruned trial carries, in words."""
    ref = record.get("reference")
    against = (
        f"the {record['rule']} {fmt.value(ref)}" if ref is not None else f"the {record['rule']}"
    )
    base = record.get("baseline_curves") or 0
    return (
        f"pruned at step {record['step']}: best {metric} so far {fmt.value(record['best'])} is "
        f"worse than {against} of {record['curves']} finished curve(s) at that step "
        f"({base} baseline)"
    )
