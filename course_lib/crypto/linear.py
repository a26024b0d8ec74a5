"""A softmax-regression (linear) classifier, trained in the clear, for encrypted inference.

A linear model ``logits = W x + b`` needs only additions and multiplications by the plaintext
weights, exactly what Paillier offers on an encrypted ``x`` and what Beaver triples offer on
secret-shared ``W`` and ``x`` (see :mod:`course_lib.crypto.inference`). The MLP's ReLU is not
linear, which is why the encrypted-inference chapter uses this model.

Training is full-batch Adam on cross-entropy plus an L2 penalty, starting from zero weights:
the loss is convex and nothing is sampled, so the result is deterministic and needs no seed.
The L2 penalty also keeps the weights small, which keeps fixed-point slots narrow.

Examples
--------
>>> from course_lib.fl.data import load_digits
>>> from course_lib.crypto.linear import train_linear
>>> data = load_digits(seed=0)
>>> model = train_linear(data.X_train, data.y_train)
>>> model
LinearModel(64 -> 10)
>>> model.accuracy(data.X_test, data.y_test) > 0.93
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from course_lib._threads import torch_threads
from course_lib._validation import require_int, require_real
from course_lib.crypto._arrays import float_array

__all__ = ["LinearModel", "train_linear"]


@dataclass(frozen=True, eq=False, repr=False)
class LinearModel:
    """Plain numpy weights of a linear classifier.

    Attributes
    ----------
    weight : numpy.ndarray
        float64, shape ``(classes, features)``.
    bias : numpy.ndarray
        float64, shape ``(classes,)``.
    """

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, X: Any) -> np.ndarray:
        """``X @ W.T + b`` in float64, shape ``(samples, classes)``."""
        return float_array("X", X) @ self.weight.T + self.bias

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class of each row of ``X`` (argmax of the logits)."""
        return self.logits(X).argmax(axis=1)

    def accuracy(self, X: Any, y: Any) -> float:
        """Fraction of rows of ``X`` whose prediction equals ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def __repr__(self) -> str:
        classes, features = self.weight.shape
        return f"LinearModel({features} -> {classes})"


def train_linear(X: Any, y: Any, *, epochs: int = 300, lr: float = 0.05,
                 weight_decay: float = 1e-3) -> LinearModel:
    """Fit softmax regression by full-batch Adam (deterministic: zero start, no sampling).

    Parameters
    ----------
    X : array_like or torch.Tensor
        Features, shape ``(samples, features)`` (e.g. ``load_digits().X_train``).
    y : array_like or torch.Tensor
        Integer labels in ``[0, classes)``, shape ``(samples,)``.
    epochs : int
        Full-batch Adam steps.
    lr : float
        Adam's step size.
    weight_decay : float
        L2 penalty ``weight_decay * ||W||^2 / 2`` on the weights (not the bias).
    """
    require_int("epochs", epochs, minimum=1)
    require_real("lr", lr, minimum=0, allow_minimum=False)
    require_real("weight_decay", weight_decay, minimum=0)
    X_t = torch.as_tensor(float_array("X", X))  # (samples, features)
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"`y` must hold integer labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"`y` must hold labels >= 0, got {labels.min()}")
    y_t = torch.as_tensor(labels.astype(np.int64))  # (samples,)
    if X_t.ndim != 2 or y_t.shape != (X_t.shape[0],):
        raise ValueError(f"`X` must be (samples, features) and `y` (samples,), got "
                         f"{tuple(X_t.shape)} and {tuple(y_t.shape)}")
    classes = int(y_t.max()) + 1
    weight = torch.zeros(classes, X_t.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    with torch_threads(1):
        for _ in range(epochs):
            optimizer.zero_grad()
            loss = F.cross_entropy(X_t @ weight.T + bias, y_t) \
                + 0.5 * weight_decay * (weight**2).sum()
            loss.backward()
            optimizer.step()
    return LinearModel(weight=weight.detach().numpy().copy(), bias=bias.detach().numpy().copy())
