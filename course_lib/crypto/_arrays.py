"""Array arguments: numbers from the caller as float64 arrays, with errors that name them.

``np.asarray(value, dtype=np.float64)`` on a wrong argument raises ``TypeError: float()
argument must be ...`` or ``ValueError: could not convert string ...``, neither of which says
which argument was wrong. Every public crypto function that takes array_like input goes
through :func:`float_array` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["float_array"]


def float_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; anything that is not numbers raises TypeError naming it.

    A torch tensor (even one that requires grad, or one on another device) is accepted.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, without torch
        value = value.detach().cpu()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"`{name}` must be an array_like of real numbers, got "
                        f"{type(value).__name__}") from None
