"""The ratchet's figures over values a trial chose to be as large as a float allows: the
mean and spread never raise, and σ stays a finite figure (h-attack)."""

from __future__ import annotations

import math

import pytest

from nightlab import ratchet


def test_the_mean_of_the_largest_floats_does_not_overflow():
    assert ratchet.mean([1e308, 1e308]) == pytest.approx(1e308)
    assert ratchet.mean([1.7e308, 1.7e308, -1.7e308]) == pytest.approx(1.7e308 / 3)
    assert ratchet.mean([1.0, 2.0]) == 1.5  # the ordinary case: statistics.fmean


def test_a_spread_too_large_for_a_float_is_inf_not_an_error():
    assert ratchet.spread([1.7e308, -1.7e308]) == math.inf
    assert ratchet.spread([1.0, 3.0]) == pytest.approx(math.sqrt(2))


def test_pooled_noise_survives_groups_of_the_largest_floats():
    noise = ratchet.pooled([[1.0, 1.1, 0.9], [1e308, 1e308]], 0.8)
    assert noise.df == 3 and math.isfinite(noise.sigma)


def test_a_group_whose_squares_overflow_the_sum_is_left_out_not_made_inf():
    """Two groups each of whose squared deviations is finite but whose sum is not: σ stays
    finite (an inf σ became a null threshold that crashed the report)."""
    wild = [9e153, -9e153]  # deviation² 1.6e308 each: finite; two of them: not
    noise = ratchet.pooled([[1.0, 1.1, 0.9], wild, wild], 0.8)
    assert math.isfinite(noise.sigma) and math.isfinite(noise.sd)
