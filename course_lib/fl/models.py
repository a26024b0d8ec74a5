"""The small models every chapter shares.

One model is enough for 8x8 digits: a multi-layer perceptron (MLP), 64 -> 32 -> 10 by
default, which reaches about 97% test accuracy in a few seconds on a laptop CPU. Its
parameters have readable names (``fc1.weight``, ``fc1.bias``, ``fc2.weight``, ``fc2.bias``),
which is what federated averaging, encryption and the attacks all work on. (The source
text's ``nn.Sequential(...).weight`` fails because a ``Sequential`` has no ``weight``: the
weights belong to the layers inside it, as the ``state_dict`` keys show.)

There is no convolutional network: on 8x8 images the MLP is already accurate, and one
architecture keeps every chapter fast and the batched engine short enough to read.

Examples
--------
>>> from course_lib.fl.models import make_mlp
>>> model = make_mlp(seed=0)
>>> model
MLP(64 -> 32 -> 10, relu, 2410 parameters)
>>> list(model.state_dict())
['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from course_lib._validation import require_int

__all__ = ["MLP", "make_mlp", "num_parameters", "state_nbytes"]


class MLP(nn.Module):
    """Fully connected layers ``fc1 .. fcL`` with ReLU between them (none after the last).

    Inputs of shape ``(batch, 8, 8)`` or ``(batch, 1, 8, 8)`` are flattened to ``(batch, 64)``.
    Build one with :func:`make_mlp`, which initialises it reproducibly from a ``seed``.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"`sizes` needs at least an input and an output size, got {sizes!r}")
        self.sizes = tuple(int(s) for s in sizes)
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            # skip_init: allocate without drawing from torch's *global* RNG; make_mlp fills it.
            self.add_module(f"fc{i}", nn.utils.skip_init(nn.Linear, fan_in, fan_out))

    def linear_layers(self) -> list[nn.Linear]:
        """The ``nn.Linear`` layers in order (``fc1``, ``fc2``, ...)."""
        return [getattr(self, f"fc{i}") for i in range(1, len(self.sizes))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(start_dim=1)  # (batch, features)
        layers = self.linear_layers()
        for layer in layers[:-1]:
            h = torch.relu(layer(h))  # (batch, hidden)
        return layers[-1](h)  # (batch, classes): logits, softmax is in the loss

    def __repr__(self) -> str:
        arch = " -> ".join(str(s) for s in self.sizes)
        return f"MLP({arch}, relu, {num_parameters(self)} parameters)"


def make_mlp(*, in_features: int = 64, hidden: int | Sequence[int] = 32,
             num_classes: int = 10, seed: int = 0) -> MLP:
    """Return a freshly initialised :class:`MLP`; the same ``seed`` gives the same weights.

    The initialisation is PyTorch's default for ``nn.Linear`` (uniform in
    ``+-1/sqrt(fan_in)`` for weights and biases), drawn from a private generator, so calling
    this never changes torch's global random state.

    Parameters
    ----------
    in_features : int
        Input size (64 for flattened 8x8 digits).
    hidden : int or sequence of int
        Hidden layer width(s); ``hidden=(64, 32)`` gives two hidden layers, ``hidden=()``
        gives multinomial logistic regression.
    num_classes : int
        Output size.
    seed : int
        Seed of the initial weights.
    """
    require_int("in_features", in_features, minimum=1)
    require_int("num_classes", num_classes, minimum=1)
    require_int("seed", seed, minimum=0)
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    for width in widths:
        require_int("hidden", width, minimum=1)
    model = MLP((in_features, *widths, num_classes))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.linear_layers():
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def num_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_nbytes(model_or_state: nn.Module | dict[str, torch.Tensor]) -> int:
    """Bytes of raw tensor data in a model's ``state_dict`` (what one transfer would carry)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return sum(t.numel() * t.element_size() for t in state.values())
