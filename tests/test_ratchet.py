"""The ratchet: screen one run against the best's mean, confirm on new seeds, keep only when
the confirmed mean wins beyond both sides' uncertainty; σ pooled and guarded."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from nightlab import ratchet
from nightlab.config import Config
from nightlab.ratchet import Best, Noise, confirm, screen, threshold

from conftest import make_config


def make_cfg(direction: str = "maximize", **ratchet_options: float) -> Config:
    return make_config("m", direction, ratchet=ratchet_options)


def best(mean: float, n: int = 3, trial: int = 1) -> Best:
    return Best(mean, trial, "c", {}, n=n)


# dyadic numbers keep every comparison exact
NOISE = Noise(sigma=0.25, sd=0.125, df=4)


def test_screen_threshold_counts_both_the_run_and_the_best_mean():
    cfg = make_cfg(min_delta=0.0, screen_multiplier=1.0)
    # one run against a best measured 3 times: σ·√(1 + 1/3)
    assert threshold(cfg, 0.25, 3) == pytest.approx(0.25 * math.sqrt(4 / 3))
    assert threshold(make_cfg(min_delta=1.0), 0.25, 3) == 1.0  # min_delta is a floor
    assert threshold(make_cfg(screen_multiplier=0.0), 0.25, 3) == 0.0


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        (1.0, "screened"),
        (0.875, "screened"),
        (0.84, "discarded"),
        (0.5, "discarded"),
        (0, "discarded"),
    ],
)
def test_a_run_past_the_screen_is_screened_not_kept(value, verdict):
    v = screen(make_cfg(), value, best(0.5, n=1), NOISE)  # threshold σ·√2 ≈ 0.354
    assert v.verdict == verdict
    assert v.stage == "screen" and v.best_mean == 0.5 and v.sigma == 0.25 and v.df == 4
    assert v.improvement == value - 0.5


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_screen_follows_the_direction(direction):
    lower = direction == "minimize"
    v = screen(make_cfg(direction), 0.0 if lower else 1.0, best(0.5, n=1), NOISE)
    assert v.verdict == "screened" and v.improvement == 0.5
    worse = screen(make_cfg(direction), 1.0 if lower else 0.0, best(0.5, n=1), NOISE)
    assert worse.verdict == "discarded" and worse.improvement == -0.5


def test_without_confirmation_runs_one_run_is_kept_on_the_z_test():
    cfg = make_cfg(confirm_runs=0, sigma_multiplier=2.0)
    limit = 2.0 * 0.25 * math.sqrt(1 + 1 / 3)  # the difference of a run and a 3-run mean
    assert screen(cfg, 0.5 + limit * 1.01, best(0.5), NOISE).verdict == "kept"
    assert screen(cfg, 0.5 + limit * 0.99, best(0.5), NOISE).verdict == "discarded"


def test_confirmation_compares_means_with_both_sides_uncertainty():
    cfg = make_cfg(sigma_multiplier=2.0)
    limit = 2.0 * 0.25 * math.sqrt(1 / 2 + 1 / 3)
    kept = confirm(cfg, [0.5 + limit, 0.5 + limit + 0.01], best(0.5), NOISE, k=1)
    assert kept.verdict == "kept" and kept.n == 2 and kept.threshold == pytest.approx(limit)
    no = confirm(cfg, [0.5 + limit, 0.5 + limit - 0.01], best(0.5), NOISE, k=1)
    assert no.verdict == "not_confirmed"
    assert no.value == pytest.approx(0.5 + limit - 0.005) and no.stage == "confirm"


def test_later_challengers_of_one_best_face_a_higher_bar():
    cfg = make_cfg(sigma_multiplier=2.0)
    zs = [ratchet.z_for(cfg, k) for k in (1, 2, 5, 20)]
    assert zs[0] == 2.0 and zs == sorted(zs) and zs[-1] > 3.0
    # Bonferroni: the k-th shares the one-sided level of z among k
    tail = 1 - statistics.NormalDist().cdf(2.0)
    assert 1 - statistics.NormalDist().cdf(zs[2]) == pytest.approx(tail / 5)


def test_min_delta_is_a_floor_for_keeping_too():
    cfg = make_cfg(min_delta=10.0)
    assert confirm(cfg, [5.0, 5.0], best(0.5), NOISE, k=1).verdict == "not_confirmed"


@pytest.mark.parametrize(("df", "p"), [(1, 0.2), (2, 0.2), (4, 0.05), (10, 0.5), (60, 0.9)])
def test_chi2_quantile_matches_scipy(df, p):
    stats = pytest.importorskip("scipy.stats")
    assert ratchet.chi2_quantile(p, df) == pytest.approx(stats.chi2.ppf(p, df), rel=1e-6)


def test_pooled_noise_ignores_single_runs_and_guards_a_small_pool():
    groups = [[1.0, 1.25, 1.5], [2.0], [3.0, 3.5]]
    n = pooled = ratchet.pooled(groups, confidence=0.8)
    ss = 0.125 + 0.125  # (0.25² + 0 + 0.25²) + 2·0.25²
    assert n.df == 3 and pooled.sd == pytest.approx(math.sqrt(ss / 3))
    assert n.sigma > n.sd  # an upper bound while the pool is small
    wide = ratchet.pooled([[float(i % 2) for i in range(400)]], confidence=0.8)
    assert wide.sigma == pytest.approx(wide.sd, rel=0.05)  # and close to it once it is large
    assert ratchet.pooled([[1.0], [2.0]], 0.8) == Noise(0.0, 0.0, 0)


def test_the_guard_covers_the_true_sigma_as_often_as_it_says():
    rng = random.Random(7)
    covered = 0
    for _ in range(2000):
        runs = [rng.gauss(0, 1.0) for _ in range(3)]  # a 3-run baseline: df 2
        covered += ratchet.pooled([runs], confidence=0.8).sigma >= 1.0
    assert covered / 2000 == pytest.approx(0.8, abs=0.03)


def test_the_selection_run_is_never_its_own_evidence():
    assert ratchet.split_runs([("trial", 9.0), ("confirm", 1.0), ("confirm", 2.0)]) == (
        9.0,
        [1.0, 2.0],
    )
    assert ratchet.split_runs([("baseline", 1.0), ("baseline", 2.0), ("confirm", 3.0)]) == (
        None,
        [1.0, 2.0, 3.0],
    )
    assert ratchet.split_runs([("trial", 9.0)]) == (9.0, [])


def test_verdicts_describe_their_figures():
    v = confirm(make_cfg(), [1.0, 1.0], best(0.5, trial=4), NOISE, k=1)
    text = v.describe()
    assert text.startswith("kept (confirmed 1 (n=2), +0.5 vs threshold")
    assert "best trial 4 0.5 n=3" in text and "σ 0.25" in text
    assert v.record()["best_trial"] == 4


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize(
    "a, b", [(0.5, 0.25), (0.25, 0.5), (0.5, 0.5), (float("inf"), 1.0), (-1.0, float("inf"))]
)
def test_one_direction_rule(direction, a, b):
    higher = direction == "maximize"
    assert ratchet.better(direction, a, b) is (a > b if higher else a < b)
    assert ratchet.gain(direction, a, b) == (a - b if higher else b - a)
    assert ratchet.sign(direction) == (1.0 if higher else -1.0)


def test_the_ratchet_imports_no_pydantic():
    """The fast views (`status`, `leaderboard`) use the direction rule."""
    import subprocess
    import sys

    code = (
        "import sys, nightlab.store.read, nightlab.ratchet; "
        "print(sorted({'pydantic', 'sqlalchemy', 'nightlab.config'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_later_challengers_of_one_best_face_a_higher_screen_too():
    cfg = make_cfg(screen_multiplier=1.0)
    assert threshold(cfg, 0.25, 3, challenger=1) == threshold(cfg, 0.25, 3)
    assert threshold(cfg, 0.25, 3, challenger=4) > threshold(cfg, 0.25, 3, challenger=2)
    v = screen(cfg, 0.9, best(0.5), NOISE, challenger=3)
    assert v.z == pytest.approx(ratchet.bonferroni(1.0, 3)) and v.z > 1.0

