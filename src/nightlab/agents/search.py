"""The `search` worker: Optuna's TPE over the `[search]` knobs.

The study lives in memory and is rebuilt from the store's finished trials when a lab
resumes, so the store stays the single record of what was tried."""

from __future__ import annotations

import math
from typing import Any

from nightlab.agents.decision import Decision
from nightlab.agents.worker import BaseWorker
from nightlab.config import Config, Knob
from nightlab.store import fmt


def _distribution(knob: Knob) -> Any:
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


MOVED_SHOWN = 6  # knobs named in a hypothesis; the rest are counted
SAME_SHOWN = 4  # unchanged knobs named; more are counted
HYPOTHESIS_CHARS = 300
VALUE_CHARS = 24  # a long categorical value is cut


def _shown(v: Any) -> str:
    text = fmt.value(v)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def hypothesis(
    params: dict[str, Any], best: dict[str, Any] | None, defaults: dict[str, Any], metric: str
) -> str:
    """What a proposal claims, in its own terms: the knobs it moves away from the current
    best's params (from the defaults while there is no best), from what to what, and that
    this beats the best beyond the noise. Values are compared as printed (4 significant
    digits), so a knob that moved by less than that counts as unchanged."""
    ref = {**defaults, **(best.get("params") or {})} if best else dict(defaults)
    moved, same = [], []
    for name, new in params.items():
        if name in ref and fmt.value(ref[name]) == fmt.value(new):
            same.append(name)
        elif name in ref:
            moved.append(f"{name} {_shown(ref[name])} → {_shown(new)}")
        else:
            moved.append(f"{name} → {_shown(new)}")
    target = "the defaults"
    if best:
        score = fmt.value(best.get("objective"))
        target = f"the best (trial {best.get('trial')}, {metric} {score})"
    if not moved:
        return f"the same settings as {target} again: a repeat that measures the noise"
    tail = f" beats {target} beyond the noise"
    text = ""
    for shown in range(min(len(moved), MOVED_SHOWN), 0, -1):  # fewer names if too long
        text = ", ".join(moved[:shown])
        if len(moved) > shown:
            text += f" and {len(moved) - shown} more"
        if same:
            names = ", ".join(same)
            if len(same) > SAME_SHOWN or len(text) + len(names) + len(tail) > HYPOTHESIS_CHARS:
                names = f"{len(same)} other knob{'s' if len(same) > 1 else ''}"
            text += f" ({names} unchanged)"
        text += tail
        if len(text) <= HYPOTHESIS_CHARS:
            return text
    return text[: HYPOTHESIS_CHARS - 1] + "…"


class SearchWorker(BaseWorker):
    name = "search"

    def __init__(self, cfg: Config, seed: int = 0) -> None:
        import optuna

        if not cfg.search:
            raise ValueError(
                'worker "search" needs at least one [search.NAME] knob in nightlab.toml'
            )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg = cfg
        self.seed = seed
        self.space = {name: _distribution(k) for name, k in cfg.search.items()}
        self.study = self._new_study(seed)
        self.pending: list[Any] = []

    def _new_study(self, seed: int) -> Any:
        import optuna

        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, constant_liar=True)
        return optuna.create_study(direction=self.cfg.objective.direction, sampler=sampler)

    def resume(self, finished: list[Any], decided: int) -> None:
        """Replay the lab's finished trials into a fresh study (seeded past earlier draws)."""
        self.study = self._new_study(self.seed + decided)
        self.pending = []
        for trial in finished:
            self.observe(trial)

    def decide(self, context: dict[str, Any]) -> Decision:
        trial = self.study.ask(self.space)
        self.pending.append(trial)
        shown = ", ".join(f"{k}={fmt.value(v)}" for k, v in trial.params.items())
        return Decision(
            action="run",
            rationale=f"TPE proposal #{trial.number} over {len(self.space)} knobs: {shown}",
            hypothesis=hypothesis(
                trial.params, context.get("best"), self.cfg.defaults(), self.cfg.objective.metric
            ),
            dimension="optimization",
            params=dict(trial.params),
        )

    def observe(self, trial: Any) -> None:
        """Tell the study how a trial ended (any trial of the lab informs the search)."""
        import optuna
        from optuna.trial import TrialState

        params = {k: v for k, v in trial.params.items() if k in self.space}
        ok = trial.status == "succeeded" and trial.objective is not None
        for asked in self.pending:
            if asked.params == params:
                self.pending.remove(asked)
                if ok:
                    self.study.tell(asked, trial.objective)
                else:
                    self.study.tell(asked, state=TrialState.FAIL)
                return
        if set(params) != set(self.space) or self.cfg.param_violations(params):
            return  # not a point of this space (the space changed since)
        self.study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=self.space,
                value=trial.objective if ok else None,
                state=TrialState.COMPLETE if ok else TrialState.FAIL,
            )
        )
