"""DP-SGD (Abadi et al. 2016), written once: per-sample gradients, clipping, noise, sampling.

DP-FedAvg (:mod:`~course_lib.dp.mechanisms`) protects a *client*; DP-SGD protects a single
*training record*. One step on ``n`` records, with clipping norm ``C``, noise multiplier ``z``
and sampling rate ``q``:

1. **Sample** a batch: every record joins independently with probability ``q`` (Poisson
   sampling, what the accountant assumes), so the batch size varies around ``q n``.
2. **Per-sample gradients** ``g_i`` of each record's own loss, all at once with
   ``torch.func`` (``vmap`` over ``grad``): shape ``(batch, *parameter shape)``.
3. **Clip** each: ``g_i * min(1, C / ||g_i||)``, one L2 norm over all parameters together.
   Adding or removing one record now moves the sum by at most ``C``: the sensitivity.
4. **Noise**: ``sum_i clip(g_i) + N(0, (z C)^2 I)``, drawn from an explicit
   ``torch.Generator`` (never the global one).
5. **Step** along the noisy sum divided by the *expected* batch size ``q n`` (a fixed
   denominator: dividing by the real batch size would reveal it). SGD, or Adam, which only
   post-processes the noisy gradient and so keeps the same guarantee.

``round(epochs / q)`` such steps are a composition of sampled Gaussian mechanisms:
:func:`course_lib.dp.epsilon` gives their ``(epsilon, delta)``.

Examples
--------
>>> import torch
>>> from course_lib.dp import DPConfig
>>> from course_lib.dp.dpsgd import train_dp_sgd
>>> X, y = torch.randn(40, 5, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 2
>>> model = torch.nn.Linear(5, 2)
>>> trained, steps, q = train_dp_sgd(model, X, y, dp=DPConfig(1.0, 1.0), epochs=2,
...                                  batch_size=10, lr=0.1, seed=0)
>>> steps, q
(8, 0.25)
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from course_lib._threads import torch_threads
from course_lib._validation import require_choice, require_int, require_probability, require_real
from course_lib.dp.mechanisms import DPConfig

__all__ = ["poisson_sample", "per_sample_gradients", "clip_factors", "clip_per_sample",
           "noisy_clipped_sum", "train_dp_sgd"]

Grads = dict[str, torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def poisson_sample(n: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of a Poisson batch: each of ``n`` records joins with probability ``sample_rate``."""
    require_int("n", n, minimum=0)
    q = require_probability("sample_rate", sample_rate)
    _check_generator(generator)
    return (torch.rand(n, generator=generator) < q).nonzero().flatten()  # (batch,)


def per_sample_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                         loss: Loss = F.cross_entropy,
                         params: dict[str, torch.Tensor] | None = None) -> Grads:
    """The gradient of every sample's own loss, ``{name: (batch, *shape)}``.

    Sample ``i``'s loss is ``loss(model(inputs[i:i+1]), targets[i:i+1])``; the gradient is
    taken with respect to ``params`` (default: every parameter of ``model`` that requires
    grad, detached). ``vmap`` runs all samples in one batched pass; the result is what
    autograd gives for each sample alone (tested). ``model`` is not changed.
    """
    if len(inputs) != len(targets):
        raise ValueError(f"`inputs` and `targets` must have the same length, got {len(inputs)} "
                         f"and {len(targets)}")
    if params is None:
        params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    b = len(inputs)
    if b == 0:  # vmap needs at least one sample; no sample, no gradient
        return {k: v.new_zeros((0, *v.shape)) for k, v in params.items()}

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor):
        return loss(functional_call(model, p, (x[None],)), t[None])

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, inputs, targets)


def clip_factors(grads: Grads, max_norm: float) -> torch.Tensor:
    """``min(1, max_norm / ||g_i||)`` for every sample, shape ``(batch,)``."""
    max_norm = require_real("max_norm", max_norm, minimum=0.0, allow_minimum=False)
    b = len(next(iter(grads.values())))
    if b == 0:  # an empty batch: nothing to clip
        return torch.ones(0)
    norms = torch.sqrt(sum(g.reshape(b, -1).pow(2).sum(1) for g in grads.values()))  # (b,)
    return (max_norm / norms.clamp(min=1e-12)).clamp(max=1.0)  # (b,)


def clip_per_sample(grads: Grads, max_norm: float) -> Grads:
    """Every sample's gradient clipped to L2 norm ``max_norm`` (all parameters together)."""
    scale = clip_factors(grads, max_norm)  # (b,)
    return {k: g * scale.reshape(-1, *[1] * (g.dim() - 1)) for k, g in grads.items()}


def noisy_clipped_sum(grads: Grads, *, max_norm: float, noise_multiplier: float,
                      generator: torch.Generator) -> Grads:
    """``sum_i clip(g_i) + N(0, (noise_multiplier * max_norm)^2 I)``, parameter by parameter.

    One ``randn`` per parameter tensor, in order, from ``generator`` only (also when
    ``noise_multiplier`` is 0, so that the random stream does not depend on it).
    """
    z = require_real("noise_multiplier", noise_multiplier, minimum=0.0)
    _check_generator(generator)
    scale = clip_factors(grads, max_norm)  # (b,)
    std = z * max_norm
    summed = {k: torch.einsum("b,b...->...", scale, g) for k, g in grads.items()}  # (*shape)
    return {k: v + std * torch.randn(v.shape, generator=generator, dtype=v.dtype)
            for k, v in summed.items()}


def train_dp_sgd(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                 dp: DPConfig, epochs: int, batch_size: int, lr: float,
                 loss: Loss = F.cross_entropy, optimiser: str = "sgd", lr_decay: bool = False,
                 seed: int = 0) -> tuple[nn.Module, int, float]:
    """DP-SGD on ``(inputs, targets)``: returns ``(trained copy, steps, sample_rate)``.

    Parameters
    ----------
    model : nn.Module
        Not modified; a deep copy is trained. Only parameters that require grad change
        (so a LoRA-wrapped model trains its adapters only).
    inputs, targets : torch.Tensor
        ``n`` samples each (leading dimension); sample ``i``'s loss is
        ``loss(model(inputs[i:i+1]), targets[i:i+1])``.
    dp : DPConfig
        ``max_norm`` is the per-sample clipping norm ``C``, ``noise_multiplier`` is ``z``.
    epochs, batch_size : int
        ``q = batch_size / n``; ``round(epochs / q)`` steps, each on a Poisson batch.
    lr : float
        Step size; with ``lr_decay`` it falls linearly to 0 over the run.
    optimiser : {"sgd", "adam"}
        ``"sgd"``: ``theta - lr * noisy / (q n)``. ``"adam"``: ``torch.optim.Adam`` on
        ``noisy / (q n)``.
    seed : int
        Seeds the one ``torch.Generator`` that draws the batches and the noise.
    """
    if not isinstance(dp, DPConfig):
        raise TypeError(f"`dp` must be a course_lib.dp.DPConfig, got {type(dp).__name__}")
    require_int("epochs", epochs, minimum=1, maximum=100_000)
    n = len(inputs)
    if len(targets) != n or n == 0:
        raise ValueError(f"`inputs` and `targets` must hold the same number (>= 1) of samples, "
                         f"got {n} and {len(targets)}")
    require_int("batch_size", batch_size, minimum=1, maximum=n)
    lr = require_real("lr", lr, minimum=0.0, allow_minimum=False)
    require_choice("optimiser", optimiser, ("sgd", "adam"))
    require_int("seed", seed, minimum=0)
    q = batch_size / n
    steps = max(1, round(epochs / q))
    local = copy.deepcopy(model)
    params = {k: p for k, p in local.named_parameters() if p.requires_grad}
    adam = torch.optim.Adam(params.values(), lr=lr) if optimiser == "adam" else None
    generator = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        for step in range(steps):
            rate = lr * (1 - step / steps) if lr_decay else lr
            picked = poisson_sample(n, q, generator)  # (batch,)
            grads = per_sample_gradients(local, inputs[picked], targets[picked], loss=loss,
                                         params={k: p.detach() for k, p in params.items()})
            noisy = noisy_clipped_sum(grads, max_norm=dp.max_norm,
                                      noise_multiplier=dp.noise_multiplier, generator=generator)
            if adam is None:
                with torch.no_grad():
                    for k, p in params.items():
                        p.copy_(p - rate * noisy[k] / (q * n))
            else:
                for k, p in params.items():
                    p.grad = noisy[k] / (q * n)
                adam.param_groups[0]["lr"] = rate
                adam.step()
    local.zero_grad(set_to_none=True)
    return local, steps, q


def _check_generator(generator: object) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator, got {type(generator).__name__}")
