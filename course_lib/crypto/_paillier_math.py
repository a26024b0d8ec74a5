"""The number theory under :mod:`course_lib.crypto.paillier`, as plain functions on integers,
and the encoding of signed fixed-point plaintexts.

Each function is one equation of Paillier (1999) with ``g = n + 1``; the classes in
``paillier.py`` only hold keys and call these. Integers are gmpy2 ``mpz`` for speed (GMP's
modular exponentiation is about 7x faster than Python's ``pow`` at these sizes).
"""

from __future__ import annotations

import numbers
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gmpy2

from course_lib._validation import require_int
from course_lib.crypto.fixed_point import quantize_scalar

__all__ = ["DEFAULT_FRAC_BITS", "random_unit", "g_pow", "to_signed", "generate_primes", "CRTKey",
           "encode_value", "encode_scalar", "as_int", "short_hex"]

DEFAULT_FRAC_BITS = 16  # resolution 2**-16 ≈ 1.5e-5 for floats
_MPZ = type(gmpy2.mpz(0))


def as_int(value: Any) -> Any:
    """gmpy2's ``mpz`` is not an ``int`` subclass; accept it where an int is expected."""
    return int(value) if isinstance(value, _MPZ) else value


def short_hex(value: int) -> str:
    """``0x1a2b3c…9f0e``: enough of a big number to tell two apart, never the whole of it."""
    text = f"{value:x}"
    return f"0x{text}" if len(text) <= 12 else f"0x{text[:6]}…{text[-4:]}"


def encode_value(value: Any, frac_bits: int | None, max_int: int) -> tuple[int, int]:
    """``(round(value * 2**frac_bits), frac_bits)``; ``frac_bits`` None means 0 for an int and
    ``DEFAULT_FRAC_BITS`` for a float. The result must fit in ``[-max_int, max_int]``."""
    if frac_bits is None:
        frac_bits = 0 if isinstance(value, numbers.Integral) else DEFAULT_FRAC_BITS
    frac_bits = require_int("frac_bits", frac_bits, minimum=0)
    m = quantize_scalar(value, frac_bits=frac_bits)
    if abs(m) > max_int:
        raise ValueError(f"`value` * 2**{frac_bits} must be at most n/2 in magnitude "
                         f"(about 2**{max_int.bit_length()}), got {value!r}")
    return m, frac_bits


def encode_scalar(scalar: Any) -> tuple[int, int]:
    """A plaintext multiplier: an int as itself, a float with ``DEFAULT_FRAC_BITS`` bits."""
    if isinstance(scalar, numbers.Integral) and not isinstance(scalar, bool):
        return int(scalar), 0
    return quantize_scalar(scalar, frac_bits=DEFAULT_FRAC_BITS, name="scalar"), DEFAULT_FRAC_BITS


def random_unit(n: Any) -> Any:
    """A uniformly random ``r`` in ``[1, n)`` with ``gcd(r, n) = 1``, from the OS CSPRNG."""
    while True:
        r = gmpy2.mpz(secrets.randbelow(int(n)))
        if r > 0 and gmpy2.gcd(r, n) == 1:
            return r


def g_pow(m: int, n: Any, nsquare: Any) -> Any:
    """``g^m mod n^2`` for ``g = n + 1``. By the binomial theorem ``(1 + n)^m = 1 + m*n``
    modulo ``n^2`` (every other term has a factor ``n^2``), so no exponentiation is needed."""
    return (1 + (m % n) * n) % nsquare


def to_signed(m: Any, n: Any) -> int:
    """Map ``m`` in ``[0, n)`` to ``(-n/2, n/2]``: residues above ``n/2`` stand for negatives."""
    return int(m - n if m > n // 2 else m)


def generate_primes(bits: int, randbits: Callable[[int], int]) -> tuple[Any, Any]:
    """Two different primes of ``bits // 2`` bits whose product has exactly ``bits`` bits.

    ``randbits`` supplies the starting points (``secrets.randbits`` for real keys); GMP's
    ``next_prime`` finds the next (probable) prime after each.
    """
    half = bits // 2
    while True:
        # Top two bits set: p, q >= 1.5 * 2**(half-1), so p*q >= 2**(bits-1).
        p = gmpy2.next_prime(randbits(half) | (3 << (half - 2)))
        q = gmpy2.next_prime(randbits(half) | (3 << (half - 2)))
        n = p * q
        if p != q and n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            return p, q


@dataclass(frozen=True, repr=False)
class CRTKey:
    """Precomputed values for decrypting and for computing ``r^n`` modulo ``p^2`` and ``q^2``.

    Working modulo ``p^2`` and ``q^2`` (half-size numbers) and recombining with the Chinese
    remainder theorem is about 2-4x faster than working modulo ``n^2``.
    """

    p: Any
    q: Any
    n: Any

    def __post_init__(self) -> None:
        p, q, g = self.p, self.q, self.n + 1
        pre = {
            "psq": p * p,
            "qsq": q * q,
            # h_p = L_p(g^(p-1) mod p^2)^(-1) mod p with L_p(u) = (u - 1) / p  (Paillier, sec. 7)
            "hp": gmpy2.invert((gmpy2.powmod(g, p - 1, p * p) - 1) // p, p),
            "hq": gmpy2.invert((gmpy2.powmod(g, q - 1, q * q) - 1) // q, q),
            "q_inv_p": gmpy2.invert(q, p),
            "qsq_inv_psq": gmpy2.invert(q * q, p * p),
            # r^n mod p^2 = r^(n mod p(p-1)) mod p^2, since r^(p(p-1)) = 1 (Euler, phi(p^2))
            "n_mod_phi_p": self.n % (p * (p - 1)),
            "n_mod_phi_q": self.n % (q * (q - 1)),
        }
        object.__setattr__(self, "_pre", pre)

    def decrypt(self, c: Any) -> Any:
        """``m`` in ``[0, n)`` from ``c``: ``m_p = L_p(c^(p-1) mod p^2) * h_p mod p``, same for q,
        then CRT."""
        pre, p, q = self._pre, self.p, self.q
        mp = (gmpy2.powmod(c, p - 1, pre["psq"]) - 1) // p * pre["hp"] % p
        mq = (gmpy2.powmod(c, q - 1, pre["qsq"]) - 1) // q * pre["hq"] % q
        return mq + (mp - mq) * pre["q_inv_p"] % p * q  # ≡ mp (mod p) and ≡ mq (mod q)

    def r_pow_n(self, r: Any) -> Any:
        """``r^n mod n^2`` computed modulo ``p^2`` and ``q^2`` and recombined."""
        pre = self._pre
        psq, qsq = pre["psq"], pre["qsq"]
        rp = gmpy2.powmod(r, pre["n_mod_phi_p"], psq)
        rq = gmpy2.powmod(r, pre["n_mod_phi_q"], qsq)
        return rq + (rp - rq) * pre["qsq_inv_psq"] % psq * qsq
