"""The ratchet: a trial becomes the new base only when it beats the best by more than the
noise. The noise σ comes from the baseline repeated over seeds, so a lucky seed (or a
change that only moves the seed) is not mistaken for progress.

The direction rule (`sign`, `gain`, `better`) lives here and only here. This module imports
no pydantic, so the fast views (`status`, `leaderboard`) can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nightlab.config import Config


# the direction rule -------------------------------------------------------------------
def sign(direction: str) -> float:
    """+1.0 when a higher objective is better (`maximize`), -1.0 when a lower one is."""
    return 1.0 if direction == "maximize" else -1.0


def gain(direction: str, a: float, b: float) -> float:
    """How much objective `a` improves on `b` in this direction (positive is better)."""
    return a - b if sign(direction) > 0 else b - a


def better(direction: str, a: float, b: float) -> bool:
    """True when objective `a` is better than `b` in this direction."""
    return gain(direction, a, b) > 0


# the base and the keep rule -----------------------------------------------------------
@dataclass(frozen=True)
class Best:
    """The current base: the last kept trial (else the first baseline repeat)."""

    objective: float
    trial: int
    commit: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    verdict: str  # kept|discarded
    improvement: float  # signed, positive is better
    threshold: float

    def describe(self) -> str:
        sign = "+" if self.improvement >= 0 else ""
        return f"{self.verdict} ({sign}{self.improvement:.4g} vs threshold {self.threshold:.4g})"


def threshold(cfg: Config, sigma: float) -> float:
    return max(cfg.ratchet.min_delta, cfg.ratchet.sigma_multiplier * sigma)


def judge(cfg: Config, objective: float, best: float, sigma: float) -> Verdict:
    """Keep `objective` only if it improves on `best` by more than max(min_delta, k·σ)."""
    improvement = gain(cfg.objective.direction, objective, best)
    limit = threshold(cfg, sigma)
    return Verdict("kept" if improvement > limit else "discarded", improvement, limit)
