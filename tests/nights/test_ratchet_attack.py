"""Attacks on the ratchet (screen → confirm → keep) on whole nights: a trial that prints
values as large as a float allows, the best's re-runs beside a challenger with two slots,
the finish-up window, a loop killed between a verdict and its files (h-attack)."""

from __future__ import annotations

import json

import pytest

from nightlab import Lab

from conftest import rows

pytestmark = pytest.mark.slow

WHY = "boost the score on this seed and see if it holds"

HUGE = """
import json, os
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
mode = p.get("mode", "ok")
if mode == "first_seed_only":  # (the knob's name) the largest float on every seed
    print("score=1e308")
elif mode == "crash":  # (the knob's name) wild on new seeds: deviations² 1.6e308 each
    print("score=1e308" if seed < 1000 else f"score={9e153 if seed % 2 else -9e153}")
else:
    print(f"score={1.0 + p['boost'] + 0.01 * ((seed * 7) % 3 - 1)}")
"""


def night(make_lab, trial, *params, **options):
    options.setdefault("max_trials", 3 + len(params))
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": p} for p in params],
        trial=trial, modes=("first_seed_only",), confirm_runs=2, **options,
    )  # fmt: skip
    return lab, Lab(lab).run(report=lambda line: None)


def test_a_trial_printing_the_largest_float_on_every_seed_crashes_nothing(make_lab):
    """Its confirmation runs' mean overflowed `statistics.fmean`: the night crashed, and so
    did every restart and `leaderboard` (the lab was bricked)."""
    lab, final = night(make_lab, HUGE, {"boost": 0.0, "mode": "first_seed_only"},
                       {"boost": 0.5})  # fmt: skip
    assert final["state"] == "finished", final
    assert Lab(lab).leaderboard(10)
    assert Lab(lab).status()["best"] is not None
    assert Lab(lab).report().is_dir()


def test_wild_confirmations_leave_a_report_that_can_be_written(make_lab):
    """Two candidates whose confirmation runs' squared deviations sum past the largest
    float: σ became inf, its threshold null, and the report crashed on it."""
    lab, final = night(make_lab, HUGE, {"boost": 0.0, "mode": "crash"},
                       {"boost": 0.1, "mode": "crash"})  # fmt: skip
    assert final["state"] == "finished", final
    for (j,) in rows(lab, "SELECT judgement FROM trials WHERE judgement IS NOT NULL"):
        figures = json.loads(j)
        assert figures.get("threshold") is not None and figures.get("sigma") is not None
    assert Lab(lab).report().is_dir()
