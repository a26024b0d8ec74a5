"""Packing: many small fixed-point values in one Paillier plaintext (as in BatchCrypt).

A 2048-bit Paillier plaintext can hold far more than one 16-bit number. Packing writes ``K``
signed integers ``s_0 .. s_{K-1}`` side by side, ``slot_bits`` apart::

    P = s_0 + s_1 * 2^B + s_2 * 2^(2B) + ...        (B = slot_bits)

Adding two packed plaintexts adds them slot by slot, as long as no slot's sum leaves
``[-2^(B-1), 2^(B-1))``; then one encryption (one ``r^n``, the expensive step) carries ``K``
values instead of one. Unpacking reads each slot as a ``B``-bit two's-complement number and
carries the borrow of a negative slot into the next, so the slots may be negative.

:class:`PackingScheme` sizes the slots for a job: values with ``|x| <= bound`` quantised to
``frac_bits`` fractional bits, summed over at most ``max_summands`` clients. A value above
``bound`` and a sum of more than ``max_summands`` ciphertexts raise ``ValueError``: an
overflowing slot would otherwise corrupt its neighbour *silently*.

Reference: Zhang et al., "BatchCrypt: Efficient Homomorphic Encryption for Cross-Silo
Federated Learning", USENIX ATC 2020.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from course_lib._validation import require_int
from course_lib.crypto.fixed_point import check_frac_bits, dequantize, quantize

if TYPE_CHECKING:
    from course_lib.crypto.paillier import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey

__all__ = ["pack_slots", "unpack_slots", "PackingScheme", "PackedCiphertext"]


def pack_slots(values: Sequence[int], *, slot_bits: int) -> int:
    """``sum(v_k * 2**(k * slot_bits))`` for signed ints with ``|v_k| < 2**(slot_bits - 1)``."""
    require_int("slot_bits", slot_bits, minimum=2)
    limit = 1 << (slot_bits - 1)
    packed = 0
    for v in reversed(values):  # Horner's rule: ((v_{K-1} * 2^B + v_{K-2}) * 2^B + ...)
        v = int(v)
        if not -limit <= v < limit:
            raise ValueError(f"slot value must be in [-2**{slot_bits - 1}, 2**{slot_bits - 1}), "
                             f"got {v}")
        packed = (packed << slot_bits) + v
    return packed


def unpack_slots(packed: int, *, slot_bits: int, count: int) -> list[int]:
    """Inverse of :func:`pack_slots`: the ``count`` signed slot values of ``packed``."""
    require_int("slot_bits", slot_bits, minimum=2)
    require_int("count", count, minimum=0)
    mask, half = (1 << slot_bits) - 1, 1 << (slot_bits - 1)
    values = []
    for _ in range(count):
        low = packed & mask  # Python ints behave as infinite two's complement
        low = low - (1 << slot_bits) if low >= half else low
        values.append(low)
        packed = (packed - low) >> slot_bits  # a negative slot borrowed 1 from the next one
    return values


class PackingScheme:
    """Slot layout for summing packed vectors of ``|x| <= bound`` from up to ``max_summands``.

    Parameters
    ----------
    public_key : PaillierPublicKey
        The key the vectors are encrypted under (its size fixes how many slots fit).
    frac_bits : int
        Fractional bits of the fixed-point encoding: resolution ``2**-frac_bits``.
    bound : float
        Largest ``|x|`` accepted; larger inputs raise ``ValueError`` (clip them first).
    max_summands : int
        Most ciphertexts that may be added together (e.g. the number of clients).

    Attributes
    ----------
    slot_bits : int
        ``bits(max_summands * round(bound * 2**frac_bits)) + 1`` (the +1 is the sign).
    slots_per_ciphertext : int
        ``(key bits - 2) // slot_bits``, so a packed sum stays below ``n/2``.
    """

    def __init__(self, public_key: PaillierPublicKey, *, frac_bits: int = 16, bound: float = 1.0,
                 max_summands: int = 10) -> None:
        from course_lib.crypto.paillier import PaillierPublicKey  # import cycle: paillier uses us

        if not isinstance(public_key, PaillierPublicKey):
            raise TypeError(f"`public_key` must be a PaillierPublicKey, "
                            f"got {type(public_key).__name__}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) \
                or not 0 < bound < math.inf:
            raise ValueError(f"`bound` must be a positive finite number, got {bound!r}")
        self.public_key = public_key
        self.frac_bits = check_frac_bits(frac_bits)
        self.bound = float(bound)
        self.max_summands = require_int("max_summands", max_summands, minimum=1)
        max_abs_sum = max_summands * round(self.bound * 2**self.frac_bits)
        self.slot_bits = max_abs_sum.bit_length() + 1
        self.slots_per_ciphertext = (public_key.bits - 2) // self.slot_bits
        if self.slots_per_ciphertext < 1:
            raise ValueError(f"a {self.slot_bits}-bit slot does not fit a {public_key.bits}-bit "
                             "key: lower bound, frac_bits or max_summands")

    def max_abs_error(self, num_summands: int | None = None) -> float:
        """Worst-case ``|decoded sum - true sum|`` per slot: ``k * 2**-(frac_bits + 1)``."""
        k = self.max_summands if num_summands is None else num_summands
        return k * 2.0 ** -(self.frac_bits + 1)

    def num_ciphertexts(self, length: int) -> int:
        """Ciphertexts needed for a vector of ``length`` values."""
        return -(-require_int("length", length, minimum=0) // self.slots_per_ciphertext)

    def encrypt(self, values: Any) -> PackedCiphertext:
        """Quantise, pack and encrypt a 1-D vector (one client's contribution)."""
        flat = np.asarray(values, dtype=np.float64)
        if flat.ndim != 1:
            raise ValueError(f"`values` must be a 1-D vector, got shape {flat.shape}")
        ints = quantize(flat, frac_bits=self.frac_bits, bound=self.bound)  # (length,) of int
        k = self.slots_per_ciphertext
        cts = tuple(self.public_key.encrypt(pack_slots(ints[i:i + k], slot_bits=self.slot_bits))
                    for i in range(0, len(ints), k))
        return PackedCiphertext(self, cts, length=len(ints), num_summands=1)

    def decrypt(self, private_key: PaillierPrivateKey, packed: PackedCiphertext) -> np.ndarray:
        """Decrypt and unpack a (summed) packed vector into float64 values."""
        if not isinstance(packed, PackedCiphertext) or packed.scheme != self:
            raise ValueError("`packed` must be a PackedCiphertext made with this scheme")
        k, ints = self.slots_per_ciphertext, []
        for i, ct in enumerate(packed.ciphertexts):
            count = min(k, packed.length - i * k)
            ints.extend(unpack_slots(private_key.decrypt_raw(ct), slot_bits=self.slot_bits,
                                     count=count))
        return dequantize(ints, frac_bits=self.frac_bits)

    def _params(self) -> tuple:
        return self.public_key, self.frac_bits, self.bound, self.max_summands

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackingScheme) and self._params() == other._params()

    def __hash__(self) -> int:
        return hash(self._params())

    def __repr__(self) -> str:
        return (f"PackingScheme(bits={self.public_key.bits}, frac_bits={self.frac_bits}, "
                f"bound={self.bound}, max_summands={self.max_summands}, "
                f"slot_bits={self.slot_bits}, slots_per_ciphertext={self.slots_per_ciphertext})")


class PackedCiphertext:
    """An encrypted packed vector: a tuple of Paillier ciphertexts plus its bookkeeping.

    ``a + b`` adds slot by slot and refuses (``ValueError``) to go beyond the scheme's
    ``max_summands``; ``sum(list_of_packed)`` works.
    """

    def __init__(self, scheme: PackingScheme, ciphertexts: tuple[EncryptedNumber, ...], *,
                 length: int, num_summands: int) -> None:
        self.scheme, self.ciphertexts = scheme, tuple(ciphertexts)
        self.length, self.num_summands = length, num_summands

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: each ciphertext is an integer below ``n^2``."""
        return len(self.ciphertexts) * 2 * (-(-self.scheme.public_key.bits // 8))

    def __add__(self, other: Any) -> PackedCiphertext:
        if not isinstance(other, PackedCiphertext) or other.scheme != self.scheme \
                or other.length != self.length:
            raise ValueError("can only add PackedCiphertexts of the same scheme and length")
        total = self.num_summands + other.num_summands
        if total > self.scheme.max_summands:
            raise ValueError(f"slot overflow: the scheme has headroom for max_summands = "
                             f"{self.scheme.max_summands}, this sum would have {total}")
        cts = tuple(a + b for a, b in zip(self.ciphertexts, other.ciphertexts))
        return PackedCiphertext(self.scheme, cts, length=self.length, num_summands=total)

    def __radd__(self, other: Any) -> PackedCiphertext:
        if isinstance(other, int) and other == 0:  # lets sum() start from 0
            return self
        return self.__add__(other)

    def __repr__(self) -> str:
        return (f"PackedCiphertext(length={self.length}, ciphertexts={len(self.ciphertexts)}, "
                f"num_summands={self.num_summands}, nbytes={self.nbytes})")
