"""Gradient inversion: rebuilding a client's training image from the gradient it sends.

In FedSGD a client sends the gradient of its loss; in FedAvg with one local step it sends
``-lr`` times that gradient. Federated learning keeps the *data* on the client, yet the
server can often rebuild the data from the update. "Deep Leakage from Gradients" (DLG, Zhu
et al. 2019) starts from random noise ``x'`` and moves it, with L-BFGS, until the gradient it
would produce matches the one observed:

    x* = argmin_x' || grad_w L(f(x'), y') - g_observed ||^2 .

"Improved DLG" (iDLG, Zhao et al. 2020) first reads the label off the gradient analytically:
for one example with cross-entropy, the last layer's bias gradient is ``softmax(z) - onehot(y)``,
whose only negative entry is at the true label ``y``. With several images and no labels, the
labels are optimised too (DLG's "soft" dummy labels).

The defences (:mod:`course_lib.attacks.defences`) act on what a client sends: a larger
**batch**; **clipping** and **Gaussian noise** (DP-SGD's recipe for one example); **pruning**
the smallest entries; and **secure aggregation**, simulated here by letting the server see
only the *sum* of ``num_clients`` clients' gradients, which it attacks (dividing by the
``num_clients`` it knows).

An image counts as **recovered** when the reconstruction's PSNR against the true image is at
least :data:`RECOVERED_PSNR_DB` = 20 dB on pixels scaled to [0, 1] (mean squared error at
most 0.01). For calibration: the *nearest other* training digit is that close for only 1 in
10 images (median 17.7 dB), and the mean digit scores 11 dB; so 20 dB means "this very
image", while 15-19 dB means "a digit that looks like it". Several reconstructions are paired
one-to-one with the true images they fit best (Hungarian matching).

Measured on the digits (untrained MLP, the first round; images 0-9, defaults, 0.15-0.3 s per
image on one thread): recovered 10/10 with no defence; clipping to norm 1 alone 9/10 (it only
rescales); pruning 20% 10/10, 90% 9/10, 99% 0/10; noise sigma 0.1 7/10, 0.3 0/10; clipping
to 1 plus noise 0.1 0/10; a batch of 4 22/40; the sum of 10 single-image clients 1/10 (the
reconstruction still resembles the client with the largest gradient, at 15-19 dB). An
attacker who knows every label and rebuilds all 10 images of that sum jointly
(``attack_batch=10, known_labels=True``) recovers 40/100: secure aggregation over ``K``
clients of ``B`` images hides about as much as one batch of ``K * B``. This MLP leaks more
than a CNN would: for a first linear layer with bias, ``dL/dW1[i, :] = dL/db1[i] * x``.

Examples
--------
>>> from course_lib.fl.data import load_digits
>>> from course_lib.attacks.gradient_inversion import attack_digits
>>> data = load_digits(seed=0)
>>> attack_digits(data, index=0).num_recovered
1
>>> attack_digits(data, index=0, noise_sigma=1.0).num_recovered
0
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.attacks.defences import defend
from course_lib.fl.data import Dataset
from course_lib.fl.models import make_mlp

__all__ = ["RECOVERED_PSNR_DB", "DEFAULT_ITERATIONS", "InversionResult", "client_gradient",
           "infer_label", "invert_gradient", "psnr", "attack_digits", "attack_many"]

RECOVERED_PSNR_DB = 20.0
DEFAULT_ITERATIONS = 100  # L-BFGS iterations; about 0.1-0.3 s per image on one thread
PIXEL_MAX = 16.0  # the digits' grey levels are 0..16
Gradient = dict[str, torch.Tensor]


def client_gradient(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> Gradient:
    """Gradient of the mean cross-entropy over ``(X, y)`` w.r.t. every parameter (by name).

    This is what one FedSGD client sends; ``model`` is not modified (no ``.grad`` is set).
    """
    params = {k: p.detach().requires_grad_(True) for k, p in model.named_parameters()}
    loss = F.cross_entropy(functional_call(model, params, (X,)), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    return {k: g.detach() for k, g in zip(params, grads)}


def infer_label(gradient: Mapping[str, torch.Tensor]) -> int:
    """iDLG: the label of a single-example gradient, from the last layer's bias gradient.

    That gradient is ``softmax(z) - onehot(y)``: negative at ``y`` only, so ``y`` is its argmin.
    The last tensor of ``gradient`` must be that bias (as in the course's MLP).
    """
    bias = list(gradient.values())[-1]
    if bias.dim() != 1:
        raise ValueError(f"the last tensor of `gradient` must be the output layer's bias "
                         f"(1-D), got shape {tuple(bias.shape)}")
    return int(bias.argmin())


def invert_gradient(model: nn.Module, gradient: Mapping[str, torch.Tensor], *,
                    num_images: int = 1, labels: torch.Tensor | None = None,
                    iterations: int = DEFAULT_ITERATIONS,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Find ``num_images`` inputs whose mean-loss gradient matches ``gradient`` (DLG / iDLG).

    Two attempts from one seeded random start, each L-BFGS stages of ``iterations``: (a) DLG's
    squared distance ``||g(x') - g||^2``, then a refinement on the cosine distance
    ``1 - cos(g(x'), g)`` (Geiping et al. 2020); (b) the cosine distance alone. The attempt
    with the smaller final cosine distance is returned. The cosine ignores the gradient's
    length, so clipping, which only shortens the gradient, does not stop the attack; the
    squared distance, fooled by a shortened gradient, still converges faster when nothing
    is clipped.

    Labels: ``labels`` if given; else for one image the iDLG label (:func:`infer_label`);
    else soft labels optimised jointly with the images (DLG). Entries of ``gradient`` that
    are exactly 0 (pruned) are still matched, as in the DLG paper.

    Returns
    -------
    images : torch.Tensor, shape (num_images, features)
    labels : torch.Tensor of int64, shape (num_images,)
        The labels used (the argmax of the soft labels when they were optimised).
    distance : float
        The final cosine distance, in [0, 2] (0: the gradients point the same way).
    """
    require_int("num_images", num_images, minimum=1, maximum=1000)
    require_int("iterations", iterations, minimum=1, maximum=100_000)
    require_int("seed", seed, minimum=0)
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch nn.Module, got {type(model).__name__}")
    leaves = {k: p.detach().requires_grad_(True) for k, p in model.named_parameters()}
    if set(leaves) != set(gradient):
        raise ValueError(f"`gradient` must have one tensor per parameter of `model` "
                         f"({sorted(leaves)}), got {sorted(gradient)}")
    target = [gradient[k].detach() for k in leaves]
    target_norm = torch.sqrt(sum((t ** 2).sum() for t in target))
    features = leaves[next(iter(leaves))].shape[-1]  # first layer's in_features
    generator = torch.Generator().manual_seed(seed)
    start_x = torch.randn(num_images, features, generator=generator)
    start_soft = None
    if labels is None and num_images == 1:
        labels = torch.tensor([infer_label(gradient)])
    elif labels is None:
        start_soft = torch.randn(num_images, target[-1].shape[0], generator=generator)
    elif not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        raise TypeError(f"`labels` must be an int64 tensor or None, got {labels!r}")
    elif labels.shape != (num_images,):
        raise ValueError(f"`labels` must have shape ({num_images},), got {tuple(labels.shape)}")

    def distance(metric: str, x: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        logits = functional_call(model, leaves, (x,))  # (num_images, classes)
        if soft is None:
            loss = F.cross_entropy(logits, labels)
        else:
            loss = -(soft.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1).mean()
        dummy = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        if metric == "l2":
            return sum(((d - t) ** 2).sum() for d, t in zip(dummy, target))
        dot = sum((d * t).sum() for d, t in zip(dummy, target))
        norm = torch.sqrt(sum((d ** 2).sum() for d in dummy)) * target_norm
        return 1 - dot / norm.clamp(min=1e-30)

    def run(metrics: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        x = start_x.clone().requires_grad_(True)
        soft = None if start_soft is None else start_soft.clone().requires_grad_(True)
        variables = [x] if soft is None else [x, soft]
        for metric in metrics:
            optimiser = torch.optim.LBFGS(variables, lr=1.0, max_iter=iterations,
                                          history_size=100, tolerance_grad=1e-12,
                                          tolerance_change=1e-15, line_search_fn="strong_wolfe")

            def closure(metric: str = metric) -> torch.Tensor:
                value = distance(metric, x, soft)
                grads = torch.autograd.grad(value, variables)  # w.r.t. the dummy data only
                for v, g in zip(variables, grads):
                    v.grad = g
                return value.detach()

            optimiser.step(closure)
        return x, soft, float(distance("cosine", x, soft).detach())

    with torch_threads(1):
        # Two attempts from the same start; the attacker keeps the one whose gradient points
        # closer to the observed one (it can compute that; it never sees the true image).
        x, soft, final = min((run(("l2", "cosine")), run(("cosine",))), key=lambda r: r[2])
    used = labels if soft is None else soft.detach().argmax(dim=1)
    return x.detach(), used.detach().clone(), final


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (capped at 100 dB)."""
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-10))


@dataclass(frozen=True, repr=False)
class InversionResult:
    """One attack: reconstructions, the truth, and how close they came.

    ``reconstruction`` and ``truth`` are model inputs (standardised), shapes
    ``(attacked, features)`` and ``(truth, features)``; ``*_pixels`` are the same as 8x8
    images in [0, 1]. ``matched[i]`` is the true image paired with reconstruction ``i``,
    ``mse[i]``/``psnr[i]`` their error on the [0, 1] pixel scale.
    """

    reconstruction: torch.Tensor
    truth: torch.Tensor
    reconstruction_pixels: torch.Tensor
    truth_pixels: torch.Tensor
    labels_used: tuple[int, ...]
    labels_true: tuple[int, ...]
    matched: tuple[int, ...]
    mse: tuple[float, ...]
    psnr: tuple[float, ...]
    gradient_distance: float
    seconds: float
    defence: str
    threshold_db: float = RECOVERED_PSNR_DB

    @property
    def recovered(self) -> tuple[bool, ...]:
        """Per reconstruction: PSNR at least :attr:`threshold_db`."""
        return tuple(p >= self.threshold_db for p in self.psnr)

    @property
    def num_recovered(self) -> int:
        return sum(self.recovered)

    def __repr__(self) -> str:
        scores = ", ".join(f"{p:.1f}" for p in self.psnr)
        paired = [self.labels_true[j] for j in self.matched]  # true labels, same order
        return (f"InversionResult({self.defence}: recovered {self.num_recovered}/"
                f"{len(self.psnr)}, psnr_db=[{scores}], labels {list(self.labels_used)} "
                f"vs true {paired}, {self.seconds:.2f} s)")


def _pixels(x: torch.Tensor, data: Dataset) -> torch.Tensor:
    return ((x * data.std + data.mean) / PIXEL_MAX).clamp(0, 1).reshape(-1, 8, 8)


def attack_digits(data: Dataset, *, index: int = 0, model: nn.Module | None = None,
                  batch_size: int = 1, num_clients: int = 1, noise_sigma: float = 0.0,
                  clip_norm: float | None = None, prune_fraction: float = 0.0,
                  attack_batch: int | None = None, known_labels: bool = False,
                  iterations: int = DEFAULT_ITERATIONS, seed: int = 0) -> InversionResult:
    """Simulate one client's gradient on digits, apply the defences, attack, and score.

    Parameters
    ----------
    data : Dataset
        The digits (:func:`course_lib.fl.data.load_digits`).
    index : int
        Which images: the target client holds training images ``index * batch_size`` to
        ``(index + 1) * batch_size - 1``; other clients draw theirs from the second half.
    model : nn.Module or None
        The global model the gradients are taken at; defaults to the untrained
        ``make_mlp(seed=0)`` (the first round, the attacker's best case).
    batch_size : int
        Images per client.
    num_clients : int
        ``> 1`` simulates secure aggregation: the server sees only the sum of this many
        clients' (defended) gradients.
    noise_sigma, clip_norm, prune_fraction : float
        The client-side defences, applied in the order clip, noise, prune (see module doc).
    attack_batch : int or None
        How many images the attacker reconstructs; defaults to ``batch_size`` (one client's
        worth). ``num_clients * batch_size`` attacks the whole sum as one large batch.
    known_labels : bool
        Hand the attacker the true labels (a stronger attacker than iDLG / DLG).
    iterations, seed : int
        L-BFGS iterations; seed of the noise and of the attacker's starting point.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"`data` must be a course_lib.fl.data.Dataset, got {type(data).__name__}")
    require_int("index", index, minimum=0)
    require_int("batch_size", batch_size, minimum=1, maximum=256)
    require_int("num_clients", num_clients, minimum=1, maximum=256)
    attack_batch = batch_size if attack_batch is None else attack_batch
    require_int("attack_batch", attack_batch, minimum=1, maximum=num_clients * batch_size)
    n = len(data.y_train)
    if (index + 1) * batch_size > n // 2:
        raise ValueError(f"`index` must leave room for the target's images in the first half "
                         f"of the training set, got {index} with batch_size={batch_size}")
    start = time.perf_counter()
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes) \
        if model is None else model
    others = np.random.default_rng([seed, index]).choice(
        np.arange(n // 2, n), size=(num_clients - 1) * batch_size, replace=False)
    rows = np.concatenate([np.arange(index * batch_size, (index + 1) * batch_size), others])
    X, y = data.X_train[rows], data.y_train[rows]  # (clients * batch, features), (clients * batch,)
    generator = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        observed = None
        for k in range(num_clients):
            part = slice(k * batch_size, (k + 1) * batch_size)
            g = defend(client_gradient(model, X[part], y[part]), clip_norm=clip_norm,
                       noise_sigma=noise_sigma, prune_fraction=prune_fraction,
                       generator=generator)
            observed = g if observed is None else {key: observed[key] + g[key] for key in g}
    observed = {key: g / num_clients for key, g in observed.items()}  # the server knows K
    x, labels, distance = invert_gradient(
        model, observed, num_images=attack_batch, labels=y[:attack_batch] if known_labels
        else None, iterations=iterations, seed=seed)
    rec_px, true_px = _pixels(x, data), _pixels(X, data)  # (attacked, 8, 8), (truth, 8, 8)
    errors = ((rec_px.flatten(1)[:, None, :] - true_px.flatten(1)[None]) ** 2).mean(-1)
    rec_idx, true_idx = linear_sum_assignment(errors.numpy())  # best one-to-one pairing
    order = np.argsort(rec_idx)
    matched = tuple(int(true_idx[i]) for i in order)
    defence = _describe(batch_size, num_clients, noise_sigma, clip_norm, prune_fraction)
    return InversionResult(
        reconstruction=x, truth=X, reconstruction_pixels=rec_px, truth_pixels=true_px,
        labels_used=tuple(int(v) for v in labels), labels_true=tuple(int(v) for v in y),
        matched=matched, mse=tuple(float(errors[i, j]) for i, j in enumerate(matched)),
        psnr=tuple(psnr(rec_px[i], true_px[j]) for i, j in enumerate(matched)),
        gradient_distance=distance, seconds=time.perf_counter() - start, defence=defence)


def _describe(batch_size: int, num_clients: int, noise_sigma: float, clip_norm: float | None,
              prune_fraction: float) -> str:
    parts = [f"batch {batch_size}"] if batch_size > 1 else []
    if clip_norm is not None:
        parts.append(f"clip {clip_norm:g}")
    if noise_sigma:
        parts.append(f"noise {noise_sigma:g}")
    if prune_fraction:
        parts.append(f"prune {prune_fraction:.0%}")
    if num_clients > 1:
        parts.append(f"sum of {num_clients} clients")
    return ", ".join(parts) or "no defence"


def attack_many(data: Dataset, *, trials: int = 10, **options) -> list[InversionResult]:
    """Run :func:`attack_digits` for ``index = 0 .. trials - 1`` with the same options."""
    require_int("trials", trials, minimum=1, maximum=1000)
    if "index" in options:
        raise TypeError("`index` is set by attack_many; pass `trials` instead")
    return [attack_digits(data, index=i, **options) for i in range(trials)]
