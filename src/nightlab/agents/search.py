"""The `search` worker: an Optuna sampler (`[search] sampler`: TPE, GP, CMA-ES or random)
over the `[search]` knobs.

In a night it asks the lab's persistent study (store/study.py), which the loop feeds with
every trial's curve and end, pruned ones included: nothing to rebuild on resume. Used alone
(no lab study), it keeps a study in memory, rebuilt from the trials `resume` is given."""

from __future__ import annotations

from typing import Any

from nightlab import UserError
from nightlab.agents.decision import Decision
from nightlab.agents.worker import BaseWorker
from nightlab.config import Config, SearchSettings
from nightlab.store import fmt
from nightlab.store.study import distribution

NEEDS = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",)}  # what a sampler imports


def sampler_for(settings: SearchSettings, seed: int) -> Any:
    """Optuna's sampler for `[search]`; a sampler whose packages are missing fails with the
    `pip install` that brings them."""
    import importlib.util
    import warnings

    from optuna import samplers
    from optuna.exceptions import ExperimentalWarning

    kind, startup = settings.sampler, settings.startup_trials
    missing = [m for m in NEEDS.get(kind, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f'[search] sampler = "{kind}" needs {", ".join(missing)}: pip install '
            f"{' '.join(missing)} (or choose another sampler)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if kind == "gp":
            return samplers.GPSampler(seed=seed, n_startup_trials=startup)
        if kind == "cmaes":
            return samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
        if kind == "random":
            return samplers.RandomSampler(seed=seed)
        return samplers.TPESampler(
            seed=seed, n_startup_trials=startup, constant_liar=True,
            multivariate=settings.multivariate,
        )  # fmt: skip


def incompatible(study: Any, space: dict[str, Any]) -> str | None:
    """An earlier trial of `study` whose knob's distribution Optuna will not ask beside
    `space`'s (another type, log scale or choices), in words; None when there is none."""
    from optuna.distributions import check_distribution_compatibility

    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if name not in space:
                continue
            try:
                check_distribution_compatibility(dist, space[name])
            except ValueError:
                text = f"trial #{t.number} with knob {name} as {dist}, not {space[name]}"
                return text if len(text) <= 200 else text[:199] + "…"
    return None


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
        self.space = {name: distribution(k) for name, k in cfg.search.items()}
        self.lab_study: Any = None  # the lab's persistent study, once the loop gives it
        self.study = self._new_study(seed)
        self.pending: list[Any] = []
        self.finished: list[Any] = []  # the lab's ended trials: an in-memory study's replay
        self.decided = 0
        self.note = ""  # why the lab study is not asked (said once, in a rationale)

    def _new_study(self, seed: int) -> Any:
        import optuna

        sampler = sampler_for(self.cfg.search_settings, seed)
        return optuna.create_study(direction=self.cfg.objective.direction, sampler=sampler)

    def use_study(self, lab_study: Any) -> None:
        """Ask the lab's persistent study from now on (the loop tells it how trials end).
        None (the study failed), or a study whose trials this `[search]` space cannot be
        asked beside (a knob's choices, log or type changed since: Optuna refuses it): an
        in-memory study again, replaying the lab's ended trials."""
        if lab_study is not None and (clash := incompatible(lab_study.study, self.space)):
            self.note = f"in memory: the lab's Optuna study holds {clash}"
            lab_study = None
        if lab_study is None:
            if self.lab_study is not None:
                self.lab_study = None
                self._replay()
            return
        self.lab_study = lab_study
        self.study = lab_study.study
        self.study.sampler = sampler_for(self.cfg.search_settings, self.seed)

    def resume(self, finished: list[Any], decided: int) -> None:
        """Seed past earlier draws; without a lab study, replay the lab's finished trials
        into a fresh in-memory one."""
        self.pending, self.finished, self.decided = [], list(finished), decided
        if self.lab_study is not None:
            self.study.sampler = sampler_for(self.cfg.search_settings, self.seed + decided)
            return
        self._replay()

    def _replay(self) -> None:
        self.pending = []
        self.study = self._new_study(self.seed + self.decided)
        finished, self.finished = self.finished, []
        for trial in finished:
            self.observe(trial)

    def decide(self, context: dict[str, Any]) -> Decision:
        if self.lab_study is not None:
            try:
                trial = self.study.ask(self.space)
            except Exception as exc:  # the journal failed (a full disk): ask in memory
                self.note = f"in memory: the lab's Optuna study failed ({type(exc).__name__})"
                self.use_study(None)
        if self.lab_study is None:
            trial = self.study.ask(self.space)
            self.pending.append(trial)
        self.decided += 1
        shown = ", ".join(f"{k}={fmt.value(v)}" for k, v in trial.params.items())
        note, self.note = (f" ({self.note})" if self.note else ""), ""
        decision = Decision(
            action="run",
            rationale=f"{self.cfg.search_settings.sampler.upper()} proposal #{trial.number} "
            f"over {len(self.space)} knobs: {shown}{note}",
            hypothesis=hypothesis(
                trial.params, context.get("best"), self.cfg.defaults(), self.cfg.objective.metric
            ),
            dimension="optimization",
            params=dict(trial.params),
        )
        if self.lab_study is not None:  # a number of the lab study, never of the in-memory one
            decision.set_asked(trial.number)
        return decision

    def observe(self, trial: Any) -> None:
        """Tell the in-memory study how a trial ended (any trial of the lab informs the
        search); with the lab's study the loop does it."""
        self.finished.append(trial)
        if self.lab_study is not None:
            return
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
