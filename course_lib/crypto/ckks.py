"""CKKS approximate homomorphic encryption of vectors: a thin wrapper over TenSEAL (optional).

CKKS (Cheon, Kim, Kim, Song 2017) encrypts a whole vector of reals in one ciphertext (4096
slots for the default ring of degree 8192) and adds or multiplies them slot by slot. Unlike
Paillier it is *approximate*: every result carries a small noise (about 1e-7 relative here),
which is fine for machine learning and wrong for exact integers. The noise also means that
a decrypted result shown to someone else can leak information about the secret key (Li and
Micciancio, EUROCRYPT 2021): only the key owner should see decryptions.

TenSEAL (Microsoft SEAL underneath) is an optional extra: install it with
``pip install "model-privacy-course[he]"``. Without it, :func:`is_available` is False and
every other function raises :class:`MissingExtraError` (an ``ImportError``) saying so.

Defaults: ring degree 8192, coefficient moduli (60, 40, 40, 60) bits (200 bits in all, under
the 218 that the HE security standard allows for 128-bit security at this degree), scale
2**40. One plaintext multiplication fits; more need larger parameters.

Examples
--------
>>> from course_lib.crypto import ckks
>>> if ckks.is_available():
...     context = ckks.make_context()
...     a = ckks.encrypt(context, [1.0, 2.0, 3.0])
...     total = (a + a) * 0.5
...     print(total.decrypt().round(4).tolist())
... else:
...     print([1.0, 2.0, 3.0])
[1.0, 2.0, 3.0]
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from course_lib._validation import require_int

__all__ = ["MissingExtraError", "is_available", "make_context", "public_context", "encrypt",
           "CKKSVector"]


class MissingExtraError(ImportError):
    """TenSEAL, the optional ``he`` extra, is not installed."""


def _tenseal() -> Any:
    try:
        return importlib.import_module("tenseal")
    except ImportError as exc:
        raise MissingExtraError(
            "CKKS needs TenSEAL, the optional 'he' extra: "
            "pip install 'model-privacy-course[he]' (or: pip install tenseal)") from exc


def is_available() -> bool:
    """True if TenSEAL can be imported."""
    try:
        _tenseal()
    except MissingExtraError:
        return False
    return True


def make_context(*, poly_modulus_degree: int = 8192,
                 coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
                 scale_bits: int = 40) -> Any:
    """A CKKS context *with* its secret key (the key owner's). Share :func:`public_context`."""
    ts = _tenseal()
    require_int("poly_modulus_degree", poly_modulus_degree, minimum=1024, maximum=32768)
    require_int("scale_bits", scale_bits, minimum=20, maximum=60)
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=poly_modulus_degree,
                         coeff_mod_bit_sizes=list(coeff_mod_bit_sizes))
    context.global_scale = 2.0**scale_bits
    return context


def public_context(context: Any) -> Any:
    """A copy of ``context`` without the secret key: can encrypt and compute, not decrypt."""
    public = context.copy()
    public.make_context_public()
    return public


def _slots(context: Any) -> int:
    """Slots per ciphertext: half the ring degree."""
    return context.seal_context().data.key_context_data().parms().poly_modulus_degree() // 2


def encrypt(context: Any, values: Any) -> CKKSVector:
    """Encrypt a 1-D vector of reals (any length: split into ciphertexts of degree/2 slots)."""
    ts = _tenseal()
    flat = np.asarray(values, dtype=np.float64)
    if flat.ndim != 1 or not np.all(np.isfinite(flat)):
        raise ValueError(f"`values` must be a finite 1-D vector, got shape {flat.shape}")
    slots = _slots(context)
    chunks = tuple(ts.ckks_vector(context, flat[i:i + slots].tolist())
                   for i in range(0, len(flat), slots))
    return CKKSVector(chunks, length=len(flat), slots=slots)


class CKKSVector:
    """An encrypted vector: ``+`` another, ``*`` a plaintext scalar or vector, :meth:`decrypt`."""

    def __init__(self, chunks: tuple[Any, ...], *, length: int, slots: int) -> None:
        self.chunks, self.length, self.slots = tuple(chunks), length, slots

    def __add__(self, other: Any) -> CKKSVector:
        if isinstance(other, int) and other == 0:  # lets sum() start from 0
            return self
        if not isinstance(other, CKKSVector) or other.length != self.length:
            raise ValueError("can only add a CKKSVector of the same length")
        return CKKSVector(tuple(a + b for a, b in zip(self.chunks, other.chunks)),
                          length=self.length, slots=self.slots)

    __radd__ = __add__

    def __mul__(self, plain: Any) -> CKKSVector:
        plain = np.asarray(plain, dtype=np.float64)
        if plain.ndim == 0:
            chunks = tuple(c * float(plain) for c in self.chunks)
        elif plain.shape == (self.length,):
            chunks = tuple(c * plain[i * self.slots:(i + 1) * self.slots].tolist()
                           for i, c in enumerate(self.chunks))
        else:
            raise ValueError(f"can multiply by a scalar or a vector of length {self.length}, "
                             f"got shape {plain.shape}")
        return CKKSVector(chunks, length=self.length, slots=self.slots)

    __rmul__ = __mul__

    def decrypt(self, secret_key: Any = None) -> np.ndarray:
        """Decrypt to float64, shape ``(length,)``.

        Uses the context's secret key, or ``secret_key`` (``context.secret_key()`` of the key
        owner) for a vector that was encrypted under a :func:`public_context`.
        """
        args = () if secret_key is None else (secret_key,)
        return np.concatenate([np.asarray(c.decrypt(*args), dtype=np.float64)
                               for c in self.chunks])

    @property
    def nbytes(self) -> int:
        """Serialised size of the ciphertexts (what a client would send)."""
        return sum(len(c.serialize()) for c in self.chunks)

    def __repr__(self) -> str:
        return f"CKKSVector(length={self.length}, ciphertexts={len(self.chunks)})"
