"""DP from its definition: sensitivity against brute force over neighbours, the Gaussian
mechanism's exact delta against numerical integration of the definition, both calibrations,
and one step against the accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from course_lib.dp import epsilon
from course_lib.dp.definition import (
    analytic_sigma,
    check_one_step,
    classical_sigma,
    clip_rows,
    empirical_sensitivity,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_mechanism,
    l2_sensitivity,
    remove_one,
    replace_one,
)


def _records(n=30, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 3


def test_neighbours_differ_in_one_record():
    x = _records(5)
    assert remove_one(x, 2).shape == (4, 4)
    np.testing.assert_array_equal(remove_one(x, 2), x[[0, 1, 3, 4]])
    y = replace_one(x, 1, np.zeros(4))
    assert (y != x).any(axis=1).sum() == 1 and not y[1].any()
    assert x[1].any()  # the original is unchanged


def test_clipping_bounds_every_record():
    clipped = clip_rows(_records(), 1.5)
    norms = np.linalg.norm(clipped, axis=1)
    assert norms.max() <= 1.5 + 1e-12
    small = _records() * 1e-3
    np.testing.assert_array_equal(clip_rows(small, 1.5), small)  # already inside: unchanged


@pytest.mark.parametrize("seed", range(3))
def test_sum_sensitivity_bounds_brute_force_and_is_reached(seed):
    bound = 2.0
    x = clip_rows(_records(seed=seed), bound)
    formula = l2_sensitivity("sum", norm_bound=bound)
    assert formula == bound
    brute = empirical_sensitivity(lambda d: d.sum(axis=0), x)
    assert brute <= formula + 1e-12
    assert brute == pytest.approx(formula)  # records were clipped: some sit on the bound
    u = x[0] / np.linalg.norm(x[0])
    replaced = empirical_sensitivity(lambda d: d.sum(axis=0), x, neighbouring="replace",
                                     candidates=[-bound * u])
    assert replaced == pytest.approx(l2_sensitivity("sum", norm_bound=bound,
                                                    neighbouring="replace"))


def test_mean_sensitivity_with_a_fixed_denominator():
    x = np.random.default_rng(0).uniform(0, 1, size=40)  # scalars in [0, 1]
    x[3] = 1.0
    n = 40

    def mean(d):
        return d.sum() / n  # fixed, public denominator

    formula = l2_sensitivity("mean", value_range=(0.0, 1.0), num_records=n)
    assert formula == pytest.approx(1 / 40)
    assert empirical_sensitivity(mean, x) == pytest.approx(formula)
    replace = l2_sensitivity("mean", value_range=(0.0, 1.0), num_records=n,
                             neighbouring="replace")
    assert empirical_sensitivity(mean, x, neighbouring="replace", candidates=[0.0, 1.0]) <= \
        replace + 1e-12
    assert l2_sensitivity("sum", value_range=(-3.0, 1.0)) == 3.0


def _delta_by_integration(sigma, eps, sensitivity):
    # The definition itself: delta(eps) = integral of max(0, p(x) - e^eps q(x)) dx,
    # p = N(0, sigma^2) (with the record), q = N(sensitivity, sigma^2) (without).
    p, q = stats.norm(0, sigma), stats.norm(sensitivity, sigma)
    # p > e^eps q exactly left of this point:
    cut = sensitivity / 2 - eps * sigma**2 / sensitivity
    value, _ = integrate.quad(lambda x: p.pdf(x) - math.exp(eps) * q.pdf(x), -np.inf, cut,
                              epsabs=1e-14, epsrel=1e-10)
    return value


@pytest.mark.parametrize("sigma, eps, sensitivity", [(1.0, 1.0, 1.0), (3.0, 0.5, 2.0),
                                                     (0.7, 3.0, 1.0), (5.0, 0.1, 1.0)])
def test_gaussian_delta_equals_the_definition_integrated(sigma, eps, sensitivity):
    assert gaussian_delta(sigma, eps, sensitivity) == \
        pytest.approx(_delta_by_integration(sigma, eps, sensitivity), rel=1e-6, abs=1e-14)


@pytest.mark.parametrize("eps", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-8])
def test_classical_is_sound_and_analytic_is_tight_and_smaller(eps, delta):
    classical = classical_sigma(eps, delta, sensitivity=2.0)
    assert classical == pytest.approx(math.sqrt(2 * math.log(1.25 / delta)) * 2.0 / eps)
    analytic = analytic_sigma(eps, delta, sensitivity=2.0)
    assert gaussian_delta(classical, eps, 2.0) <= delta  # the textbook bound holds
    assert gaussian_delta(analytic, eps, 2.0) == pytest.approx(delta, rel=1e-6)  # tight
    assert analytic < classical
    assert gaussian_epsilon(analytic, delta, 2.0) == pytest.approx(eps, rel=1e-6)


def test_analytic_works_for_large_epsilon_where_classical_refuses():
    with pytest.raises(ValueError, match="`epsilon` must be < 1 .*analytic_sigma"):
        classical_sigma(1.0, 1e-5)
    for eps in (1.0, 4.0, 20.0):
        sigma = analytic_sigma(eps, 1e-5)
        assert gaussian_delta(sigma, eps) == pytest.approx(1e-5, rel=1e-6)
    assert analytic_sigma(8.0, 1e-5) < analytic_sigma(4.0, 1e-5)


@pytest.mark.parametrize("eps", [0.3, 0.5, 0.9])
def test_one_classical_step_agrees_with_the_accountant(eps):
    check = check_one_step(eps, 1e-5)
    assert check.noise_multiplier == pytest.approx(classical_sigma(eps, 1e-5))
    assert check.accountant_epsilon == epsilon(noise_multiplier=check.noise_multiplier,
                                               sample_rate=1.0, steps=1, delta=1e-5)
    assert check.accountant_within_target and check.accountant_epsilon <= eps
    assert check.exact_epsilon <= check.accountant_epsilon  # the accountant is sound
    assert check.exact_epsilon <= eps
    assert f"epsilon={eps:g}" in repr(check)


def test_the_accountant_is_looser_than_exact_analytic_calibration_and_tiny_epsilon():
    analytic = check_one_step(1.0, 1e-5, calibration="analytic")
    assert analytic.exact_epsilon == pytest.approx(1.0, rel=1e-6)
    assert analytic.accountant_epsilon > 1.0  # measured 1.09: RDP's conversion costs
    tiny = check_one_step(0.1, 1e-5)  # orders up to 63 are too few for epsilon 0.1
    assert not tiny.accountant_within_target and tiny.exact_epsilon < 0.1


def test_gaussian_mechanism_is_seeded_and_has_std_sigma():
    a = gaussian_mechanism(np.zeros(100_000), sigma=2.5, seed=1)
    assert a.std() == pytest.approx(2.5, rel=0.01) and abs(a.mean()) < 0.03
    np.testing.assert_array_equal(a, gaussian_mechanism(np.zeros(100_000), sigma=2.5, seed=1))
    assert gaussian_mechanism(3.0, sigma=0.0, seed=0) == 3.0


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="`query` must be one of"):
        l2_sensitivity("median", norm_bound=1.0)
    with pytest.raises(ValueError, match="exactly one of"):
        l2_sensitivity("sum")
    with pytest.raises(ValueError, match="`num_records`"):
        l2_sensitivity("mean", norm_bound=1.0)
    with pytest.raises(ValueError, match="lo < hi"):
        l2_sensitivity("sum", value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"`delta` must be a number in \(0, 1\)"):
        analytic_sigma(1.0, 0.0)
    with pytest.raises(ValueError, match="`epsilon`"):
        analytic_sigma(0.0, 1e-5)
    with pytest.raises(ValueError, match="`sensitivity`"):
        classical_sigma(0.5, 1e-5, sensitivity=-1.0)
    with pytest.raises(ValueError, match="`index`"):
        remove_one(_records(3), 3)
    with pytest.raises(ValueError, match="`records`"):
        clip_rows([], 1.0)
    with pytest.raises(ValueError, match="`calibration`"):
        check_one_step(0.5, 1e-5, calibration="laplace")
    with pytest.raises(ValueError, match="`candidates`"):
        empirical_sensitivity(np.sum, _records(3), neighbouring="replace")
