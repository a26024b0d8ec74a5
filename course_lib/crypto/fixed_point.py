"""Fixed-point encoding shared by Paillier and secret sharing: ``x -> round(x * 2**frac_bits)``.

Homomorphic encryption and secret sharing compute on *integers* (modulo n, or modulo a prime).
A real number ``x`` is carried as the integer ``round(x * 2**f)``, where ``f`` is the number of
fractional bits; decoding divides by ``2**f``. Rounding to the nearest multiple of ``2**-f``
costs at most ``2**-(f+1)`` per value. A sum of ``k`` encoded values is the encoding of the
sum (error at most ``k * 2**-(f+1)``); a product of two encodings carries ``2f`` fractional
bits.

The encoded integers are returned as Python ``int`` (inside an ``object`` array for arrays), so
that later arithmetic on them never overflows silently the way int64 would.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from course_lib._validation import require_int

__all__ = ["MAX_FRAC_BITS", "check_frac_bits", "quantize", "dequantize", "quantize_scalar"]

MAX_FRAC_BITS = 52  # beyond float64's 53-bit mantissa more fractional bits carry no information
_MAX_ABS_SCALED = 2.0**62  # float64 -> int64 conversion stays exact below this


def check_frac_bits(frac_bits: Any, name: str = "frac_bits") -> int:
    """Return ``frac_bits`` if it is an int in [0, 52], else raise naming ``name``."""
    return require_int(name, frac_bits, minimum=0, maximum=MAX_FRAC_BITS)


def quantize(values: Any, *, frac_bits: int, bound: float | None = None,
             name: str = "values") -> np.ndarray:
    """Encode real numbers as integers ``round(x * 2**frac_bits)`` (an ``object`` array of ints).

    Parameters
    ----------
    values : array_like of float
        The real numbers; any shape. NaN and infinities are refused.
    frac_bits : int
        Fractional bits ``f``: the resolution is ``2**-f``.
    bound : float, optional
        If given, every ``|x|`` must be at most ``bound``; a larger value raises ``ValueError``
        (the packing schemes rely on this bound to size their slots).
    name : str
        Parameter name used in error messages.
    """
    check_frac_bits(frac_bits)
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got NaN or infinity")
    if bound is not None and array.size and float(np.max(np.abs(array))) > bound:
        worst = float(array.flat[int(np.argmax(np.abs(array)))])
        raise ValueError(f"`{name}` must lie in [-{bound}, {bound}], got {worst}")
    scaled = np.rint(array * float(2**frac_bits))  # (same shape), exact integers in float64
    if scaled.size and float(np.max(np.abs(scaled))) >= _MAX_ABS_SCALED:
        raise ValueError(f"`{name}` * 2**{frac_bits} must be below 2**62 in magnitude "
                         f"(use fewer frac_bits or smaller values)")
    return scaled.astype(np.int64).astype(object)


def quantize_scalar(value: Any, *, frac_bits: int, name: str = "value") -> int:
    """Encode one real number (int or float) as ``round(value * 2**frac_bits)``.

    Python ints are encoded exactly, whatever their size; floats go through :func:`quantize`.
    """
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an int or float, got bool")
    if isinstance(value, numbers.Integral):
        return int(value) << check_frac_bits(frac_bits)
    if isinstance(value, numbers.Real):
        return int(quantize(float(value), frac_bits=frac_bits, name=name))
    raise TypeError(f"`{name}` must be an int or float, got {type(value).__name__}")


def dequantize(integers: Any, *, frac_bits: int) -> np.ndarray:
    """Decode integers back to float64: ``v / 2**frac_bits``, correctly rounded even for big ints.

    Accepts any shape of Python ints (an ``object`` array or nested lists); returns float64.
    """
    require_int("frac_bits", frac_bits, minimum=0)  # products may carry more than 52 bits
    array = np.asarray(integers, dtype=object)
    denominator = 2**frac_bits
    # int / int is correctly rounded in Python even when the numerator has thousands of bits.
    return np.vectorize(lambda v: int(v) / denominator, otypes=[np.float64])(array) \
        if array.size else np.zeros(array.shape)
