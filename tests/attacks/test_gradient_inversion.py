"""Gradient inversion: gradients against PyTorch autograd, the attack against the truth, and
the defences that stop it."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.attacks.defences import add_noise, defend, prune_gradient
from course_lib.attacks.gradient_inversion import (
    RECOVERED_PSNR_DB,
    attack_digits,
    attack_many,
    client_gradient,
    infer_label,
    invert_gradient,
    psnr,
)
from course_lib.dp import update_norm
from course_lib.fl.models import make_mlp


def test_client_gradient_matches_backward_and_leaves_the_model_alone(digits):
    model = make_mlp(seed=3)
    X, y = digits.X_train[:5], digits.y_train[:5]
    grad = client_gradient(model, X, y)
    oracle = copy.deepcopy(model)
    F.cross_entropy(oracle(X), y).backward()  # the oracle: plain autograd on a copy
    for name, p in oracle.named_parameters():
        torch.testing.assert_close(grad[name], p.grad)
    assert all(p.grad is None for p in model.parameters())


def test_idlg_reads_the_label_of_every_single_example_gradient(digits):
    model = make_mlp(seed=0)
    for i in range(30):
        grad = client_gradient(model, digits.X_train[i:i + 1], digits.y_train[i:i + 1])
        assert infer_label(grad) == int(digits.y_train[i])


def test_inversion_recovers_a_single_digit_exactly(digits):
    model = make_mlp(seed=0)
    x_true, y_true = digits.X_train[3:4], digits.y_train[3:4]
    x, labels, distance = invert_gradient(model, client_gradient(model, x_true, y_true), seed=1)
    assert labels.tolist() == y_true.tolist()
    assert distance < 1e-6
    torch.testing.assert_close(x, x_true, atol=1e-3, rtol=0)


def test_attack_without_defence_recovers_the_digits(digits):
    results = attack_many(digits, trials=3)
    assert [r.num_recovered for r in results] == [1, 1, 1]
    for r in results:
        assert min(r.psnr) > 40 and r.labels_used == r.labels_true
        assert r.reconstruction_pixels.shape == (1, 8, 8)
        pixels = r.reconstruction_pixels
        assert 0 <= float(pixels.min()) <= float(pixels.max()) <= 1


@pytest.mark.parametrize("defence", [
    dict(noise_sigma=1.0),                   # strong noise
    dict(clip_norm=1.0, noise_sigma=0.1),    # DP-SGD-style: clip, then noise z = 0.1
    dict(prune_fraction=0.99),               # extreme pruning
    dict(num_clients=10),                    # secure aggregation: only the sum of 10 is seen
])
def test_strong_defences_stop_the_attack(digits, defence):
    for r in attack_many(digits, trials=3, **defence):
        assert r.num_recovered == 0
        assert max(r.psnr) < RECOVERED_PSNR_DB


def test_clipping_alone_only_rescales_and_does_not_stop_the_attack(digits):
    assert sum(r.num_recovered for r in attack_many(digits, trials=3, clip_norm=1.0)) == 3


def test_a_batch_is_harder_unless_the_attacker_knows_the_labels(digits):
    r = attack_digits(digits, index=0, batch_size=4)
    assert len(r.psnr) == 4 and sorted(r.matched) == [0, 1, 2, 3]
    assert r.truth.shape == (4, 64) and r.reconstruction.shape == (4, 64)
    assert r.num_recovered < 4  # measured: 0/4 with DLG's optimised soft labels
    known = attack_digits(digits, index=0, batch_size=4, known_labels=True)
    assert known.labels_used == known.labels_true
    assert known.num_recovered > r.num_recovered  # measured: 4/4


def test_secure_aggregation_result_shapes(digits):
    r = attack_digits(digits, index=0, num_clients=5, attack_batch=5, known_labels=True)
    assert r.truth.shape == (5, 64) and len(r.psnr) == 5
    assert r.defence == "sum of 5 clients"


def test_same_seed_same_result(digits):
    a = attack_digits(digits, index=2, noise_sigma=0.1, seed=4)
    b = attack_digits(digits, index=2, noise_sigma=0.1, seed=4)
    assert torch.equal(a.reconstruction, b.reconstruction) and a.psnr == b.psnr


def test_psnr_formula_and_cap():
    a, b = torch.zeros(8, 8), torch.full((8, 8), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)  # mse 0.01 -> 10 * log10(1 / 0.01)
    assert psnr(a, a) == pytest.approx(100.0)
    assert psnr(a, torch.ones(8, 8)) == pytest.approx(0.0)
    assert math.isfinite(psnr(a, a))


def test_pruning_zeroes_the_smallest_fraction_of_each_tensor():
    g = {"w": torch.tensor([0.1, -3.0, 0.5, 2.0, -0.2]), "b": torch.tensor([1.0, -1e-3])}
    pruned = prune_gradient(g, 0.4)
    assert pruned["w"].tolist() == [0.0, -3.0, 0.5, 2.0, 0.0]
    assert torch.equal(pruned["b"], g["b"])  # int(0.4 * 2) = 0 entries to prune
    assert torch.equal(prune_gradient(g, 0.0)["w"], g["w"])
    big = {"w": torch.randn(1000, generator=torch.Generator().manual_seed(0))}
    assert int((prune_gradient(big, 0.9)["w"] == 0).sum()) == 900


def test_noise_and_defend_pipeline():
    g = {"w": torch.zeros(100_000)}
    noisy = add_noise(g, sigma=0.5, generator=torch.Generator().manual_seed(0))
    assert noisy["w"].std().item() == pytest.approx(0.5, rel=0.02)
    big = {"w": torch.full((100,), 3.0)}
    clipped = defend(big, clip_norm=1.0, generator=torch.Generator())
    assert update_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    assert defend(big, generator=torch.Generator())["w"] is big["w"]  # nothing chosen


def test_error_paths_name_the_parameter(digits):
    model = make_mlp(seed=0)
    grad = client_gradient(model, digits.X_train[:1], digits.y_train[:1])
    with pytest.raises(ValueError, match=r"`fraction` must be a number in \[0, 1\), got 1.0"):
        prune_gradient(grad, 1.0)
    with pytest.raises(ValueError, match="`sigma`"):
        add_noise(grad, sigma=-1.0, generator=torch.Generator())
    with pytest.raises(ValueError, match="`clip_norm`"):
        defend(grad, clip_norm=0.0, generator=torch.Generator())
    with pytest.raises(ValueError, match="`num_images`"):
        invert_gradient(model, grad, num_images=0)
    with pytest.raises(ValueError, match="one tensor per parameter"):
        invert_gradient(model, {"fc1.weight": grad["fc1.weight"]})
    with pytest.raises(ValueError, match=r"`labels` must have shape \(2,\)"):
        invert_gradient(model, grad, num_images=2, labels=torch.tensor([1]))
    with pytest.raises(TypeError, match="`labels` must be an int64 tensor"):
        invert_gradient(model, grad, labels=[1])
    with pytest.raises(TypeError, match="`model`"):
        invert_gradient("mlp", grad)
    with pytest.raises(ValueError, match="output layer's bias"):
        infer_label({"w": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"`attack_batch` must be an int in \[1, 2\]"):
        attack_digits(digits, num_clients=2, attack_batch=3)
    with pytest.raises(ValueError, match="`index`"):
        attack_digits(digits, index=10_000)
    with pytest.raises(TypeError, match="`data`"):
        attack_digits(digits.X_train)
    with pytest.raises(TypeError, match="`index` is set by attack_many"):
        attack_many(digits, index=3)
