"""The empirical audit: Clopper-Pearson against scipy's own binomial test, the bound's formula
by hand, the DP-SGD step inside the audit against its known shift and noise, and the bound far
above zero without noise, never above the exact or the accountant's epsilon with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from course_lib.dp import epsilon
from course_lib.dp.audit import AuditResult, audit_dp_sgd, clopper_pearson, epsilon_lower_bound
from course_lib.dp.definition import gaussian_epsilon

ZS = [0.0, 0.5, 1.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def table():
    return audit_dp_sgd(noise_multipliers=ZS, seed=0)


@pytest.mark.parametrize("k, n", [(0, 50), (3, 50), (25, 50), (50, 50), (1, 2500)])
def test_clopper_pearson_equals_scipys_exact_interval(k, n):
    low, high = clopper_pearson(k, n, confidence=0.95)
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert float(low) == pytest.approx(expected.low, abs=1e-12)
    assert float(high) == pytest.approx(expected.high, abs=1e-12)


def test_epsilon_lower_bound_by_hand():
    assert float(epsilon_lower_bound(0.01, 0.5, 0.0)) == pytest.approx(math.log(50))
    assert float(epsilon_lower_bound(0.5, 0.01, 1e-5)) == pytest.approx(math.log((0.5 - 1e-5)
                                                                                 / 0.01))
    assert float(epsilon_lower_bound(0.5, 0.5, 0.0)) == 0.0  # a coin flip proves nothing
    assert float(epsilon_lower_bound(0.9, 0.9, 0.0)) == 0.0  # worse than a coin: clamped
    np.testing.assert_allclose(epsilon_lower_bound([0.01, 0.5], [0.5, 0.5], 0.0),
                               [math.log(50), 0.0])


def test_without_noise_the_bound_is_far_above_zero(table):
    plain = table[0]
    assert plain.noise_multiplier == 0 and plain.epsilon_lower > 6  # measured 6.52
    assert plain.fpr == 0 and plain.fnr == 0 and math.isinf(plain.epsilon_accountant)
    loss = audit_dp_sgd(noise_multipliers=[0.0], score="loss", trials=500, seed=1)[0]
    assert loss.epsilon_lower > 1  # the black-box loss test too


def test_with_noise_the_bound_never_exceeds_the_exact_or_the_accountants_epsilon(table):
    for result in table[1:]:
        z = result.noise_multiplier
        assert result.epsilon_accountant == epsilon(noise_multiplier=z, sample_rate=1.0,
                                                    steps=1, delta=1e-5)
        assert result.epsilon_exact == pytest.approx(gaussian_epsilon(z, 1e-5))
        assert result.epsilon_lower <= result.epsilon_exact <= result.epsilon_accountant
    lowers = [r.epsilon_lower for r in table]
    assert lowers == sorted(lowers, reverse=True)  # more noise, weaker attack
    assert table[1].epsilon_lower > 2  # yet not vacuous: z = 0.5 measured 4.0
    sampled = audit_dp_sgd(noise_multipliers=[0.5, 1.0], sample_rate=0.5, trials=500, seed=2)
    for result in sampled:
        assert result.epsilon_lower <= result.epsilon_accountant
        assert math.isnan(result.epsilon_exact)


def test_the_step_inside_the_audit_has_the_canarys_shift_and_the_noise_std():
    lr, C, n = 1.0, 1.0, 100
    exact = audit_dp_sgd(noise_multipliers=[0.0], trials=50, lr=lr, max_norm=C, seed=0)[0]
    # q = 1, no noise: every run is the same; the canary adds its clipped gradient (norm C)
    # along its own direction, divided by the expected batch q n.
    assert np.ptp(exact.scores_without) < 1e-5 and np.ptp(exact.scores_with) < 1e-5
    shift = exact.scores_with.mean() - exact.scores_without.mean()
    assert shift == pytest.approx(lr * C / n, rel=1e-4)
    noisy = audit_dp_sgd(noise_multipliers=[3.0], trials=2000, lr=lr, max_norm=C, seed=0)[0]
    # noise N(0, (z C)^2 I) projected on a unit vector, scaled by lr / (q n)
    assert noisy.scores_without.std() == pytest.approx(3.0 * C * lr / n, rel=0.03)
    assert noisy.scores_without.mean() == pytest.approx(exact.scores_without.mean(),
                                                        abs=4 * 0.03 / math.sqrt(4000))


def test_result_reads_well_and_is_seeded(table):
    assert isinstance(table[2], AuditResult)
    text = repr(table[2])
    assert "z=1" in text and "empirical epsilon >=" in text and "accountant 4.73" in text
    assert len(repr(table).splitlines()) == len(ZS) + 1
    twice = [audit_dp_sgd(noise_multipliers=[1.0], trials=200, seed=5)[0] for _ in range(2)]
    np.testing.assert_array_equal(twice[0].scores_with, twice[1].scores_with)
    other = audit_dp_sgd(noise_multipliers=[1.0], trials=200, seed=6)[0]
    assert not np.array_equal(other.scores_with, twice[0].scores_with)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="`noise_multipliers`"):
        audit_dp_sgd(noise_multipliers=[-1.0])
    with pytest.raises(ValueError, match="`trials`"):
        audit_dp_sgd(trials=5)
    with pytest.raises(ValueError, match="`score`"):
        audit_dp_sgd(score="auc")
    with pytest.raises(ValueError, match="`confidence`"):
        audit_dp_sgd(confidence=1.0)
    with pytest.raises(ValueError, match="`sample_rate`"):
        audit_dp_sgd(sample_rate=0.0)
    with pytest.raises(ValueError, match="`count`"):
        clopper_pearson(11, 10)
