"""The night's limits — time, max_trials, tokens, dollars, the target, the finish-up
deadline — and what has been spent against them, across restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nightlab import ratchet
from nightlab.loop.confirm import Confirmations
from nightlab.loop.finishup import Finisher
from nightlab.loop.night import Night
from nightlab.loop.repair_queue import Repairs
from nightlab.store import history, read


class Budget:
    def __init__(
        self, night: Night, max_trials: int | None, finisher: Finisher, repairs: Repairs,
        confirmations: Confirmations,
    ) -> None:  # fmt: skip
        self.night, self.max_trials = night, max_trials
        self.finisher, self.repairs, self.confirmations = finisher, repairs, confirmations
        self.running: Callable[[], list[str]] = list  # the kinds in flight (set by the loop)
        self.trials = 0  # counted against max_trials: baseline repeats and worker trials
        self.spent = {"tokens": 0, "usd": 0.0}

    def load(self) -> None:
        """What the night spent before this run (the budget is the night's)."""
        self.trials = history.trial_count(self.night.store)
        with read.connect(self.night.store.path) as conn:
            spent = read.usage(conn)
        self.spent = {
            "tokens": spent["input_tokens"] + spent["output_tokens"],
            "usd": spent["usd"] or 0.0,
        }

    def charge(self, usage: dict[str, Any] | None) -> dict[str, Any] | None:
        """Count an agent call against the night's token and $ budget."""
        if usage:
            self.spent["tokens"] += usage["input_tokens"] + usage["output_tokens"]
            self.spent["usd"] += usage["usd"] or 0.0
        return usage

    def trials_left(self) -> int | None:
        return None if self.max_trials is None else self.max_trials - self.trials

    def at_max_trials(self) -> bool:
        return self.max_trials is not None and self.trials >= self.max_trials

    def confirming(self) -> bool:
        """A screened trial awaits its confirmation runs, or a running trial may be one."""
        return self.confirmations.pending() or "trial" in self.running()

    def limit_reached(self) -> str | None:
        """The first limit the night has reached, as a stop reason; None while none is."""
        night, now = self.night, time.time()
        if night.deadline and now >= night.deadline:
            return "time budget reached"
        if (ends := self.finisher.ends()) and now >= ends:
            return "the finish-up deadline is reached"
        if self.at_max_trials() and not self.repairs.busy and not self.confirming():
            # not while a repaired trial still runs in its failure's place, nor before the
            # screened trials are confirmed (confirmation runs are no new ideas)
            return f"max_trials={self.max_trials} reached"
        budget = night.cfg.budget
        tokens, usd = self.spent["tokens"], self.spent["usd"]
        if budget.max_tokens is not None and tokens >= budget.max_tokens:
            return f"max_tokens={budget.max_tokens} reached ({tokens} used)"
        if budget.max_usd is not None and usd >= budget.max_usd:
            return f"max_usd={budget.max_usd:g} reached (${usd:.4f} spent)"
        target, best, direction = night.cfg.objective.target, night.best(), night.cfg.objective
        if target is not None and best and not ratchet.better(
            direction.direction, target, best.objective
        ):
            return f"target {target:g} reached"
        return None
