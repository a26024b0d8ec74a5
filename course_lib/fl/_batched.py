"""The batched engine: every selected client trains at once, on stacked copies of the weights.

Client ``k``'s copy of layer ``l`` lives in slice ``k`` of a stacked tensor: weights
``(clients, out, in)`` and biases ``(clients, out)``. One SGD step for all clients is one
batched matrix product per layer (``torch.baddbmm``) and one backward pass. This is exact, not
an approximation: the summed loss ``sum_k L_k`` has gradient ``dL_k/dW_k`` in slice ``k``,
because no client's loss depends on another client's slice.

Unequal and empty clients: at step ``s`` client ``k`` trains on the ``s``-th batch of its own
shuffled order, padded to a common width with a mask. Its loss is the mean over its real
samples only, so a short last batch is averaged exactly as in :func:`~course_lib.fl.client.
train_local`, and a client that has run out of batches (or has no data) gets a zero gradient,
which with plain SGD leaves its weights unchanged. The sample order of each client comes from
:func:`~course_lib.fl._order.sample_orders`, the same function the sequential engine uses, so
both engines visit the same batches and agree to float rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.fl._order import sample_orders
from course_lib.fl.models import MLP

__all__ = ["train_clients_batched"]


def _padded(indices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged index arrays into ``(clients, max_size)`` with -1 padding, and the sizes."""
    sizes = np.array([len(ix) for ix in indices], dtype=np.int64)  # (clients,)
    table = np.full((len(indices), int(sizes.max(initial=0))), -1, dtype=np.int64)
    for k, ix in enumerate(indices):
        table[k, :len(ix)] = ix
    return table, sizes


def train_clients_batched(model: MLP, X: torch.Tensor, y: torch.Tensor,
                          indices: list[np.ndarray], seeds: np.ndarray, *, epochs: int,
                          batch_size: int | None, lr: float
                          ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], np.ndarray]:
    """Train one copy of ``model`` per client on ``X[indices[k]]``; return the stacked weights.

    Parameters
    ----------
    model : MLP
        The global model (read, not modified).
    X, y : torch.Tensor
        All training samples ``(samples, features)`` and labels ``(samples,)``.
    indices : list of int arrays
        Client ``k``'s sample indices into ``X``; may be empty.
    seeds : int array, shape (clients,)
        Client ``k`` shuffles as ``train_local(..., seed=seeds[k])`` would.
    epochs, batch_size, lr
        As in :func:`~course_lib.fl.client.train_local` (``batch_size=None``: full batch).

    Returns
    -------
    layers : list of (weight, bias)
        Per linear layer, weight ``(clients, out, in)`` and bias ``(clients, out)``.
    sizes : int array, shape (clients,)
        Samples per client (FedAvg's ``n_k``).
    """
    table, sizes = _padded(indices)  # (clients, max_n) global sample indices, -1 = none
    clients, max_n = table.shape
    params = []
    for layer in model.linear_layers():
        w = layer.weight.detach().unsqueeze(0).repeat(clients, 1, 1)  # (clients, out, in)
        b = layer.bias.detach().unsqueeze(0).repeat(clients, 1)  # (clients, out)
        params += [w.requires_grad_(True), b.requires_grad_(True)]
    if max_n == 0:
        return _pairs(params), sizes
    width = max_n if batch_size is None else min(batch_size, max_n)  # batch slots per client
    steps = -(-max_n // width)  # ceil: batches in the longest client's epoch
    for epoch in range(epochs):
        order = sample_orders(seeds, sizes, epoch)  # (clients, max_n) local positions, -1 pad
        glob = np.where(order >= 0, np.take_along_axis(table, np.maximum(order, 0), 1), -1)
        glob = np.pad(glob, ((0, 0), (0, steps * width - max_n)), constant_values=-1)
        batches = torch.from_numpy(glob).reshape(clients, steps, width)  # (clients, steps, width)
        for s in range(steps):
            idx = batches[:, s, :]  # (clients, width) global indices, -1 = padding
            mask = (idx >= 0).to(X.dtype)  # (clients, width)
            safe = idx.clamp(min=0)
            logits = _forward(params, X[safe])  # (clients, width, classes)
            losses = F.cross_entropy(logits.reshape(clients * width, -1),  # (clients*width, C)
                                     y[safe].reshape(-1), reduction="none")
            losses = losses.reshape(clients, width) * mask  # (clients, width)
            per_client = losses.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (clients,)
            grads = torch.autograd.grad(per_client.sum(), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(g, alpha=lr)  # plain SGD, as torch.optim.SGD(lr) does
    return _pairs(params), sizes


def _forward(params: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """The MLP on stacked weights: ``h`` is ``(clients, batch, features)``."""
    last = len(params) // 2 - 1
    for i in range(0, len(params), 2):
        w, b = params[i], params[i + 1]  # (clients, out, in), (clients, out)
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (clients, batch, out)
        if i // 2 < last:
            h = torch.relu(h)
    return h


def _pairs(params: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(params[i].detach(), params[i + 1].detach()) for i in range(0, len(params), 2)]
