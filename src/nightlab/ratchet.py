"""The ratchet: a trial becomes the new base only when it beats the best by more than the
noise. The noise σ comes from the baseline repeated over seeds, so a lucky seed (or a
change that only moves the seed) is not mistaken for progress."""

from __future__ import annotations

from dataclasses import dataclass

from nightlab.config import Config


@dataclass(frozen=True)
class Best:
    """The current base: the last kept trial, else the baseline."""

    objective: float
    trial: int
    commit: str
    params: dict


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
    gain = objective - best if cfg.objective.direction == "maximize" else best - objective
    limit = threshold(cfg, sigma)
    return Verdict("kept" if gain > limit else "discarded", gain, limit)
