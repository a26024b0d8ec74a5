"""DP-FedAvg: client-level differential privacy for federated averaging.

McMahan et al. (2018, "Learning differentially private recurrent language models") make
FedAvg differentially private *per client* with two changes at the server:

1. **Clip** every client's update ``delta_k = w_k - w`` (all tensors of the ``state_dict``
   together, one L2 norm) to norm at most ``S``: ``delta_k * min(1, S / ||delta_k||)``.
2. Average the clipped updates with **equal weights and a fixed denominator** ``m`` (the
   expected number of clients per round), then **add Gaussian noise** with standard deviation
   ``sigma = z * S / m`` to every entry, where ``z`` is the noise multiplier.

Adding or removing one client changes the sum of clipped updates by at most ``S``, so the
mean moves by at most ``S / m``: that is the sensitivity the noise is scaled to. (FedAvg's
``n_k``-weighted mean must *not* be used here: a client with more data would then move the
model further than ``S / m``.) Each round is a sampled Gaussian mechanism with sampling rate
``q = fraction``; :func:`epsilon` composes ``rounds`` of them with Opacus's Renyi-DP
accountant (a maintained accountant, not one written here) and converts to ``(epsilon,
delta)``. The guarantee is for a *client* (all of its data), not for a single example.

Intended call sequence for one round of ``run_fedavg(..., dp=DPConfig(...))`` (a sketch of
the wiring; ``global_state`` is the server's model, ``states`` the chosen clients' weights)::

    m = max(1, round(fraction * num_clients))          # fixed denominator
    generator = torch.Generator().manual_seed(seed)     # once per run, before round 1
    updates = [state_delta(s, global_state) for s in states]
    noisy_mean = private_mean(updates, max_norm=dp.max_norm,
                              noise_multiplier=dp.noise_multiplier,
                              num_clients=m, generator=generator)
    global_state = apply_update(global_state, noisy_mean)
    ...
    history.epsilon = dp.epsilon(sample_rate=fraction, steps=rounds)

The batched engine holds all clients' weights stacked (leading dimension = clients);
:func:`clip_stacked` clips such stacks row by row without a Python loop.

Caveat: Opacus's accountant assumes each client joins a round independently with
probability ``q`` (Poisson sampling); choosing exactly ``round(q * K)`` clients, as the
simulation does, is the usual approximation of it.

Examples
--------
>>> import torch
>>> from course_lib.dp import clip_update, update_norm, DPConfig
>>> update = {"w": torch.tensor([3.0, 4.0])}          # norm 5
>>> clip_update(update, max_norm=1.0)
{'w': tensor([0.6000, 0.8000])}
>>> dp = DPConfig(noise_multiplier=1.0, max_norm=1.0, delta=1e-5)
>>> round(dp.epsilon(sample_rate=0.1, steps=100), 2)
7.9
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from course_lib._validation import require_int, require_probability
from course_lib.dp._checks import State, _check_state, _positive
from course_lib.dp.accounting import epsilon

__all__ = ["DPConfig", "update_norm", "clip_update", "clip_stacked", "add_gaussian_noise",
           "private_mean", "state_delta", "apply_update"]


@dataclass(frozen=True)
class DPConfig:
    """The three numbers that define DP-FedAvg.

    Attributes
    ----------
    noise_multiplier : float
        ``z >= 0``: noise std divided by the sensitivity. ``0`` clips without noise (no privacy).
    max_norm : float
        ``S > 0``: every client update is clipped to this L2 norm.
    delta : float
        Target ``delta`` in (0, 1) of the ``(epsilon, delta)`` guarantee; choose it well below
        ``1 / num_clients``.
    """

    noise_multiplier: float
    max_norm: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        _positive("noise_multiplier", self.noise_multiplier, allow_zero=True)
        _positive("max_norm", self.max_norm)
        require_probability("delta", self.delta, include_one=False)

    def epsilon(self, *, sample_rate: float, steps: int) -> float:
        """Epsilon after ``steps`` rounds at client sampling rate ``sample_rate``."""
        return epsilon(noise_multiplier=self.noise_multiplier, sample_rate=sample_rate,
                       steps=steps, delta=self.delta)


def update_norm(update: State) -> float:
    """The L2 norm of all tensors of ``update`` together (as if concatenated into one vector)."""
    update = _check_state("update", update)
    return math.sqrt(math.fsum(float(t.double().pow(2).sum()) for t in update.values()))


def clip_update(update: State, max_norm: float) -> dict[str, torch.Tensor]:
    """Return ``update * min(1, max_norm / ||update||)``: same direction, norm at most ``max_norm``.

    The norm is one L2 norm over the whole ``state_dict`` delta (all tensors together), not a
    norm per tensor. Updates already within the bound are returned unchanged (as copies).
    """
    max_norm = _positive("max_norm", max_norm)
    norm = update_norm(update)
    scale = 1.0 if norm <= max_norm else max_norm / norm
    return {k: (t.double() * scale).to(t.dtype) for k, t in update.items()}


def clip_stacked(updates: State, max_norm: float) -> dict[str, torch.Tensor]:
    """Clip many updates at once: every tensor has a leading client dimension.

    Row ``k`` of every tensor belongs to client ``k``; each client's update is clipped to
    ``max_norm`` over all its tensors together, exactly as :func:`clip_update` would.
    """
    max_norm = _positive("max_norm", max_norm)
    updates = _check_state("updates", updates)
    clients = {t.shape[0] if t.dim() else None for t in updates.values()}
    if len(clients) != 1 or None in clients:
        raise ValueError(f"`updates` tensors must share a leading client dimension, "
                         f"got leading sizes {sorted(map(str, clients))}")
    squares = sum(t.double().reshape(t.shape[0], -1).pow(2).sum(dim=1)
                  for t in updates.values())  # (clients,)
    scale = (max_norm / squares.sqrt()).clamp(max=1.0)  # (clients,); norm 0 -> inf -> 1
    return {k: (t.double() * scale.reshape(-1, *[1] * (t.dim() - 1))).to(t.dtype)
            for k, t in updates.items()}


def add_gaussian_noise(aggregate: State, *, noise_multiplier: float, max_norm: float,
                       num_clients: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Add ``N(0, (noise_multiplier * max_norm / num_clients)**2)`` to every entry.

    ``aggregate`` must be the *mean* of ``num_clients`` updates clipped to ``max_norm``, taken
    with equal weights and this fixed denominator, so that one client changes it by at most
    ``max_norm / num_clients``. The noise comes from ``generator`` only (reproducible).
    """
    aggregate = _check_state("aggregate", aggregate)
    z = _positive("noise_multiplier", noise_multiplier, allow_zero=True)
    std = z * _positive("max_norm", max_norm) / require_int("num_clients", num_clients, minimum=1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator, got {type(generator).__name__}")
    return {k: t + std * torch.randn(t.shape, generator=generator, dtype=t.dtype)
            for k, t in aggregate.items()}


def private_mean(updates: Sequence[State], *, max_norm: float, noise_multiplier: float,
                 num_clients: int | None = None,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """DP-FedAvg's server step: clip each update, sum, divide by ``num_clients``, add noise.

    ``num_clients`` is the fixed denominator (the *expected* number of participants per round);
    it defaults to ``len(updates)``.
    """
    if isinstance(updates, Mapping) or not isinstance(updates, Sequence) or not updates:
        raise TypeError("`updates` must be a non-empty list of state_dicts")
    m = len(updates) if num_clients is None else require_int("num_clients", num_clients,
                                                              minimum=1)
    clipped = [clip_update(u, max_norm) for u in updates]
    mean = {k: torch.stack([c[k].double() for c in clipped]).sum(dim=0).div(m).to(t.dtype)
            for k, t in clipped[0].items()}
    return add_gaussian_noise(mean, noise_multiplier=noise_multiplier, max_norm=max_norm,
                              num_clients=m, generator=generator)


def state_delta(new: State, old: State) -> dict[str, torch.Tensor]:
    """``new - old`` for every floating tensor: a client's update relative to the global model."""
    new, old = _check_state("new", new), _check_state("old", old)
    if set(new) != set(old):
        raise ValueError(f"`new` and `old` must have the same keys, got {sorted(new)} "
                         f"and {sorted(old)}")
    return {k: new[k] - old[k] for k in old}


def apply_update(state: State, update: State) -> dict[str, torch.Tensor]:
    """``state + update``, key by key (the server applying the noisy mean update)."""
    state, update = _check_state("state", state), _check_state("update", update)
    if set(state) != set(update):
        raise ValueError(f"`state` and `update` must have the same keys, got {sorted(state)} "
                         f"and {sorted(update)}")
    return {k: state[k] + update[k].to(state[k].dtype) for k in state}
