"""Baseline repeats that measure no noise: a command that ignores NIGHTLAB_SEED gives the same
value on every seed, so the noise is 0 and any gain counts as beating it. The night says so,
once, in its lines and its record."""

from __future__ import annotations

import pytest

from nightlab import Lab

from conftest import rows

pytestmark = pytest.mark.slow

IGNORES_SEED = 'print("score=0.5")\n'
SEEDED = 'import os\nprint(f"score={0.5 + int(os.environ[\'NIGHTLAB_SEED\']) / 1000}")\n'


def night(make_lab, trial: str) -> list[str]:
    lab = make_lab(trial=trial, max_trials=3)
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    Lab(lab).run(report=lines.append, max_trials=4)  # resumed: not said again
    return lines, lab


def test_a_command_that_ignores_the_seed_is_told_once(make_lab):
    lines, lab = night(make_lab, IGNORES_SEED)
    said = [line for line in lines if "baseline repeats, each on its own seed" in line]
    assert len(said) == 1, lines
    assert "all gave score = 0.5" in said[0] and "ignores NIGHTLAB_SEED" in said[0]
    assert "min_delta (0)" in said[0]
    assert len(rows(lab, "SELECT id FROM events WHERE kind = 'baseline_no_spread'")) == 1


def test_seeded_repeats_are_not_warned_about(make_lab):
    lines, lab = night(make_lab, SEEDED)
    assert not [line for line in lines if "each on its own seed" in line]
    assert rows(lab, "SELECT id FROM events WHERE kind = 'baseline_no_spread'") == []
