"""The ratchet keeps a trial only when it beats the best by more than max(min_delta, k·σ)."""

from __future__ import annotations

import pytest

from nightlab import ratchet
from nightlab.config import Config
from nightlab.ratchet import judge, threshold

from conftest import make_config


def make_cfg(direction: str, min_delta: float = 0.0, k: float = 2.0) -> Config:
    return make_config("m", direction, ratchet={"min_delta": min_delta, "sigma_multiplier": k})


# dyadic numbers keep every comparison exact


def test_threshold_is_the_larger_of_min_delta_and_k_sigma():
    assert threshold(make_cfg("maximize", min_delta=0.25, k=2), sigma=0.0625) == 0.25
    assert threshold(make_cfg("maximize", min_delta=0.0625, k=2), sigma=0.25) == 0.5
    assert threshold(make_cfg("maximize", min_delta=0.0, k=0), sigma=0.25) == 0.0


@pytest.mark.parametrize(
    ("objective", "verdict"),
    [
        (1.5, "kept"),  # +0.75 > 0.5
        (1.0, "discarded"),  # +0.5 == threshold: not beyond it
        (0.875, "discarded"),  # +0.375: inside the noise
        (0.5, "discarded"),  # equal to the best
        (0.25, "discarded"),  # worse
    ],
)
def test_maximize_keeps_only_beyond_k_sigma(objective, verdict):
    v = judge(make_cfg("maximize", min_delta=0.125, k=2), objective, best=0.5, sigma=0.25)
    assert v.verdict == verdict
    assert v.threshold == 0.5
    assert v.improvement == objective - 0.5


@pytest.mark.parametrize(
    ("objective", "verdict"),
    [
        (0.25, "kept"),  # -0.75: better by 0.75 > 0.5
        (0.5, "discarded"),  # better by exactly min_delta
        (0.625, "discarded"),
        (1.0, "discarded"),  # equal
        (2.0, "discarded"),  # worse
    ],
)
def test_minimize_keeps_only_beyond_min_delta(objective, verdict):
    v = judge(make_cfg("minimize", min_delta=0.5, k=2), objective, best=1.0, sigma=0.0625)
    assert v.verdict == verdict
    assert v.threshold == 0.5
    assert v.improvement == 1.0 - objective  # positive is better


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_equal_objective_is_discarded_even_with_no_threshold(direction):
    cfg = make_cfg(direction, min_delta=0.0, k=0.0)
    assert judge(cfg, 0.5, best=0.5, sigma=0.0).verdict == "discarded"
    better = 0.5 + (2**-10 if direction == "maximize" else -(2**-10))
    assert judge(cfg, better, best=0.5, sigma=0.0).verdict == "kept"


def test_verdict_describes_itself():
    v = judge(make_cfg("maximize", min_delta=0.125), 1.5, best=0.5, sigma=0.0)
    assert v.describe() == "kept (+1 vs threshold 0.125)"
    worse = judge(make_cfg("minimize", min_delta=0.125), 1.5, best=0.5, sigma=0.0)
    assert worse.describe() == "discarded (-1 vs threshold 0.125)"


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
