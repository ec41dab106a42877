"""The ratchet: screen, confirm, keep. A worker's trial that beats the best by the screening
threshold is re-run on new seeds (`confirm_runs`) and becomes the new base only when the
mean of those runs still beats the best's mean once both sides' uncertainty is counted:

    screen:  x − m_best  > max(min_delta, screen_multiplier · σ · √(1 + 1/n_best))
    confirm: x̄_c − m_best > max(min_delta, z_k · σ · √(1/n_c + 1/n_best))

`x` is the trial's single (selection) run; `x̄_c` the mean of its `n_c` confirmation runs,
which never include the selection run (it was picked for being high); `m_best` the best's
mean over all its runs except its own selection run. σ is pooled from every candidate that
ran more than once (baseline repeats, confirmations, finish-up rounds) and guarded by an
upper confidence bound while the pool is small. `z_k` is `sigma_multiplier` (z, default 2)
corrected for the `k`-th challenger the same best faces (Bonferroni: the more challengers,
the likelier one of them wins by chance).

The direction rule (`sign`, `gain`, `better`) lives here and only here. This module imports
no pydantic, so the fast views (`status`, `leaderboard`) can use it.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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


# the noise ----------------------------------------------------------------------------
def finite(value: Any) -> bool:
    """A number a verdict can use: an int or float, neither inf nor NaN."""
    return isinstance(value, int | float) and math.isfinite(value)


def mean(values: Sequence[float]) -> float:
    """The mean of finite values, also where their sum is too large for a float (a trial
    may print 1e308 on every seed: `statistics.fmean` raises OverflowError there)."""
    try:
        return statistics.fmean(values)
    except OverflowError:
        n = len(values)
        return math.fsum(v / n for v in values)


def spread(values: Sequence[float]) -> float:
    """The sample sd of two or more finite values; inf where it is too large for a float."""
    try:
        return statistics.stdev(values)
    except OverflowError:
        return math.inf


def _chi2_cdf(x: float, df: int) -> float:
    """P(χ²_df ≤ x): the regularised lower incomplete gamma function, by its series."""
    if x <= 0:
        return 0.0
    a, h = df / 2, x / 2
    term = total = 1.0 / a
    n = 1
    while n < 10_000 and term > 1e-15 * total:
        term *= h / (a + n)
        total += term
        n += 1
    return min(1.0, math.exp(a * math.log(h) - h - math.lgamma(a)) * total)


@functools.lru_cache(maxsize=1024)  # asked after every recorded trial, with a df that grows
def chi2_quantile(p: float, df: int) -> float:
    """The `p` quantile of the χ² distribution with `df` degrees of freedom."""
    lo, hi = 0.0, df + 20.0 * math.sqrt(2.0 * df) + 20.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _chi2_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Noise:
    """The pooled seed-to-seed spread: `sd` over `df` degrees of freedom, and `sigma`, the
    upper confidence bound the ratchet uses (0.0 while nothing ran twice)."""

    sigma: float
    sd: float
    df: int

    def describe(self) -> str:
        if not self.df:
            return "σ unknown (nothing ran twice)"
        return f"σ {self.sigma:.3g} (sd {self.sd:.3g}, df {self.df})"


def pooled(groups: Sequence[Sequence[float]], confidence: float) -> Noise:
    """The noise of candidates measured more than once: the pooled sd, and its upper
    `confidence` bound, √(df / χ²_{1−confidence}(df)) · sd (a 3-run baseline's sd alone is
    often far too small)."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) < 2:
            continue
        m = mean(g)
        dev = sum((v - m) * (v - m) for v in g)  # (`**` would raise on 1e300: a trial's values)
        if math.isfinite(ss + dev):  # values too wild to square tell nothing about the seeds
            ss, df = ss + dev, df + len(g) - 1
    if not df:
        return Noise(0.0, 0.0, 0)
    sd = math.sqrt(ss / df)
    return Noise(sd * math.sqrt(df / chi2_quantile(1.0 - confidence, df)), sd, df)


def split_runs(runs: Sequence[tuple[str, float]]) -> tuple[float | None, list[float]]:
    """One candidate's succeeded runs in id order, as (kind, objective): its selection run
    (the worker's trial that proposed it; None for the baseline) and the runs that are its
    evidence — every other run, made on new seeds without looking at the result."""
    selection = next((i for i, (kind, _) in enumerate(runs) if kind == "trial"), None)
    if selection is None:
        return None, [v for _, v in runs]
    return runs[selection][1], [v for i, (_, v) in enumerate(runs) if i != selection]


# the base -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Best:
    """The current base: the last kept trial (else the baseline). `objective` is its
    estimate: the mean of its `n` evidence runs (its selection run alone while n is 0)."""

    objective: float
    trial: int
    commit: str
    params: dict[str, Any]
    n: int = 1
    sd: float | None = None


@dataclass(frozen=True)
class Verdict:
    """What the ratchet made of a trial (screen) or of a candidate's confirmation runs,
    with every figure it used (kept in the trial's record, the storyline and MLflow)."""

    verdict: str  # screened|discarded|kept|not_confirmed
    stage: str  # screen|confirm
    improvement: float  # signed, positive is better
    threshold: float
    sigma: float
    df: int
    best_trial: int
    best_mean: float
    best_n: int
    value: float  # the trial's run (screen) or the confirmation runs' mean (confirm)
    n: int = 1
    z: float = 0.0

    def describe(self) -> str:
        s = "+" if self.improvement >= 0 else ""
        what = "" if self.stage == "screen" else f"confirmed {self.value:.4g} (n={self.n}), "
        sigma = f"σ {self.sigma:.3g}" if self.df else "σ unknown"
        return (
            f"{self.verdict} ({what}{s}{self.improvement:.4g} vs threshold {self.threshold:.4g}"
            f"; best trial {self.best_trial} {self.best_mean:.4g} n={self.best_n}, {sigma})"
        )

    def record(self) -> dict[str, Any]:
        """As stored (JSON has no inf or NaN: a figure that is not finite is null)."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in asdict(self).items()}  # fmt: skip


def threshold(cfg: Config, sigma: float, n_best: int = 1, challenger: int = 1) -> float:
    """The screening threshold for one run against a best measured `n_best` times."""
    z = bonferroni(cfg.ratchet.screen_multiplier, challenger)
    return max(cfg.ratchet.min_delta, z * sigma * math.sqrt(1 + 1 / max(n_best, 1)))


def bonferroni(z: float, challenger: int) -> float:
    """`z` for the `challenger`-th candidate judged against one best: the one-sided level
    `z` stands for, shared out among the challengers so far."""
    if challenger <= 1 or z <= 0:
        return z
    nd = statistics.NormalDist()
    return nd.inv_cdf(1 - (1 - nd.cdf(z)) / challenger)


def z_for(cfg: Config, challenger: int) -> float:
    """The keep rule's z (`sigma_multiplier`) for the `challenger`-th confirmation."""
    return bonferroni(cfg.ratchet.sigma_multiplier, challenger)


def screen(cfg: Config, value: float, best: Best, noise: Noise, challenger: int = 1) -> Verdict:
    """A worker's trial against the best (the `challenger`-th to pass the screen against
    it, if it does): `screened` (confirmation runs are due), `discarded`, or — with
    `confirm_runs = 0` — `kept` on the z test of one run."""
    r, improvement = cfg.ratchet, gain(cfg.objective.direction, value, best.objective)
    if r.confirm_runs:
        z = bonferroni(r.screen_multiplier, challenger)
        limit = threshold(cfg, noise.sigma, best.n, challenger)
        verdict = "screened" if improvement > limit else "discarded"
    else:
        z = r.sigma_multiplier
        limit = max(r.min_delta, z * noise.sigma * math.sqrt(1 + 1 / max(best.n, 1)))
        verdict = "kept" if improvement > limit else "discarded"
    return Verdict(verdict, "screen", improvement, limit, noise.sigma, noise.df, best.trial,
                   best.objective, best.n, value, 1, z)  # fmt: skip


def confirm(cfg: Config, values: Sequence[float], best: Best, noise: Noise, k: int) -> Verdict:
    """The confirmation runs of a screened candidate (the `k`-th challenger of this best)
    against the best's mean: `kept` or `not_confirmed`."""
    value, n = mean(values), len(values)
    z = z_for(cfg, k)
    limit = max(cfg.ratchet.min_delta, z * noise.sigma * math.sqrt(1 / n + 1 / max(best.n, 1)))
    improvement = gain(cfg.objective.direction, value, best.objective)
    verdict = "kept" if improvement > limit else "not_confirmed"
    return Verdict(verdict, "confirm", improvement, limit, noise.sigma, noise.df, best.trial,
                   best.objective, best.n, value, n, z)  # fmt: skip
