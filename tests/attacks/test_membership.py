"""Membership inference: the AUC against a pairwise count, DP-SGD's step against autograd,
epsilon against Opacus, and the attack weakening under DP."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant

from course_lib.attacks.membership import (
    _same_class_mix,
    example_losses,
    loss_threshold_attack,
    run_membership_inference,
    train_dp_sgd,
)
from course_lib.dp import DPConfig, clip_update
from course_lib.fl.models import make_mlp


def test_auc_is_the_probability_a_member_has_the_lower_loss():
    rng = np.random.default_rng(0)
    members, others = rng.exponential(1.0, 40), rng.exponential(1.5, 30)
    auc, *_ = loss_threshold_attack(members, others)
    pairs = [(m < o) + 0.5 * (m == o) for m in members for o in others]  # Mann-Whitney
    assert auc == pytest.approx(np.mean(pairs))
    assert loss_threshold_attack([0.1, 0.2], [1.0, 2.0])[0] == 1.0
    assert loss_threshold_attack([1.0, 2.0], [0.1, 0.2])[0] == 0.0


def test_yeom_threshold_accuracy_and_advantage_by_hand():
    # mean member loss = 0.5; members at or below it: 2 of 3; non-members: 1 of 4
    auc, accuracy, advantage, tau = loss_threshold_attack([0.1, 0.4, 1.0],
                                                          [0.3, 0.9, 2.0, 3.0])
    assert tau == pytest.approx(0.5)
    assert advantage == pytest.approx(2 / 3 - 1 / 4)
    assert accuracy == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert loss_threshold_attack([0.1], [0.3], threshold=0.2)[3] == 0.2


def test_example_losses_match_cross_entropy(digits):
    model = make_mlp(seed=1)
    X, y = digits.X_test[:20], digits.y_test[:20]
    expected = F.cross_entropy(model(X), y, reduction="none").detach().numpy()
    np.testing.assert_allclose(example_losses(model, X, y), expected, rtol=1e-6)


def _one_step(model, X, y, *, dp, lr):
    # batch_size = n gives q = 1: every example is picked, one step per epoch
    trained, steps, q = train_dp_sgd(model, X, y, dp=dp, epochs=1, batch_size=len(y), lr=lr)
    assert (steps, q) == (1, 1.0)
    return trained


def test_dp_sgd_step_without_clipping_or_noise_is_a_gradient_step(digits):
    model = make_mlp(seed=0)
    X, y = digits.X_train[:16], digits.y_train[:16]
    trained = _one_step(model, X, y, dp=DPConfig(0.0, 1e6), lr=0.5)
    oracle = copy.deepcopy(model)
    F.cross_entropy(oracle(X), y).backward()  # mean gradient, by autograd
    for p, q in zip(oracle.parameters(), trained.parameters()):
        torch.testing.assert_close(q, p.detach() - 0.5 * p.grad, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # the input model is untouched


def test_dp_sgd_clips_every_example_before_averaging(digits):
    model = make_mlp(seed=0)
    X, y = digits.X_train[:8], digits.y_train[:8]
    trained = _one_step(model, X, y, dp=DPConfig(0.0, 0.3), lr=1.0)
    clipped = []
    for i in range(8):  # per-example gradients one at a time, by autograd, then clipped
        copy_ = copy.deepcopy(model)
        F.cross_entropy(copy_(X[i:i + 1]), y[i:i + 1]).backward()
        clipped.append(clip_update({k: p.grad for k, p in copy_.named_parameters()}, 0.3))
    for name, p in model.named_parameters():
        expected = p.detach() - sum(c[name] for c in clipped) / 8
        torch.testing.assert_close(dict(trained.named_parameters())[name], expected,
                                   rtol=1e-5, atol=1e-6)


def test_dp_sgd_noise_is_seeded(digits):
    X, y = digits.X_train[:50], digits.y_train[:50]
    dp = DPConfig(1.0, 1.0)
    a, *_ = train_dp_sgd(make_mlp(seed=0), X, y, dp=dp, epochs=2, batch_size=10, lr=0.1, seed=3)
    b, *_ = train_dp_sgd(make_mlp(seed=0), X, y, dp=dp, epochs=2, batch_size=10, lr=0.1, seed=3)
    c, *_ = train_dp_sgd(make_mlp(seed=0), X, y, dp=dp, epochs=2, batch_size=10, lr=0.1, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_plain_target_leaks_membership(digits):
    result = run_membership_inference(digits, seed=0)
    assert result.auc > 0.65 and result.advantage > 0.15  # measured: 0.697, 0.27
    assert math.isinf(result.epsilon) and result.delta is None
    assert len(result.member_losses) == len(result.nonmember_losses) == 100
    assert result.member_losses.mean() < result.nonmember_losses.mean()


def test_dp_pushes_the_auc_towards_one_half_and_reports_opacus_epsilon(digits):
    plain = run_membership_inference(digits, seed=0)
    dp = DPConfig(noise_multiplier=10.0, max_norm=1.0, delta=1e-3)
    private = run_membership_inference(digits, dp=dp, seed=0)
    assert private.auc < plain.auc - 0.1 and private.auc < 0.6  # measured: 0.55 vs 0.70
    assert private.test_accuracy < plain.test_accuracy  # the price of privacy
    accountant = RDPAccountant()  # 100 members, batches of 50: q = 0.5, 50 epochs = 100 steps
    accountant.history = [(10.0, 0.5, 100)]
    assert private.epsilon == pytest.approx(accountant.get_epsilon(delta=1e-3))
    assert "epsilon=" in repr(private) and "no DP" in repr(plain)


def test_non_members_have_the_members_class_mix(digits):
    members = digits.y_train[:30]
    chosen = _same_class_mix(digits.y_test, members, np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 30
    assert sorted(digits.y_test[chosen].tolist()) == sorted(members.tolist())
    with pytest.raises(ValueError, match="lower `num_members`"):
        _same_class_mix(digits.y_test[:5], members, np.random.default_rng(0))
    result = run_membership_inference(digits, num_members=30, epochs=2, seed=5)
    assert len(result.member_losses) == len(result.nonmember_losses) == 30


def test_error_paths_name_the_parameter(digits):
    X, y = digits.X_train[:10], digits.y_train[:10]
    with pytest.raises(TypeError, match="`dp` must be a course_lib.dp.DPConfig"):
        train_dp_sgd(make_mlp(), X, y, dp=1.0, epochs=1, batch_size=5, lr=0.1)
    with pytest.raises(ValueError, match=r"`batch_size` must be an int in \[1, 10\], got 11"):
        train_dp_sgd(make_mlp(), X, y, dp=DPConfig(1.0, 1.0), epochs=1, batch_size=11, lr=0.1)
    with pytest.raises(ValueError, match="`lr`"):
        train_dp_sgd(make_mlp(), X, y, dp=DPConfig(1.0, 1.0), epochs=1, batch_size=5, lr=0)
    with pytest.raises(ValueError, match="`num_members`"):
        run_membership_inference(digits, num_members=1)
    with pytest.raises(TypeError, match="`dp` must be a DPConfig or None"):
        run_membership_inference(digits, dp={"noise_multiplier": 1.0})
    with pytest.raises(TypeError, match="`data`"):
        run_membership_inference(X)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        loss_threshold_attack([], [1.0])
