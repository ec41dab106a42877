"""Issue 14's noise lab, 20 nights (bench/noise_lab.py): one switch helps by 5σ, two knobs
do nothing. The ratchet keeps the real change and (almost) never noise, the final pick's
confirmed mean is honest, and confirmation costs a small share of the night."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import noise_lab  # noqa: E402

pytestmark = pytest.mark.slow


def test_twenty_nights_keep_the_real_change_and_not_the_noise(tmp_path):
    results = noise_lab.run_nights(20, jobs=2, root=tmp_path)
    got = noise_lab.summary(results)
    shown = "\n".join(map(str, results)) + f"\n{got}"
    assert got["noise_keeps"] <= 1, shown
    assert got["real_kept"] >= 19, shown
    assert got["within_1_sigma"] >= 18, shown
    assert got["errors_above"] and got["errors_below"], shown  # no bias of one sign
    assert got["max_confirm_share"] <= 0.25, shown
    # the screen let noise through and confirmation caught it: the point of confirming
    assert got["false_keeps_avoided"] >= 1, shown
