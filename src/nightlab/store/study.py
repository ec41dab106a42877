"""The lab's Optuna study: every baseline and worker trial's live curve and its end, in an
Optuna journal file (`.nightlab/optuna.journal`), so the pruner compares a running trial with
every curve the lab has seen (the baseline repeats included) and the `search` worker's
sampler learns from all of them, across nights, without a rebuild.

The store stays the record; the study mirrors it. A trial of the study carries its store id
(user attribute `nightlab_trial`); at open, `sync` settles what a killed loop left behind:
a study trial still running whose store trial has ended is told how it ended, one the store
never heard of (asked, never launched) is failed, and a store trial the study lacks is added.

Readable while the night runs: `optuna-dashboard .nightlab/optuna.journal`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nightlab.config import Config, Knob, PruningSection
from nightlab.store.kinds import EXPLORING

JOURNAL = "optuna.journal"
ATTR = "nightlab_trial"  # user attribute: the store's trial id
KIND_ATTR = "nightlab_kind"  # baseline|trial
# A lock no writer touched for this long is a dead writer's (optuna-dashboard killed mid-
# write): taken over. The loop alone writes; Optuna's 30 s would leave every trial unwatched.
LOCK_GRACE_S = 5


def study_name(cfg: Config) -> str:
    """One study per lab, metric and direction: curves of another metric are no reference."""
    return f"{cfg.lab.name}:{cfg.objective.metric}:{cfg.objective.direction}"


def distribution(knob: Knob) -> Any:
    """The Optuna distribution of a `[search]` knob."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if knob.kind == "categorical":
        return CategoricalDistribution(knob.choices)
    if knob.kind == "int":
        return IntDistribution(math.ceil(knob.low), math.floor(knob.high), log=knob.log)
    return FloatDistribution(knob.low, knob.high, log=knob.log)


def pruner_for(section: PruningSection) -> Any:
    """Optuna's pruner for `[pruning]` (NopPruner for kind = "none")."""
    from optuna import pruners

    if section.kind == "median":
        return pruners.MedianPruner(
            n_startup_trials=0, n_warmup_steps=section.warmup_steps,
            n_min_trials=section.min_trials,
        )  # fmt: skip
    if section.kind == "percentile":
        return pruners.PercentilePruner(
            section.percentile, n_startup_trials=0, n_warmup_steps=section.warmup_steps,
            n_min_trials=section.min_trials,
        )  # fmt: skip
    if section.kind == "hyperband":
        return pruners.HyperbandPruner(min_resource=max(1, section.warmup_steps))
    return pruners.NopPruner()


def repair(path: Path) -> list[str]:
    """Undo what a killed writer can leave: a lock file (Optuna waits for it to age) and a
    last line cut short (the next append would glue onto it and corrupt both). Called only by
    the loop, which holds the lab lock: no other writer exists. Returns what it did."""
    done = []
    for lock in (Path(f"{path}.lock"),):
        if lock.is_symlink() or lock.exists():
            lock.unlink()
            done.append(f"removed a stale lock {lock.name}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return done
    if size == 0:
        return done
    with open(path, "rb+") as f:
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return done
        data_end = size
        chunk = 1 << 16
        while data_end > 0:  # find the last newline, reading backwards
            start = max(0, data_end - chunk)
            f.seek(start)
            block = f.read(data_end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                break
            data_end = start
        else:
            f.truncate(0)
        os.fsync(f.fileno())
    done.append(f"cut a torn last line off {path.name} ({size} bytes before)")
    return done


class LabStudy:
    """The lab's study, opened by the loop (which alone writes it)."""

    def __init__(self, state: Path, cfg: Config) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg = cfg
        self.path = Path(state) / JOURNAL
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise OSError(f"{self.path} is not a plain file: remove it (the study is rebuilt)")
        self.repaired = repair(self.path)
        lock = JournalFileOpenLock(str(self.path), grace_period=LOCK_GRACE_S)
        self.storage = JournalStorage(JournalFileBackend(str(self.path), lock_obj=lock))
        self.space = {name: distribution(k) for name, k in cfg.search.items()}
        self.study = optuna.create_study(
            storage=self.storage, study_name=study_name(cfg), load_if_exists=True,
            direction=cfg.objective.direction, pruner=pruner_for(cfg.pruning),
        )  # fmt: skip
        self._ids: dict[int, int] = {}  # store trial id → Optuna trial id
        for t in self.study.get_trials(deepcopy=False):
            if (nid := t.user_attrs.get(ATTR)) is not None:
                self._ids[nid] = t._trial_id

    # ------------------------------------------------------------------ the mirror
    def sync(self, rows: Iterable[Any]) -> dict[str, int]:
        """Bring the study in line with the store's baseline and worker trials (`rows`)."""
        from optuna.trial import TrialState

        counts = {"told": 0, "added": 0, "failed": 0}
        known = set()
        for row in rows:
            if row.kind not in EXPLORING:
                continue
            known.add(row.id)
            frozen = self._frozen(row.id)
            if row.status == "running":
                if frozen is None:
                    self.begin(row.id, row.kind, row.params)
                    counts["added"] += 1
                continue
            if frozen is None:  # ended already: added as it ended, in one line
                self._create(row.id, row.kind, row.params, *self._ending(row))
                counts["added"] += 1
            elif frozen.state == TrialState.RUNNING:
                self.finish(row)
                counts["told"] += 1
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(ATTR) not in known:  # asked by a worker, never launched
                self.study.tell(t.number, state=TrialState.FAIL)
                counts["failed"] += 1
        return counts

    def _frozen(self, trial_id: int) -> Any:
        sid = self._ids.get(trial_id)
        return None if sid is None else self.storage.get_trial(sid)

    def begin(
        self, trial_id: int, kind: str, params: dict[str, Any], asked: int | None = None
    ) -> int:
        """The study trial of store trial `trial_id`: the one a worker asked (`asked`, its
        number) when it is still unclaimed, else a new running one with `params` (only when
        they are a point of the `[search]` space: else it is a curve without params)."""
        from optuna.trial import TrialState

        if trial_id in self._ids:
            return self._ids[trial_id]
        sid = None
        if asked is not None:
            trials = self.study.get_trials(deepcopy=False)
            t = trials[asked] if 0 <= asked < len(trials) else None
            if t is not None and t.state == TrialState.RUNNING and ATTR not in t.user_attrs:
                sid = t._trial_id
        if sid is None:
            return self._create(trial_id, kind, params, TrialState.RUNNING, None)
        self.storage.set_trial_user_attr(sid, KIND_ATTR, kind)
        self.storage.set_trial_user_attr(sid, ATTR, trial_id)  # last: it claims the trial
        self._ids[trial_id] = sid
        return sid

    def _create(
        self, trial_id: int, kind: str, params: dict[str, Any], state: Any, value: float | None
    ) -> int:
        """A new study trial for store trial `trial_id`, written as one journal line (a
        loop killed mid-way leaves it whole or absent, never unclaimed)."""
        from optuna.trial import create_trial

        fits = set(params) == set(self.space) and not self.cfg.param_violations(params)
        template = create_trial(
            state=state, value=value,
            params=self.cfg.normalize(params) if fits else {},
            distributions=self.space if fits else {},
            user_attrs={ATTR: trial_id, KIND_ATTR: kind},
        )  # fmt: skip
        sid = self.storage.create_new_trial(self.study._study_id, template_trial=template)
        self._ids[trial_id] = sid
        return sid

    @staticmethod
    def _ending(row: Any) -> tuple[Any, float | None]:
        """The study's state (and value) for how store trial `row` ended."""
        from optuna.trial import TrialState

        value = row.objective
        if row.status == "succeeded" and value is not None and math.isfinite(value):
            return TrialState.COMPLETE, value
        return (TrialState.PRUNED if row.status == "pruned" else TrialState.FAIL), None

    def finish(self, row: Any) -> None:
        """Tell the study how store trial `row` ended: its objective (succeeded), pruned
        (the sampler then reads its last reported value), or failed."""
        from optuna.trial import TrialState

        sid = self._ids.get(row.id)
        if sid is None or self.storage.get_trial(sid).state != TrialState.RUNNING:
            return
        number = self.storage.get_trial_number_from_id(sid)
        state, value = self._ending(row)
        maximize = self.cfg.objective.direction == "maximize"
        if value is not None:
            self._bound_curve(sid, value)
        elif state == TrialState.FAIL:  # it delivered nothing: its rungs rival no one
            self._bound_curve(sid, -math.inf if maximize else math.inf, points=False)
        self.study.tell(number, value, state=state)

    def _bound_curve(self, sid: int, value: float, points: bool = True) -> None:
        """A finished curve is a reference only up to what its trial delivered: each point
        better than the final objective counts as the final objective. A curve is the
        trial's own claim; forged points far better than its result would otherwise make
        the pruner stop honest trials (an honest peak above the result only makes pruning
        a little less eager). Hyperband's rung values likewise, once the trial ends (only
        those without `points`: a failed trial's curve is no median's reference anyway)."""
        maximize = self.cfg.objective.direction == "maximize"
        frozen = self.storage.get_trial(sid)
        for step, point in frozen.intermediate_values.items() if points else ():
            if point > value if maximize else point < value:
                self.storage.set_trial_intermediate_value(sid, step, value)
        for key, point in frozen.system_attrs.items():  # hyperband's rung values
            if key.startswith("completed_rung_") and isinstance(point, int | float) and (
                point > value if maximize else point < value
            ):
                self.storage.set_trial_system_attr(sid, key, value)

    # ------------------------------------------------------------------ the live curve
    def steps(self, trial_id: int) -> set[int]:
        """The steps already reported for store trial `trial_id`."""
        frozen = self._frozen(trial_id)
        return set(frozen.intermediate_values) if frozen is not None else set()

    def report(self, trial_id: int, step: int, value: float) -> None:
        self.storage.set_trial_intermediate_value(self._ids[trial_id], step, value)

    def should_prune(self, trial_id: int) -> bool:
        return bool(self.study.pruner.prune(self.study, self._frozen(trial_id)))

    def reference(self, trial_id: int, step: int) -> dict[str, Any]:
        """What the trial was compared with at `step`: the pruner's reference value over
        the finished curves that reached that step, and how many (how many baseline)."""
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        at = [t for t in done if step in t.intermediate_values]
        values = [t.intermediate_values[step] for t in at]
        baseline = sum(t.user_attrs.get(KIND_ATTR) == "baseline" for t in at)
        section = self.cfg.pruning
        out: dict[str, Any] = {"curves": len(values), "baseline_curves": baseline}
        if not values:
            return {**out, "reference": None, "rule": section.kind}
        import numpy as np

        maximize = self.cfg.objective.direction == "maximize"
        if section.kind == "hyperband":
            frozen = self._frozen(trial_id)
            rungs = [k for k in frozen.system_attrs if k.startswith("completed_rung_")]
            key = max(rungs, key=lambda k: int(k.rsplit("_", 1)[1])) if rungs else None
            bracket = self.study.pruner._get_bracket_id  # rivals: the trial's bracket only
            rivals = sorted(
                (t.system_attrs[key] for t in self.study.get_trials(deepcopy=False)
                 if key and key in t.system_attrs
                 and bracket(self.study, t) == bracket(self.study, frozen)),
                reverse=maximize,
            )  # fmt: skip
            keep = max(1, len(rivals) // 3)
            ref = rivals[keep - 1] if rivals else None
            return {**out, "reference": ref, "rule": f"hyperband top 1/3 at {key or 'rung 0'}"}
        pct = 50.0 if section.kind == "median" else section.percentile
        q = 100.0 - pct if maximize else pct
        ref = float(np.nanpercentile(np.array(values, dtype=float), q))
        rule = "median" if section.kind == "median" else f"{pct:g}th percentile"
        return {**out, "reference": ref, "rule": rule}
