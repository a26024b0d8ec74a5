"""Packing: many small fixed-point values in one Paillier plaintext (as in BatchCrypt).

A 2048-bit Paillier plaintext can hold far more than one 16-bit number. Packing writes ``K``
signed integers ``s_0 .. s_{K-1}`` side by side, ``slot_bits`` apart::

    P = s_0 + s_1 * 2^B + s_2 * 2^(2B) + ...        (B = slot_bits)

Adding two packed plaintexts adds them slot by slot, as long as no slot's sum leaves
``[-2^(B-1), 2^(B-1))``; then one encryption (one ``r^n``, the expensive step) carries ``K``
values instead of one. Unpacking reads each slot as a ``B``-bit two's-complement number and
carries the borrow of a negative slot into the next, so the slots may be negative.

:class:`PackingScheme` sizes the slots for a job: values with ``|x| <= bound`` quantised to
``frac_bits`` fractional bits, summed over at most ``max_summands`` clients. Its
``slot_limit = max_summands * round(bound * 2**frac_bits)`` is the largest ``|slot|`` any
result may reach, and the slot is wide enough for it. An overflowing slot would corrupt its
neighbour *silently*, so it is guarded twice:

- every homomorphic operation (``+``, ``-``, unary ``-``, ``*`` by an int) tracks the
  worst-case magnitude of the result's slots (:attr:`PackedCiphertext.max_abs_slot`: a sum
  adds the operands' bounds, ``k * a`` multiplies by ``|k|``) and raises ``ValueError``
  before it could exceed ``slot_limit``;
- decryption checks every slot again: a slot outside ``[-max_abs_slot, max_abs_slot]``, or
  bits above the last slot, raise :class:`~course_lib.errors.DecryptionError` instead of
  returning a wrong number. This catches what bookkeeping cannot see: ciphertexts combined
  by hand, or a client that encrypted values beyond ``bound`` so that the sum overflows.

What no check can catch is a client whose crafted values stay inside the range (it adds, say,
0.9 instead of 0.1): Paillier gives no integrity, and bounding a secret input needs a
zero-knowledge range proof, which this course does not implement.

Reference: Zhang et al., "BatchCrypt: Efficient Homomorphic Encryption for Cross-Silo
Federated Learning", USENIX ATC 2020.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from course_lib._validation import require_int
from course_lib.crypto._arrays import float_array
from course_lib.crypto._paillier_keys import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey
from course_lib.crypto.fixed_point import check_frac_bits, dequantize, quantize
from course_lib.errors import DecryptionError

__all__ = ["pack_slots", "unpack_slots", "PackingScheme", "PackedCiphertext"]


def pack_slots(values: Sequence[int], *, slot_bits: int) -> int:
    """``sum(v_k * 2**(k * slot_bits))`` for signed ints with ``|v_k| < 2**(slot_bits - 1)``."""
    require_int("slot_bits", slot_bits, minimum=2)
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"`values` must be a sequence of ints, got {type(values).__name__}"
                        ) from None
    limit = 1 << (slot_bits - 1)
    packed = 0
    for v in reversed(values):  # Horner's rule: ((v_{K-1} * 2^B + v_{K-2}) * 2^B + ...)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"`values` must hold ints, got {type(v).__name__}")
        v = int(v)
        if not -limit <= v < limit:
            raise ValueError(f"`values`: slot value must be in [-2**{slot_bits - 1}, "
                             f"2**{slot_bits - 1}), got {v}")
        packed = (packed << slot_bits) + v
    return packed


def unpack_slots(packed: int, *, slot_bits: int, count: int) -> list[int]:
    """Inverse of :func:`pack_slots`: the ``count`` signed slot values of ``packed``.

    It checks nothing (an overflowed slot reads as a wrong value); :meth:`PackingScheme.decrypt`
    is the checked path.
    """
    require_int("packed", packed)
    require_int("slot_bits", slot_bits, minimum=2)
    require_int("count", count, minimum=0)
    return _unpack(packed, slot_bits, count)[0]


def _unpack(packed: int, slot_bits: int, count: int) -> tuple[list[int], int]:
    """The ``count`` slot values and what is left above them (0 for a well-formed plaintext)."""
    mask, half = (1 << slot_bits) - 1, 1 << (slot_bits - 1)
    values = []
    for _ in range(count):
        low = packed & mask  # Python ints behave as infinite two's complement
        low = low - (1 << slot_bits) if low >= half else low
        values.append(low)
        packed = (packed - low) >> slot_bits  # a negative slot borrowed 1 from the next one
    return values, packed


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
    value_limit : int
        ``round(bound * 2**frac_bits)``: the largest ``|slot|`` of one freshly encrypted vector.
    slot_limit : int
        ``max_summands * value_limit``: the largest ``|slot|`` any result may reach.
    slot_bits : int
        ``bits(slot_limit) + 1`` (the +1 is the sign).
    slots_per_ciphertext : int
        ``(key bits - 2) // slot_bits``, so a packed sum stays below ``n/2``.
    """

    def __init__(self, public_key: PaillierPublicKey, *, frac_bits: int = 16, bound: float = 1.0,
                 max_summands: int = 10) -> None:
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
        self.value_limit = round(self.bound * 2**self.frac_bits)
        self.slot_limit = self.max_summands * self.value_limit
        self.slot_bits = self.slot_limit.bit_length() + 1
        self.slots_per_ciphertext = (public_key.bits - 2) // self.slot_bits
        if self.slots_per_ciphertext < 1:
            raise ValueError(f"a {self.slot_bits}-bit slot does not fit a {public_key.bits}-bit "
                             "key: lower bound, frac_bits or max_summands")

    def max_abs_error(self, num_summands: int | None = None) -> float:
        """Worst-case ``|decoded sum - true sum|`` per slot: ``k * 2**-(frac_bits + 1)``."""
        k = self.max_summands if num_summands is None else \
            require_int("num_summands", num_summands, minimum=0)
        return k * 2.0 ** -(self.frac_bits + 1)

    def num_ciphertexts(self, length: int) -> int:
        """Ciphertexts needed for a vector of ``length`` values."""
        return -(-require_int("length", length, minimum=0) // self.slots_per_ciphertext)

    def encrypt(self, values: Any) -> PackedCiphertext:
        """Quantise, pack and encrypt a 1-D vector (one client's contribution)."""
        flat = float_array("values", values)
        if flat.ndim != 1:
            raise ValueError(f"`values` must be a 1-D vector, got shape {flat.shape}")
        ints = quantize(flat, frac_bits=self.frac_bits, bound=self.bound)  # (length,) of int
        k = self.slots_per_ciphertext
        cts = tuple(self.public_key.encrypt(pack_slots(ints[i:i + k], slot_bits=self.slot_bits))
                    for i in range(0, len(ints), k))
        return PackedCiphertext._trusted(self, cts, len(ints), 1, self.value_limit)

    def decrypt(self, private_key: PaillierPrivateKey, packed: PackedCiphertext) -> np.ndarray:
        """Decrypt and unpack a (summed) packed vector into float64 values.

        Raises :class:`~course_lib.errors.DecryptionError` if ``packed`` is under another key,
        or if any slot lies outside ``[-packed.max_abs_slot, packed.max_abs_slot]`` or bits
        are set above the last slot: an overflow, or a crafted ciphertext, never decrypts to
        a silently wrong vector.
        """
        if not isinstance(private_key, PaillierPrivateKey):
            raise TypeError(f"`private_key` must be a PaillierPrivateKey, "
                            f"got {type(private_key).__name__}")
        if not isinstance(packed, PackedCiphertext) or packed.scheme != self:
            raise ValueError("`packed` must be a PackedCiphertext made with this scheme")
        k, limit, ints = self.slots_per_ciphertext, packed.max_abs_slot, []
        for i, ct in enumerate(packed.ciphertexts):
            count = min(k, packed.length - i * k)
            values, rest = _unpack(private_key.decrypt_raw(ct), self.slot_bits, count)
            if rest != 0 or any(abs(v) > limit for v in values):
                raise DecryptionError()
            ints.extend(values)
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

    Parameters
    ----------
    scheme : PackingScheme
        The layout the ciphertexts were packed with.
    ciphertexts : iterable of EncryptedNumber
        ``scheme.num_ciphertexts(length)`` integer ciphertexts under ``scheme.public_key``,
        e.g. rebuilt from received ints with ``EncryptedNumber(public_key, c)``.
    length : int
        Number of values in the vector.
    num_summands : int
        How many vectors were added to make this one (1 for a client's own).
    max_abs_slot : int, optional
        Worst-case ``|slot|`` in units of ``2**-frac_bits``; default
        ``num_summands * scheme.value_limit``. At most ``scheme.slot_limit``.

    ``a + b``, ``a - b``, ``-a`` and ``k * a`` (``k`` an int) work slot by slot and refuse
    (``ValueError``) any result whose worst case could exceed ``scheme.slot_limit``;
    ``sum(list_of_packed)`` works.
    """

    def __init__(self, scheme: PackingScheme, ciphertexts: Iterable[EncryptedNumber], *,
                 length: int, num_summands: int = 1, max_abs_slot: int | None = None) -> None:
        if not isinstance(scheme, PackingScheme):
            raise TypeError(f"`scheme` must be a PackingScheme, got {type(scheme).__name__}")
        try:
            cts = tuple(ciphertexts)
        except TypeError:
            raise TypeError(f"`ciphertexts` must be an iterable of EncryptedNumbers, got "
                            f"{type(ciphertexts).__name__}") from None
        for ct in cts:
            if not isinstance(ct, EncryptedNumber):
                raise TypeError(f"`ciphertexts` must hold EncryptedNumbers, got "
                                f"{type(ct).__name__}")
            if ct.public_key != scheme.public_key or ct.frac_bits != 0:
                raise ValueError("`ciphertexts` must be integer ciphertexts (frac_bits 0) under "
                                 "the scheme's public key")
        require_int("length", length, minimum=0)
        if len(cts) != scheme.num_ciphertexts(length):
            raise ValueError(f"`ciphertexts` must hold {scheme.num_ciphertexts(length)} "
                             f"ciphertexts for `length` = {length}, got {len(cts)}")
        require_int("num_summands", num_summands, minimum=1)
        if max_abs_slot is None:
            max_abs_slot = num_summands * scheme.value_limit
        require_int("max_abs_slot", max_abs_slot, minimum=0)
        _check_headroom(scheme, max_abs_slot, "`max_abs_slot` is")
        self.scheme, self.ciphertexts, self.length = scheme, cts, length
        self.num_summands, self.max_abs_slot = num_summands, max_abs_slot

    @classmethod
    def _trusted(cls, scheme: PackingScheme, cts: tuple[EncryptedNumber, ...], length: int,
                 num_summands: int, max_abs_slot: int) -> PackedCiphertext:
        obj = cls.__new__(cls)  # computed here from checked operands
        obj.scheme, obj.ciphertexts, obj.length = scheme, cts, length
        obj.num_summands, obj.max_abs_slot = num_summands, max_abs_slot
        return obj

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: each ciphertext is an integer below ``n^2``."""
        return len(self.ciphertexts) * 2 * (-(-self.scheme.public_key.bits // 8))

    def __add__(self, other: Any) -> PackedCiphertext:
        if not isinstance(other, PackedCiphertext):
            raise TypeError(f"can only add a PackedCiphertext to a PackedCiphertext, got "
                            f"{type(other).__name__}")
        if other.scheme != self.scheme or other.length != self.length:
            raise ValueError("can only add PackedCiphertexts of the same scheme and length")
        bound = self.max_abs_slot + other.max_abs_slot
        _check_headroom(self.scheme, bound, "this sum could reach")
        cts = tuple(a + b for a, b in zip(self.ciphertexts, other.ciphertexts))
        return PackedCiphertext._trusted(self.scheme, cts, self.length,
                                         self.num_summands + other.num_summands, bound)

    def __radd__(self, other: Any) -> PackedCiphertext:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # lets sum() start from 0
        return self.__add__(other)

    def __neg__(self) -> PackedCiphertext:
        cts = tuple(-ct for ct in self.ciphertexts)  # E(x)^(-1) = E(-x), every slot at once
        return PackedCiphertext._trusted(self.scheme, cts, self.length, self.num_summands,
                                         self.max_abs_slot)

    def __sub__(self, other: Any) -> PackedCiphertext:
        if not isinstance(other, PackedCiphertext):
            raise TypeError(f"can only subtract a PackedCiphertext, got {type(other).__name__}")
        return self + (-other)

    def __mul__(self, scalar: Any) -> PackedCiphertext:
        if isinstance(scalar, PackedCiphertext):
            raise TypeError("Paillier cannot multiply two ciphertexts; multiply by an int")
        if isinstance(scalar, bool) or not isinstance(scalar, numbers.Integral):
            raise TypeError(f"`scalar` must be an int (each slot holds a fixed-point integer; "
                            f"a float would change its scale), got {type(scalar).__name__}")
        k = int(scalar)
        bound = abs(k) * self.max_abs_slot
        _check_headroom(self.scheme, bound, f"this product by `scalar` = {k} could reach")
        cts = tuple(ct * k for ct in self.ciphertexts)  # E(x)^k = E(k x), every slot at once
        return PackedCiphertext._trusted(self.scheme, cts, self.length, self.num_summands, bound)

    __rmul__ = __mul__

    def rerandomize(self) -> PackedCiphertext:
        """The same slots under fresh randomness (see :meth:`EncryptedNumber.rerandomize`)."""
        cts = tuple(ct.rerandomize() for ct in self.ciphertexts)
        return PackedCiphertext._trusted(self.scheme, cts, self.length, self.num_summands,
                                         self.max_abs_slot)

    def __repr__(self) -> str:
        return (f"PackedCiphertext(length={self.length}, ciphertexts={len(self.ciphertexts)}, "
                f"num_summands={self.num_summands}, nbytes={self.nbytes})")


def _check_headroom(scheme: PackingScheme, bound: int, what: str) -> None:
    """``ValueError`` if a slot bounded by ``bound`` could exceed the scheme's headroom."""
    if bound > scheme.slot_limit:
        raise ValueError(f"slot overflow: the scheme has headroom for |slot| <= "
                         f"{scheme.slot_limit} (max_summands = {scheme.max_summands} vectors of "
                         f"|x| <= {scheme.bound}, in units of 2**-{scheme.frac_bits}); "
                         f"{what} {bound}")
