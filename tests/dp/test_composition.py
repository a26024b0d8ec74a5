"""Composition counted three ways, each checked against the exact composition of Gaussian
steps (k steps of noise z = one step of z / sqrt(k)), and subsampling."""

from __future__ import annotations

import math

import pytest

from course_lib.dp import epsilon
from course_lib.dp.composition import (
    advanced_composition,
    compare_composition,
    compare_subsampling,
    rdp_composition,
    simple_composition,
    subsampled_epsilon,
)
from course_lib.dp.definition import gaussian_delta


def test_simple_and_advanced_by_hand():
    assert simple_composition(0.1, 1e-6, 10) == (pytest.approx(1.0), pytest.approx(1e-5))
    eps, delta = advanced_composition(0.1, 1e-6, 100, delta_slack=1e-5)
    assert eps == pytest.approx(0.1 * math.sqrt(200 * math.log(1e5)) + 100 * 0.1 * math.expm1(0.1))
    assert delta == pytest.approx(1e-4 + 1e-5)
    assert advanced_composition(0.01, 0.0, 10_000, delta_slack=1e-5)[0] < \
        simple_composition(0.01, 0.0, 10_000)[0]  # sqrt(k) beats k for small steps


def test_rdp_composition_is_the_accountant():
    assert rdp_composition(1.5, 40, 1e-5) == epsilon(noise_multiplier=1.5, sample_rate=1.0,
                                                     steps=40, delta=1e-5)
    assert rdp_composition(1.5, 40, 1e-5, sample_rate=0.1) == \
        epsilon(noise_multiplier=1.5, sample_rate=0.1, steps=40, delta=1e-5)


@pytest.mark.parametrize("z", [5.0, 20.0])
def test_every_count_is_at_least_the_exact_composition_and_rdp_wins_over_many_steps(z):
    table = compare_composition(noise_multiplier=z, steps=[1, 10, 100, 1000], delta=1e-5)
    for k, s, a, r, e in zip(table.steps, table.simple, table.advanced, table.rdp, table.exact):
        # the exact column is right: one Gaussian step of z / sqrt(k) has delta 1e-5 there
        assert gaussian_delta(z / math.sqrt(k), e) == pytest.approx(1e-5, rel=1e-5)
        assert min(s, a, r) >= e * (1 - 1e-9)  # all three are valid upper bounds
        if k >= 10:
            assert r < s and r < a  # Renyi DP is the tightest over many steps
    assert table.simple[0] == pytest.approx(table.exact[0])  # one step: nothing to compose
    assert "advanced" in repr(table) and len(repr(table).splitlines()) == 5


def test_advanced_beats_simple_only_after_enough_steps():
    table = compare_composition(noise_multiplier=20.0, steps=[10, 1000], delta=1e-5)
    assert table.advanced[0] > table.simple[0] and table.advanced[1] < table.simple[1]


def test_subsampling_amplifies():
    assert subsampled_epsilon(1.0, 1e-5, 1.0) == (pytest.approx(1.0), pytest.approx(1e-5))
    eps, delta = subsampled_epsilon(1.0, 1e-5, 0.01)
    assert eps == pytest.approx(math.log(1 + 0.01 * (math.e - 1))) and eps < 0.02
    assert delta == pytest.approx(1e-7)
    result = compare_subsampling(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)
    assert result.sampled < result.full / 100
    assert "q=0.01" in repr(result)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="`steps`"):
        simple_composition(1.0, 0.0, 0)
    with pytest.raises(ValueError, match="`delta_slack`"):
        advanced_composition(1.0, 0.0, 3, delta_slack=0.0)
    with pytest.raises(ValueError, match="`sample_rate`"):
        subsampled_epsilon(1.0, 0.0, 1.5)
    with pytest.raises(ValueError, match="`noise_multiplier`"):
        compare_composition(noise_multiplier=0.0, steps=3, delta=1e-5)
    with pytest.raises(TypeError, match="`steps`"):
        compare_composition(noise_multiplier=1.0, steps=[1, 2.5], delta=1e-5)
