"""Argument checks shared by the differential-privacy modules."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

State = Mapping[str, torch.Tensor]


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be a finite number {bound}, got {value!r}")
    return float(value)


def _probability(name: str, value: object, *, include_one: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    if not (0 < value <= 1 if include_one else 0 < value < 1):
        interval = "(0, 1]" if include_one else "(0, 1)"
        raise ValueError(f"`{name}` must be in {interval}, got {value!r}")
    return float(value)


def _check_state(name: str, state: object) -> State:
    if not isinstance(state, Mapping) or not state:
        raise TypeError(f"`{name}` must be a non-empty state_dict (names to tensors), "
                        f"got {type(state).__name__}")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError(f"`{name}`[{key!r}] must be a floating-point tensor, "
                            f"got {type(tensor).__name__}")
    return state
