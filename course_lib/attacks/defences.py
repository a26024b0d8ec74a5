"""What a client can do to its gradient before sending it: clip, add noise, prune.

These are the defences that :mod:`course_lib.attacks.gradient_inversion` tests against the
attack. They are pure functions of a gradient (a ``dict`` of parameter name to tensor) and
draw randomness only from the ``generator`` passed in.

- **Clipping** (:func:`course_lib.dp.clip_update`) shortens the whole gradient to L2
  norm at most ``clip_norm``. Alone it only rescales, which an attacker matching directions
  ignores; it exists to bound how much one example can move the model, so that noise of a
  known size hides it.
- **Gaussian noise** of standard deviation ``sigma`` on every entry. After clipping to ``S``,
  ``sigma = z * S`` is DP-SGD's noise for noise multiplier ``z`` on a single example.
- **Pruning** sets the ``fraction`` of entries with the smallest magnitude to 0, tensor by
  tensor (Zhu et al. 2019 studied it as a defence; it also compresses the update).

Examples
--------
>>> import torch
>>> from course_lib.attacks.defences import prune_gradient
>>> prune_gradient({"w": torch.tensor([0.1, -3.0, 0.5, 2.0])}, 0.5)
{'w': tensor([ 0., -3.,  0.,  2.])}
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from course_lib.dp import clip_update

__all__ = ["prune_gradient", "add_noise", "defend"]

Gradient = dict[str, torch.Tensor]


def _number(name: str, value: object, *, below_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (0 <= value < 1 if below_one else 0 <= value < float("inf")):
        interval = "[0, 1)" if below_one else "[0, inf)"
        raise ValueError(f"`{name}` must be a number in {interval}, got {value!r}")
    return float(value)


def prune_gradient(gradient: Mapping[str, torch.Tensor], fraction: float) -> Gradient:
    """Zero the ``fraction`` of entries with the smallest magnitude, tensor by tensor.

    Ties at the threshold are pruned too, so at least ``int(fraction * numel)`` entries of
    each tensor become 0.
    """
    fraction = _number("fraction", fraction, below_one=True)
    pruned = {}
    for key, g in gradient.items():
        k = int(fraction * g.numel())
        if k == 0:
            pruned[key] = g.clone()
            continue
        threshold = g.abs().flatten().kthvalue(k).values
        pruned[key] = torch.where(g.abs() > threshold, g, torch.zeros_like(g))
    return pruned


def add_noise(gradient: Mapping[str, torch.Tensor], *, sigma: float,
              generator: torch.Generator) -> Gradient:
    """Add independent ``N(0, sigma**2)`` noise to every entry (reproducible via ``generator``)."""
    sigma = _number("sigma", sigma)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator, got {type(generator).__name__}")
    return {k: g + sigma * torch.randn(g.shape, generator=generator, dtype=g.dtype)
            for k, g in gradient.items()}


def defend(gradient: Mapping[str, torch.Tensor], *, clip_norm: float | None = None,
           noise_sigma: float = 0.0, prune_fraction: float = 0.0,
           generator: torch.Generator) -> Gradient:
    """Apply the chosen defences in the order clip, noise, prune (each optional)."""
    out = dict(gradient)
    if clip_norm is not None:
        if not _number("clip_norm", clip_norm):
            raise ValueError(f"`clip_norm` must be a number in (0, inf) or None, got {clip_norm!r}")
        out = clip_update(out, clip_norm)
    if _number("noise_sigma", noise_sigma):
        out = add_noise(out, sigma=noise_sigma, generator=generator)
    if _number("prune_fraction", prune_fraction, below_one=True):
        out = prune_gradient(out, prune_fraction)
    return out
