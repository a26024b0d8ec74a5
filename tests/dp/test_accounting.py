"""The one epsilon path against Opacus's accountant, stepped by hand through its public API."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import RDPAccountant

from course_lib.dp import DPConfig, epsilon, noise_for_epsilon
from course_lib.dp.accounting import epsilon_after


def _stepped(z: float, q: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()  # the oracle: Opacus's public accountant API only
    for _ in range(steps):
        accountant.step(noise_multiplier=z, sample_rate=q)
    return accountant.get_epsilon(delta=delta)


@pytest.mark.parametrize("z, q, steps, delta", [(1.0, 0.1, 100, 1e-5), (0.8, 1.0, 20, 1e-3),
                                                (2.0, 0.01, 1000, 1e-6), (1.1, 0.3, 7, 1e-5)])
def test_epsilon_equals_opacus_accountant_to_the_last_bit(z, q, steps, delta):
    expected = _stepped(z, q, steps, delta)
    assert epsilon(noise_multiplier=z, sample_rate=q, steps=steps, delta=delta) == expected
    dp = DPConfig(z, 1.0, delta)
    assert dp.epsilon(sample_rate=q, steps=steps) == expected
    assert epsilon_after(dp, sample_rate=q, steps=steps) == expected


def test_every_round_of_a_run_equals_a_fresh_accountant():
    dp = DPConfig(1.3, 1.0, 1e-5)
    accountant = RDPAccountant()  # one accountant stepped once per round, as a run would
    for r in range(1, 31):
        accountant.step(noise_multiplier=1.3, sample_rate=0.2)
        assert epsilon_after(dp, sample_rate=0.2, steps=r) == accountant.get_epsilon(1e-5)


def test_the_printed_numbers_stay():
    assert f"{DPConfig(1.0, 1.0, 1e-5).epsilon(sample_rate=0.1, steps=100):.4f}" == "7.8993"
    assert epsilon(noise_multiplier=1.0, sample_rate=1.0, steps=1, delta=1e-5) == \
        pytest.approx(4.7285, abs=5e-5)


def test_epsilon_moves_the_right_way_and_edge_cases():
    base = dict(sample_rate=0.1, steps=100, delta=1e-5)
    assert epsilon(noise_multiplier=2.0, **base) < epsilon(noise_multiplier=1.0, **base)
    assert epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=200, delta=1e-5) > \
        epsilon(noise_multiplier=1.0, **base)
    assert epsilon(noise_multiplier=1.0, sample_rate=0.05, steps=100, delta=1e-5) < \
        epsilon(noise_multiplier=1.0, **base)  # subsampling amplifies privacy
    assert epsilon(noise_multiplier=0.0, **base) == math.inf
    assert epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0.0


def test_noise_for_epsilon_reaches_the_target():
    z = noise_for_epsilon(target_epsilon=4.0, sample_rate=0.1, steps=100, delta=1e-5)
    eps = epsilon(noise_multiplier=z, sample_rate=0.1, steps=100, delta=1e-5)
    assert 3.98 <= eps <= 4.0


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(noise_multiplier=-1.0), ValueError, r"`noise_multiplier` .*\[0, inf\), got -1.0"),
    (dict(noise_multiplier="1"), TypeError, "`noise_multiplier` must be a real number"),
    (dict(sample_rate=0.0), ValueError, r"`sample_rate` must be a number in \(0, 1\], got 0.0"),
    (dict(steps=1.5), TypeError, "`steps` must be an int"),
    (dict(steps=-1), ValueError, r"`steps` must be an int in \[0, inf\], got -1"),
    (dict(delta=0.0), ValueError, r"`delta` must be a number in \(0, 1\), got 0.0"),
    (dict(delta=math.nan), ValueError, "`delta`"),
])
def test_bad_arguments_name_the_parameter(kwargs, error, match):
    args = dict(noise_multiplier=1.0, sample_rate=0.5, steps=1, delta=1e-5) | kwargs
    with pytest.raises(error, match=match):
        epsilon(**args)
    with pytest.raises(ValueError, match="`target_epsilon`"):
        noise_for_epsilon(target_epsilon=0.0, sample_rate=0.5, steps=1, delta=1e-5)
