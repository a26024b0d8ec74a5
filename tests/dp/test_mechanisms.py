"""DP-FedAvg pieces: clipping against torch's clip_grad_norm_, noise statistics, validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.dp import (
    DPConfig,
    add_gaussian_noise,
    apply_update,
    clip_stacked,
    clip_update,
    epsilon,
    private_mean,
    state_delta,
    update_norm,
)
from course_lib.fl.models import make_mlp


def _random_update(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(t.shape, generator=g)
            for k, t in make_mlp(seed=0).state_dict().items()}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(1e-4, 1e3), max_norm=st.floats(1e-3, 1e2))
def test_clipped_norm_is_at_most_max_norm_and_small_updates_are_unchanged(seed, scale, max_norm):
    update = _random_update(seed, scale)
    clipped = clip_update(update, max_norm)
    before, after = update_norm(update), update_norm(clipped)
    assert after <= max_norm * (1 + 1e-6)
    if before <= max_norm:
        assert all(torch.equal(clipped[k], update[k]) for k in update)
    else:
        assert after == pytest.approx(max_norm, rel=1e-5)
        ratio = after / before  # same direction: every tensor scaled by the same factor
        for k in update:
            torch.testing.assert_close(clipped[k], update[k] * ratio, rtol=1e-5, atol=1e-7)


def test_clip_update_matches_torch_clip_grad_norm():
    update = _random_update(1, scale=0.5)
    model = make_mlp(seed=0)
    for name, p in model.named_parameters():
        p.grad = update[name].clone()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=2.0)  # the oracle
    clipped = clip_update(update, 2.0)
    for name, p in model.named_parameters():
        torch.testing.assert_close(clipped[name], p.grad, rtol=1e-5, atol=1e-6)


def test_update_norm_is_the_norm_of_the_concatenated_vector():
    update = _random_update(2)
    flat = torch.cat([t.flatten() for t in update.values()])
    assert update_norm(update) == pytest.approx(flat.norm().item(), rel=1e-6)


def test_clip_stacked_equals_clip_update_row_by_row():
    updates = [_random_update(s, scale) for s, scale in [(0, 0.01), (1, 1.0), (2, 5.0)]]
    stacked = {k: torch.stack([u[k] for u in updates]) for k in updates[0]}
    clipped = clip_stacked(stacked, 3.0)
    for i, u in enumerate(updates):
        expected = clip_update(u, 3.0)
        for k in u:
            torch.testing.assert_close(clipped[k][i], expected[k])
    zero = {k: torch.zeros_like(t) for k, t in stacked.items()}
    assert all(torch.equal(t, zero[k]) for k, t in clip_stacked(zero, 1.0).items())


def test_noise_has_the_calibrated_standard_deviation_and_is_reproducible():
    aggregate = {"w": torch.zeros(200_000)}
    noisy = add_gaussian_noise(aggregate, noise_multiplier=1.5, max_norm=2.0, num_clients=10,
                               generator=torch.Generator().manual_seed(0))
    assert noisy["w"].std().item() == pytest.approx(1.5 * 2.0 / 10, rel=0.01)
    assert abs(noisy["w"].mean().item()) < 0.003
    again = add_gaussian_noise(aggregate, noise_multiplier=1.5, max_norm=2.0, num_clients=10,
                               generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy["w"], again["w"])
    silent = add_gaussian_noise(aggregate, noise_multiplier=0.0, max_norm=2.0, num_clients=10,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(silent["w"], aggregate["w"])


def test_private_mean_without_noise_is_the_equal_weight_mean_of_clipped_updates():
    updates = [_random_update(s, scale) for s, scale in [(0, 0.01), (1, 1.0), (2, 5.0)]]
    result = private_mean(updates, max_norm=1.0, noise_multiplier=0.0, num_clients=4,
                          generator=torch.Generator())
    for k in updates[0]:
        expected = sum(clip_update(u, 1.0)[k] for u in updates) / 4  # fixed denominator
        torch.testing.assert_close(result[k], expected)


def test_delta_and_apply_round_trip():
    old, new = make_mlp(seed=0).state_dict(), make_mlp(seed=1).state_dict()
    back = apply_update(old, state_delta(new, old))
    for k in new:
        torch.testing.assert_close(back[k], new[k])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(noise_multiplier=-1.0, max_norm=1.0), ValueError, "`noise_multiplier`.*got -1.0"),
    (dict(noise_multiplier=1.0, max_norm=0.0), ValueError, r"`max_norm`.*\(0, inf\), got 0.0"),
    (dict(noise_multiplier=1.0, max_norm=1.0, delta=1.0), ValueError, r"`delta`.*\(0, 1\)"),
    (dict(noise_multiplier="1", max_norm=1.0), TypeError,
     "`noise_multiplier` must be a real number"),
    (dict(noise_multiplier=1.0, max_norm=math.inf), ValueError, "`max_norm`"),
])
def test_dpconfig_validates(kwargs, error, match):
    with pytest.raises(error, match=match):
        DPConfig(**kwargs)


def test_dpconfig_is_frozen():
    dp = DPConfig(noise_multiplier=1.0, max_norm=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dp.max_norm = 2.0


def test_error_paths_name_the_parameter():
    update = _random_update(0)
    with pytest.raises(ValueError, match="`max_norm`"):
        clip_update(update, 0)
    with pytest.raises(TypeError, match="`update` must be a non-empty state_dict"):
        clip_update([1.0], 1.0)
    with pytest.raises(ValueError, match=r"`sample_rate` must be a number in \(0, 1\], got 1.5"):
        epsilon(noise_multiplier=1.0, sample_rate=1.5, steps=1, delta=1e-5)
    with pytest.raises(ValueError, match="`steps` must be an int in"):
        epsilon(noise_multiplier=1.0, sample_rate=0.5, steps=-1, delta=1e-5)
    with pytest.raises(ValueError, match="`num_clients`"):
        add_gaussian_noise(update, noise_multiplier=1.0, max_norm=1.0, num_clients=0,
                           generator=torch.Generator())
    with pytest.raises(TypeError, match="`generator`"):
        add_gaussian_noise(update, noise_multiplier=1.0, max_norm=1.0, num_clients=1,
                           generator=0)
    with pytest.raises(ValueError, match="leading client dimension"):
        clip_stacked({"a": torch.zeros(2, 3), "b": torch.zeros(3)}, 1.0)
    with pytest.raises(ValueError, match="same keys"):
        state_delta({"a": torch.zeros(1)}, {"b": torch.zeros(1)})
