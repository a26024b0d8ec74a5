"""The prime field of :mod:`course_lib.crypto.secret_sharing`: random elements, fixed point.

Field elements are Python ints in ``[0, PRIME)`` held in numpy ``object`` arrays, so that
products of 127-bit numbers never overflow (int64 would wrap silently).
"""

from __future__ import annotations

import random
import secrets
from typing import Any

import numpy as np

from course_lib._validation import require_int
from course_lib.crypto.fixed_point import dequantize, quantize

__all__ = ["PRIME", "DEFAULT_FRAC_BITS", "check_prime", "field_mod", "random_field_elements",
           "encode_fixed", "decode_fixed"]

PRIME = 2**127 - 1  # a Mersenne prime
DEFAULT_FRAC_BITS = 16


def check_prime(prime: Any) -> int:
    return require_int("prime", prime, minimum=3)


def field_mod(values: Any, prime: int) -> np.ndarray:
    """``values mod prime`` as an ``object`` array, also for 0-d input (numpy returns an int)."""
    return np.asarray(np.asarray(values, dtype=object) % prime, dtype=object)


def random_field_elements(shape: int | tuple[int, ...], *, prime: int = PRIME,
                          unsafe_seed: int | None = None) -> np.ndarray:
    """Uniform random integers in ``[0, prime)`` (an ``object`` array), from the CSPRNG.

    ``unsafe_seed`` makes them reproducible for demonstrations only (see the module doc).
    """
    prime = check_prime(prime)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = int(np.prod(shape, dtype=np.int64))
    draw = secrets.randbelow if unsafe_seed is None else random.Random(unsafe_seed).randrange
    out = np.empty(size, dtype=object)
    out[:] = [draw(prime) for _ in range(size)]
    return out.reshape(shape)


def encode_fixed(values: Any, *, frac_bits: int = DEFAULT_FRAC_BITS,
                 prime: int = PRIME) -> np.ndarray:
    """Field elements ``round(x * 2**frac_bits) mod prime`` for reals ``x`` (any shape)."""
    return field_mod(quantize(values, frac_bits=frac_bits), check_prime(prime))


def decode_fixed(elements: Any, *, frac_bits: int = DEFAULT_FRAC_BITS,
                 prime: int = PRIME) -> np.ndarray:
    """Reals from field elements: the top half of the field stands for negatives.

    A product of two encodings carries ``2 * frac_bits`` fractional bits: decode it with that.
    """
    prime = check_prime(prime)
    signed = np.vectorize(lambda v: int(v) - prime if int(v) > prime // 2 else int(v),
                          otypes=[object])(np.asarray(elements, dtype=object))
    return dequantize(signed, frac_bits=frac_bits)


