"""The one DP-SGD against oracles: per-sample gradients against autograd on each sample alone,
clipping against clip_update, noise statistics, Poisson sampling, and whole steps against a
plain autograd step (SGD) and torch's own Adam."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.dp import DPConfig, clip_update, update_norm
from course_lib.dp.dpsgd import (
    clip_factors,
    clip_per_sample,
    noisy_clipped_sum,
    per_sample_gradients,
    poisson_sample,
    train_dp_sgd,
)


def _data(n: int = 12, features: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, 3, (n,), generator=g)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test-only: the library never seeds globally
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _autograd_one_at_a_time(model, X, y, loss=F.cross_entropy):
    grads = []
    for i in range(len(y)):  # the oracle: plain autograd on each sample alone
        alone = copy.deepcopy(model)
        loss(alone(X[i:i + 1]), y[i:i + 1]).backward()
        grads.append({k: p.grad.clone() for k, p in alone.named_parameters() if p.requires_grad})
    return grads


def test_per_sample_gradients_equal_autograd_on_each_sample_alone():
    model, (X, y) = _model(), _data()
    grads = per_sample_gradients(model, X, y)
    oracle = _autograd_one_at_a_time(model, X, y)
    for name, g in grads.items():
        assert g.shape == (12, *dict(model.named_parameters())[name].shape)
        for i in range(12):
            torch.testing.assert_close(g[i], oracle[i][name], rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())  # the model is untouched


def test_per_sample_gradients_with_another_loss_and_frozen_parameters():
    model, (X, y) = _model(1), _data(seed=1)
    model[0].weight.requires_grad_(False)  # frozen: no gradient asked for, none returned

    def loss(out, t):  # squared error against one-hot targets (no .item(): vmap-safe)
        return (out - torch.eye(3)[t]).pow(2).sum()

    grads = per_sample_gradients(model, X, y, loss=loss)
    assert "0.weight" not in grads and set(grads) == {"0.bias", "2.weight", "2.bias"}
    oracle = _autograd_one_at_a_time(model, X, y, loss=loss)
    for name, g in grads.items():
        torch.testing.assert_close(g, torch.stack([o[name] for o in oracle]), rtol=1e-5,
                                   atol=1e-6)
    empty = per_sample_gradients(model, X[:0], y[:0])
    assert empty["2.weight"].shape == (0, 3, 5)


@pytest.mark.parametrize("max_norm", [1e-3, 0.1, 1.0, 1e3])
def test_clipping_bounds_each_norm_and_matches_clip_update(max_norm):
    model, (X, y) = _model(), _data()
    grads = per_sample_gradients(model, X, y)
    clipped = clip_per_sample(grads, max_norm)
    for i in range(12):
        one = {k: g[i] for k, g in grads.items()}
        mine = {k: g[i] for k, g in clipped.items()}
        assert update_norm(mine) <= max_norm * (1 + 1e-5)
        expected = clip_update(one, max_norm)  # the course's own clipping, one at a time
        for k in one:
            torch.testing.assert_close(mine[k], expected[k], rtol=1e-5, atol=1e-8)
    assert clip_factors(grads, max_norm).shape == (12,)
    assert bool((clip_factors(grads, max_norm) <= 1).all())


def test_noisy_sum_without_noise_is_the_sum_of_clipped_gradients():
    model, (X, y) = _model(), _data()
    grads = per_sample_gradients(model, X, y)
    noisy = noisy_clipped_sum(grads, max_norm=0.05, noise_multiplier=0.0,
                              generator=torch.Generator())
    for k, g in clip_per_sample(grads, 0.05).items():
        torch.testing.assert_close(noisy[k], g.sum(0), rtol=1e-5, atol=1e-7)


def test_noise_has_std_z_times_c_and_is_seeded():
    grads = {"w": torch.zeros(0, 400, 500)}  # an empty batch: the sum is pure noise
    noisy = noisy_clipped_sum(grads, max_norm=0.5, noise_multiplier=3.0,
                              generator=torch.Generator().manual_seed(0))["w"]
    assert float(noisy.std()) == pytest.approx(1.5, rel=0.01)  # 200,000 draws
    assert abs(float(noisy.mean())) < 0.01
    again = noisy_clipped_sum(grads, max_norm=0.5, noise_multiplier=3.0,
                              generator=torch.Generator().manual_seed(0))["w"]
    assert torch.equal(noisy, again)


def test_poisson_sample_has_rate_q():
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([len(poisson_sample(200, 0.1, g)) for _ in range(300)], dtype=float)
    assert float(sizes.mean()) == pytest.approx(20, abs=0.6)  # binomial: std 4.2 / sqrt(300)
    assert float(sizes.std()) == pytest.approx((200 * 0.1 * 0.9) ** 0.5, rel=0.15)
    assert len(poisson_sample(50, 1.0, g)) == 50  # q = 1: everyone, every step


def test_one_step_without_clipping_or_noise_is_a_gradient_step():
    model, (X, y) = _model(), _data()
    trained, steps, q = train_dp_sgd(model, X, y, dp=DPConfig(0.0, 1e6), epochs=1,
                                     batch_size=12, lr=0.5)
    assert (steps, q) == (1, 1.0)
    oracle = copy.deepcopy(model)
    F.cross_entropy(oracle(X), y).backward()  # the mean gradient, by autograd
    for p, t in zip(oracle.parameters(), trained.parameters()):
        torch.testing.assert_close(t, p.detach() - 0.5 * p.grad, rtol=1e-5, atol=1e-6)


def test_adam_path_equals_torch_adam_on_the_mean_gradient():
    model, (X, y) = _model(), _data()
    trained, steps, _ = train_dp_sgd(model, X, y, dp=DPConfig(0.0, 1e6), epochs=3,
                                     batch_size=12, lr=0.01, optimiser="adam")
    oracle = copy.deepcopy(model)
    adam = torch.optim.Adam(oracle.parameters(), lr=0.01)
    for _ in range(steps):  # full batches (q = 1), no clipping, no noise: plain Adam
        adam.zero_grad()
        F.cross_entropy(oracle(X), y).backward()
        adam.step()
    for p, t in zip(oracle.parameters(), trained.parameters()):
        torch.testing.assert_close(t, p, rtol=1e-4, atol=1e-6)


def test_training_is_seeded_and_leaves_frozen_parameters_alone():
    model, (X, y) = _model(), _data(40)
    model[0].bias.requires_grad_(False)
    dp = DPConfig(1.0, 1.0)
    a, steps, q = train_dp_sgd(model, X, y, dp=dp, epochs=2, batch_size=10, lr=0.1, seed=3)
    b, *_ = train_dp_sgd(model, X, y, dp=dp, epochs=2, batch_size=10, lr=0.1, seed=3)
    c, *_ = train_dp_sgd(model, X, y, dp=dp, epochs=2, batch_size=10, lr=0.1, seed=4)
    assert (steps, q) == (8, 0.25)
    assert all(torch.equal(p, r) for p, r in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[2].weight, c[2].weight)
    assert torch.equal(a[0].bias, model[0].bias)  # frozen: unchanged
    assert not torch.equal(a[0].weight, model[0].weight)


def test_bad_arguments_name_the_parameter():
    model, (X, y) = _model(), _data()
    dp = DPConfig(1.0, 1.0)
    with pytest.raises(TypeError, match="`dp` must be a course_lib.dp.DPConfig"):
        train_dp_sgd(model, X, y, dp=1.0, epochs=1, batch_size=5, lr=0.1)
    with pytest.raises(ValueError, match=r"`batch_size` must be an int in \[1, 12\], got 13"):
        train_dp_sgd(model, X, y, dp=dp, epochs=1, batch_size=13, lr=0.1)
    with pytest.raises(ValueError, match=r"`lr` must be a finite number in \(0, inf\), got 0"):
        train_dp_sgd(model, X, y, dp=dp, epochs=1, batch_size=5, lr=0)
    with pytest.raises(ValueError, match="`optimiser` must be one of"):
        train_dp_sgd(model, X, y, dp=dp, epochs=1, batch_size=5, lr=0.1, optimiser="rmsprop")
    with pytest.raises(ValueError, match="same number"):
        train_dp_sgd(model, X, y[:5], dp=dp, epochs=1, batch_size=5, lr=0.1)
    with pytest.raises(ValueError, match="`seed`"):
        train_dp_sgd(model, X, y, dp=dp, epochs=1, batch_size=5, lr=0.1, seed=-1)
    with pytest.raises(TypeError, match="`generator`"):
        poisson_sample(5, 0.5, generator=0)
    with pytest.raises(ValueError, match="`sample_rate`"):
        poisson_sample(5, 0.0, generator=torch.Generator())
    with pytest.raises(ValueError, match="`max_norm`"):
        clip_factors(per_sample_gradients(model, X, y), 0.0)
