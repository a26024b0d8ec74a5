"""Server-side aggregation: FedAvg's weighted mean of the clients' weights.

McMahan et al. (2017) update the global model to

    w = sum_k (n_k / n) * w_k,        n = sum_k n_k,

where client ``k`` trained on ``n_k`` samples and returned weights ``w_k``. :func:`fedavg` is
exactly that, applied entry by entry to PyTorch ``state_dict``s, and nothing else: it keeps no
state, reads no global model and modifies none of its inputs. (The source text's version adds
each model to itself, ``w + w``, which doubles the weights instead of averaging clients.)

:func:`fedavg_stacked` is the same mean as the round (:mod:`course_lib.fl.round`) computes it,
on the clients' *updates* ``d_k = w_k - w`` stacked into one tensor per name:
``w + sum_k (n_k / n) d_k`` equals ``sum_k (n_k / n) w_k``, and summing the small updates
rather than the weights keeps float32 rounding about 100x smaller at 1,000 clients.

Integer tensors (for example BatchNorm's ``num_batches_tracked`` counter) are averaged the same
way in float64 and rounded to the nearest integer, so a counter stays a count; bool tensors
become the weighted majority. Floating tensors are averaged in float64 and returned in their
own dtype.

Examples
--------
>>> import torch
>>> from course_lib.fl.aggregate import fedavg
>>> a = {"w": torch.tensor([1.0, 2.0])}
>>> b = {"w": torch.tensor([3.0, 6.0])}
>>> fedavg([a, b], [1, 3])  # (1*a + 3*b) / 4
{'w': tensor([2.5000, 5.0000])}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["fedavg", "fedavg_stacked"]

State = Mapping[str, torch.Tensor]


def fedavg(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Return the weighted mean ``sum_k weights[k] * states[k] / sum(weights)``, per tensor.

    Parameters
    ----------
    states : sequence of state_dicts
        One per client, all with the same keys, and per key the same shape and dtype.
    weights : sequence of float
        One non-negative weight per client, usually its number of training samples ``n_k``;
        only their ratios matter, and their sum must be positive.

    Returns
    -------
    dict of str to torch.Tensor
        New tensors, keys in the order of ``states[0]``.

    Raises
    ------
    ValueError
        Naming the offending client index: a different set of keys, shape or dtype than
        client 0, a NaN or infinite value, or a negative or non-finite weight; also when there
        are no states, the lengths differ, or the weights sum to zero.
    """
    total, coefficients = _check_weights(states, weights)
    _check_states(states)
    averaged = {}
    for key, reference in states[0].items():
        stacked = torch.stack([state[key] for state in states]).to(torch.float64)  # (k, *shape)
        if reference.is_floating_point():
            bad = ~torch.isfinite(stacked.reshape(len(states), -1)).all(dim=1)  # (k,)
            if bool(bad.any()):
                client = int(bad.nonzero()[0, 0])
                raise ValueError(f"client {client}: `{key}` contains NaN or infinite values")
        mean = torch.tensordot(coefficients, stacked, dims=1) / total  # (*shape)
        if not reference.is_floating_point():
            mean = mean.round()  # integer counters stay integers; bool -> weighted majority
        averaged[key] = mean.to(reference.dtype)
    return averaged


def fedavg_stacked(updates: State, weights: torch.Tensor | Sequence[float]
                   ) -> dict[str, torch.Tensor]:
    """Return ``sum_k weights[k] * updates[name][k] / sum(weights)`` for every ``name``.

    Parameters
    ----------
    updates : dict of str to torch.Tensor
        Per name, a ``(clients, *shape)`` tensor whose row ``k`` is client ``k``'s update.
    weights : sequence of float, shape (clients,)
        Non-negative, with a positive sum (rows of weight 0 do not count).

    Floating tensors are summed in their own dtype (one matrix-vector product per name, the
    batched engine's fast path); other dtypes in float64 and rounded, as :func:`fedavg` does.
    """
    w = np.asarray(weights, dtype=np.float64)  # (clients,)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"`weights` must be finite, >= 0 and sum to > 0, got {w.tolist()}")
    share = torch.from_numpy(w / w.sum())  # (clients,) n_k / n
    mean = {}
    for name, u in updates.items():
        if u.shape[0] != len(w):
            raise ValueError(f"`updates[{name!r}]` has {u.shape[0]} rows, `weights` {len(w)}")
        flat = u.reshape(len(w), -1)  # (clients, entries)
        if u.is_floating_point():
            mean[name] = (share.to(u.dtype) @ flat).reshape(u.shape[1:])
        else:
            mean[name] = (share @ flat.double()).round().to(u.dtype).reshape(u.shape[1:])
    return mean


def _check_weights(states: Sequence[State], weights: Sequence[float]) -> tuple[float, torch.Tensor]:
    if isinstance(states, (Mapping, str, bytes)) or not isinstance(states, Sequence):
        raise TypeError(f"`states` must be a list of state_dicts, got {type(states).__name__}")
    if len(states) == 0:
        raise ValueError("`states` must contain at least one client's state_dict, got 0")
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"`weights` must be a list of numbers, got {type(weights).__name__}")
    if len(weights) != len(states):
        raise ValueError(f"`weights` must have one entry per state ({len(states)}), "
                         f"got {len(weights)}")
    values = []
    for client, weight in enumerate(weights):
        if isinstance(weight, (bool, str, bytes)):
            raise TypeError(f"client {client}: weight must be a number, "
                            f"got {type(weight).__name__}")
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise TypeError(f"client {client}: weight must be a number, "
                            f"got {type(weight).__name__}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"client {client}: weight must be finite and >= 0, got {weight!r}")
        values.append(value)
    total = math.fsum(values)
    if total <= 0:
        raise ValueError(f"`weights` must sum to a positive number, got {total} "
                         f"(every client has weight 0)")
    return total, torch.tensor(values, dtype=torch.float64)


def _check_states(states: Sequence[State]) -> None:
    reference = states[0]
    for client, state in enumerate(states):
        if not isinstance(state, Mapping):
            raise TypeError(f"client {client}: state must be a state_dict (a mapping of "
                            f"names to tensors), got {type(state).__name__}")
        if set(state) != set(reference):
            missing = sorted(set(reference) - set(state))
            extra = sorted(set(state) - set(reference))
            raise ValueError(f"client {client}: keys differ from client 0's "
                             f"(missing {missing}, unexpected {extra})")
        for key, expected in reference.items():
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"client {client}: `{key}` must be a tensor, "
                                f"got {type(tensor).__name__}")
            if tensor.shape != expected.shape:
                raise ValueError(f"client {client}: `{key}` has shape {tuple(tensor.shape)}, "
                                 f"client 0's has {tuple(expected.shape)}")
            if tensor.dtype != expected.dtype:
                raise ValueError(f"client {client}: `{key}` has dtype {tensor.dtype}, "
                                 f"client 0's has {expected.dtype}")
