"""Argument checks shared by the differential-privacy modules (on top of ``_validation``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from course_lib._validation import require_real

State = Mapping[str, torch.Tensor]


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (or ``>= 0`` with ``allow_zero``)."""
    return require_real(name, value, minimum=0.0, allow_minimum=allow_zero)


def _check_state(name: str, state: object) -> State:
    if not isinstance(state, Mapping) or not state:
        raise TypeError(f"`{name}` must be a non-empty state_dict (names to tensors), "
                        f"got {type(state).__name__}")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError(f"`{name}`[{key!r}] must be a floating-point tensor, "
                            f"got {type(tensor).__name__}")
    return state
