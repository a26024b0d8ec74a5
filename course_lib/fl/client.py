"""What one client does: train a copy of the global model on its own data, and evaluate.

:func:`train_local` is step 2 of FedAvg's five steps as chapter 3.3 numbers them (the server
sends the global model; each client trains it on local data; the server averages): plain
mini-batch SGD on cross-entropy, ``epochs`` passes over the client's samples in a shuffled
order fixed by ``seed``. It
returns the trained weights and how many samples produced them, the two things a client
sends back. The model passed in is never modified.

All torch work here runs with one intra-op thread (see :mod:`course_lib._threads`). Measured
on a 2-core machine with the 64-32-10 MLP and batches of 32, one epoch over 1,347 samples:
5.5 ms with one thread and 5.7 ms with two while the machine is idle, but 5.9 ms against
209 ms when another process keeps one core busy (as a Jupyter server or a second notebook
easily does): the second thread then waits for a core at every tiny matrix product.

Examples
--------
>>> from course_lib.fl.data import load_digits
>>> from course_lib.fl.models import make_mlp
>>> from course_lib.fl.client import train_local, evaluate
>>> data = load_digits(seed=0)
>>> model = make_mlp(seed=0)
>>> state, n = train_local(model, data.X_train[:135], data.y_train[:135], epochs=2, seed=1)
>>> n
135
>>> model.load_state_dict(state)
<All keys matched successfully>
>>> accuracy, loss = evaluate(model, data.X_test, data.y_test)
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.fl.seeds import sample_orders

__all__ = ["train_local", "evaluate", "train_centralised", "DEFAULT_LR", "NUM_THREADS"]

# SGD step size for the standardised digits and the default MLP, from a sweep over 0.05-0.5:
# centralised, 5 epochs reach ~0.97; FedAvg (10 IID clients, E=1, B=32) ~0.96 in 20 rounds.
DEFAULT_LR = 0.3
NUM_THREADS = 1  # intra-op threads for the tiny models here; measured in the module docstring
MAX_SEED = 2**63 - 1


def _check_data(X: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"`X` and `y` must be torch tensors, got {type(X).__name__} "
                        f"and {type(y).__name__}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"`X` and `y` must have the same number of rows, got {X.shape[0]} "
                         f"and {y.shape[0]}")


def check_training_args(*, epochs: int, batch_size: int | None, lr: float, seed: int) -> None:
    """Validate the local-training options (shared with the simulation engines)."""
    require_int("epochs", epochs, minimum=1)
    if batch_size is not None:
        require_int("batch_size", batch_size, minimum=1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 < lr < float("inf"):
        raise ValueError(f"`lr` must be a positive finite number, got {lr!r}")
    require_int("seed", seed, minimum=0, maximum=MAX_SEED)


def train_local(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 1,
                batch_size: int | None = 32, lr: float = DEFAULT_LR,
                seed: int = 0) -> tuple[dict[str, torch.Tensor], int]:
    """Train a copy of ``model`` on ``(X, y)`` with mini-batch SGD; return its weights.

    Parameters
    ----------
    model : nn.Module
        The global model; it is copied, never modified.
    X : torch.Tensor, shape (samples, features)
    y : torch.Tensor of int64, shape (samples,)
    epochs : int
        Passes over the local data (FedAvg's ``E``).
    batch_size : int or None
        Samples per SGD step (FedAvg's ``B``); the last batch of an epoch may be smaller.
        ``None`` uses all local samples in one step per epoch (FedSGD's ``B = inf``).
    lr : float
        SGD step size.
    seed : int
        Fixes the shuffled order of every epoch; same seed, same result, bit for bit.

    Returns
    -------
    state : dict of str to torch.Tensor
        The trained weights (new tensors, sharing no memory with ``model``).
    num_samples : int
        ``len(y)``, the client's weight in FedAvg. A client without data returns the
        unchanged weights and 0.
    """
    check_training_args(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    _check_data(X, y)
    return _train(model, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)


def _train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int,
           batch_size: int | None, lr: float, seed: int) -> tuple[dict[str, torch.Tensor], int]:
    """:func:`train_local` without the checks: for the round, whose options were checked once,
    in its :class:`~course_lib.fl.config.FedAvgConfig`."""
    local = copy.deepcopy(model)
    n = int(y.shape[0])
    if n > 0:
        local.train()
        optimiser = torch.optim.SGD(local.parameters(), lr=lr)
        step = n if batch_size is None else batch_size
        with torch_threads(NUM_THREADS):
            for epoch in range(epochs):
                order = torch.from_numpy(sample_orders(np.array([seed]), np.array([n]), epoch)[0])
                for start in range(0, n, step):
                    idx = order[start:start + step]  # (batch,)
                    loss = F.cross_entropy(local(X[idx]), y[idx])  # mean over the batch
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
    state = {k: v.detach().clone() for k, v in local.state_dict().items()}
    return state, n


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Return ``(accuracy, mean cross-entropy loss)`` of ``model`` on ``(X, y)``.

    The model is put in eval mode for the forward pass and its previous mode restored.
    """
    _check_data(X, y)
    if y.shape[0] == 0:
        raise ValueError("`y` must contain at least one sample to evaluate on, got 0")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch_threads(NUM_THREADS):
            logits = model(X)  # (samples, classes)
            loss = F.cross_entropy(logits, y).item()
            accuracy = (logits.argmax(dim=1) == y).double().mean().item()
    finally:
        model.train(was_training)
    return accuracy, loss


def train_centralised(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 10,
                      batch_size: int | None = 32, lr: float = DEFAULT_LR,
                      seed: int = 0) -> nn.Module:
    """Train on all the data in one place (the non-federated baseline); return a new model.

    Same SGD as :func:`train_local`; ``model`` itself is not modified.

    Examples
    --------
    >>> from course_lib.fl.data import load_digits
    >>> from course_lib.fl.models import make_mlp
    >>> data = load_digits(seed=0)
    >>> trained = train_centralised(make_mlp(seed=0), data.X_train, data.y_train, epochs=10)
    >>> evaluate(trained, data.X_test, data.y_test)[0] > 0.95
    True
    """
    state, _ = train_local(model, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    trained = copy.deepcopy(model)
    trained.load_state_dict(state)
    return trained
