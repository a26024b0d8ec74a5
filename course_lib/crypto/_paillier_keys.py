"""The Paillier key and ciphertext classes (public face: :mod:`course_lib.crypto.paillier`).

They live here, below both ``paillier.py`` (key generation, the course's entry point) and
``_packing.py`` (many values per ciphertext), so that each of those imports this module and
neither imports the other. The equations are in ``_paillier_math.py``.

Everything that comes from outside (a modulus ``n``, a ciphertext integer, ``frac_bits``,
primes) is checked here: bad arguments raise ``ValueError``/``TypeError`` naming the parameter,
and every failure while decrypting raises the one :class:`~course_lib.errors.DecryptionError`.
"""

from __future__ import annotations

import numbers
from typing import Any

import gmpy2

from course_lib._validation import require_int
from course_lib.crypto._paillier_math import (
    DEFAULT_FRAC_BITS,
    CRTKey,
    as_int,
    encode_scalar,
    encode_value,
    g_pow,
    random_unit,
    short_hex,
    to_signed,
)
from course_lib.crypto.insecure import warn_insecure
from course_lib.errors import DecryptionError

__all__ = ["MIN_KEY_BITS", "PaillierPublicKey", "EncryptedNumber", "PaillierPrivateKey"]

MIN_KEY_BITS = 2048
_PRIME_ROUNDS = 50  # Miller-Rabin rounds of gmpy2.is_prime: error below 4**-50


def require_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool (an ``unsafe_`` switch must be said on purpose)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {type(value).__name__}")
    return value


def _small_key_warning(bits: int, stacklevel: int) -> None:
    warn_insecure(f"a {bits}-bit Paillier key is insecure and shown for teaching only; "
                  "never use it to protect data", stacklevel=stacklevel + 1)


class PaillierPublicKey:
    """The public key ``n`` (with ``g = n + 1``): anyone holding it can encrypt and compute.

    Parameters
    ----------
    n : int
        The modulus ``p*q``, e.g. received from the key owner. It is checked as far as a
        public value can be: odd, not prime, not a perfect square, at least 2048 bits.
    unsafe_allow_small : bool
        Accept an ``n`` below 2048 bits (a teaching key); warns with ``InsecureWarning``.
    """

    __slots__ = ("_n", "_nsquare")

    def __init__(self, n: int, *, unsafe_allow_small: bool = False) -> None:
        require_flag("unsafe_allow_small", unsafe_allow_small)
        n = require_int("n", as_int(n), minimum=15)
        if n % 2 == 0:
            raise ValueError(f"`n` must be odd (a product of two odd primes), got {short_hex(n)}")
        if gmpy2.is_prime(n, _PRIME_ROUNDS):
            raise ValueError(f"`n` must be a product of two primes, got a prime {short_hex(n)} "
                             "(anyone could decrypt)")
        if gmpy2.is_square(n):
            raise ValueError(f"`n` must be p*q with p != q, got a perfect square {short_hex(n)}")
        if n.bit_length() < MIN_KEY_BITS:
            if not unsafe_allow_small:
                raise ValueError(f"`n` must have at least {MIN_KEY_BITS} bits, got "
                                 f"{n.bit_length()} (pass unsafe_allow_small=True for a toy key)")
            _small_key_warning(n.bit_length(), stacklevel=2)
        self._n = gmpy2.mpz(n)
        self._nsquare = self._n * self._n

    @classmethod
    def _unchecked(cls, n: Any) -> PaillierPublicKey:
        """A key whose ``n`` was just made from checked primes (the caller warned if small)."""
        obj = cls.__new__(cls)
        obj._n = gmpy2.mpz(n)
        obj._nsquare = obj._n * obj._n
        return obj

    @property
    def n(self) -> int:
        """The modulus ``n = p*q``."""
        return int(self._n)

    @property
    def bits(self) -> int:
        """Bit length of ``n`` (2048 by default)."""
        return self._n.bit_length()

    @property
    def max_int(self) -> int:
        """Largest magnitude of a signed plaintext: values lie in ``[-max_int, max_int]``."""
        return int((self._n - 1) // 2)

    def encrypt(self, value: int | float, *, frac_bits: int | None = None) -> EncryptedNumber:
        """Encrypt an int, or a float in fixed point, with fresh CSPRNG randomness.

        ``frac_bits`` defaults to 0 for an ``int`` and to ``DEFAULT_FRAC_BITS`` (16) for a float.
        """
        m, frac_bits = encode_value(value, frac_bits, self.max_int)
        c = g_pow(m, self._n, self._nsquare) * self._random_rn() % self._nsquare
        return EncryptedNumber._trusted(self, c, frac_bits)

    def _random_rn(self) -> Any:
        """``r^n mod n^2`` for a fresh random unit ``r``: the costly part of encryption."""
        return gmpy2.powmod(random_unit(self._n), self._n, self._nsquare)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and self._n == other._n

    def __hash__(self) -> int:
        return hash(("PaillierPublicKey", int(self._n)))

    def __repr__(self) -> str:
        return f"PaillierPublicKey(bits={self.bits}, n={short_hex(self.n)})"


class EncryptedNumber:
    """A Paillier ciphertext ``c`` of a fixed-point number ``m / 2**frac_bits``.

    Supports ``+`` and ``-`` with ciphertexts or plaintext numbers, ``*`` by a plaintext
    number (a float scalar is encoded with 16 fractional bits, which add to ``frac_bits``)
    and unary ``-``. Multiplying two ciphertexts is impossible in Paillier (``TypeError``).
    Constructing one from a received integer validates ``0 < c < n^2``, ``gcd(c, n) = 1``
    and ``0 <= frac_bits <= bits of n`` (``ValueError`` naming the parameter otherwise).
    """

    __slots__ = ("_key", "_c", "_frac_bits")

    def __init__(self, public_key: PaillierPublicKey, ciphertext: int, *,
                 frac_bits: int = 0) -> None:
        if not isinstance(public_key, PaillierPublicKey):
            raise TypeError(f"`public_key` must be a PaillierPublicKey, "
                            f"got {type(public_key).__name__}")
        c = gmpy2.mpz(require_int("ciphertext", as_int(ciphertext)))
        if not (0 < c < public_key._nsquare and gmpy2.gcd(c, public_key._n) == 1):
            raise ValueError("`ciphertext` must satisfy 0 < c < n**2 and gcd(c, n) = 1, "
                             f"got c = {short_hex(int(c))}")
        # More fractional bits than n has would only cost time (2**frac_bits is computed).
        self._frac_bits = require_int("frac_bits", frac_bits, minimum=0,
                                      maximum=public_key.bits)
        self._key, self._c = public_key, c

    @classmethod
    def _trusted(cls, public_key: PaillierPublicKey, c: Any, frac_bits: int) -> EncryptedNumber:
        obj = cls.__new__(cls)  # skip validation: c was computed here, not received
        obj._key, obj._c, obj._frac_bits = public_key, c, frac_bits
        return obj

    @property
    def public_key(self) -> PaillierPublicKey:
        return self._key

    @property
    def ciphertext(self) -> int:
        """The ciphertext ``c`` as an int in ``(0, n^2)`` (what goes over the wire)."""
        return int(self._c)

    @property
    def frac_bits(self) -> int:
        """Fractional bits of the plaintext encoding (0 for integers)."""
        return self._frac_bits

    def _scaled_to(self, frac_bits: int) -> EncryptedNumber:
        """The same value with more fractional bits: ``E(m)^(2^d) = E(m * 2^d)``."""
        shift = frac_bits - self._frac_bits
        c = gmpy2.powmod(self._c, 2**shift, self._key._nsquare) if shift else self._c
        return EncryptedNumber._trusted(self._key, c, frac_bits)

    def __add__(self, other: Any) -> EncryptedNumber:
        if not isinstance(other, EncryptedNumber):
            other = _encrypt_plain_trivially(self._key, other, self._frac_bits)
        elif other._key != self._key:
            raise ValueError("cannot add ciphertexts under different public keys")
        frac_bits = max(self._frac_bits, other._frac_bits)
        a, b = self._scaled_to(frac_bits), other._scaled_to(frac_bits)
        return EncryptedNumber._trusted(self._key, a._c * b._c % self._key._nsquare, frac_bits)

    __radd__ = __add__

    def __neg__(self) -> EncryptedNumber:
        return self * -1

    def __sub__(self, other: Any) -> EncryptedNumber:
        return self + (-other)

    def __rsub__(self, other: Any) -> EncryptedNumber:
        return (-self) + other

    def __mul__(self, scalar: Any) -> EncryptedNumber:
        if isinstance(scalar, EncryptedNumber):
            raise TypeError("Paillier cannot multiply two ciphertexts (it is only additively "
                            "homomorphic); multiply by a plaintext number instead")
        k, k_bits = encode_scalar(scalar)
        c = gmpy2.powmod(self._c, k, self._key._nsquare)  # negative k: inverse first (gmpy2)
        return EncryptedNumber._trusted(self._key, c, self._frac_bits + k_bits)

    __rmul__ = __mul__

    def rerandomize(self) -> EncryptedNumber:
        """The same plaintext under fresh randomness: ``c * r^n mod n^2``.

        Do this before sending back a result computed from secret values, so the ciphertext
        reveals nothing about how it was computed.
        """
        return EncryptedNumber._trusted(self._key, self._c * self._key._random_rn()
                                        % self._key._nsquare, self._frac_bits)

    def __repr__(self) -> str:
        return (f"EncryptedNumber(bits={self._key.bits}, frac_bits={self._frac_bits}, "
                f"c={short_hex(int(self._c))})")


def _check_prime(name: str, value: Any) -> Any:
    value = gmpy2.mpz(require_int(name, as_int(value), minimum=3))
    if not gmpy2.is_prime(value, _PRIME_ROUNDS):
        # The value is key material: say what is wrong, not what it is.
        raise ValueError(f"`{name}` must be prime, got a {value.bit_length()}-bit composite "
                         "number (value not shown: it is key material)")
    return value


class PaillierPrivateKey:
    """The factors ``p, q`` of ``n``: decrypts (with CRT) and encrypts about twice as fast.

    ``p`` and ``q`` must be two different primes with ``p * q == n`` and
    ``gcd(n, (p-1)(q-1)) == 1``; anything else raises ``ValueError`` naming the parameter.
    ``repr`` never shows ``p`` or ``q``; :meth:`export` returns ``(n, p, q)`` on purpose.
    """

    __slots__ = ("_public", "_crt")

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        if not isinstance(public_key, PaillierPublicKey):
            raise TypeError(f"`public_key` must be a PaillierPublicKey, "
                            f"got {type(public_key).__name__}")
        p = gmpy2.mpz(require_int("p", as_int(p), minimum=3))
        q = gmpy2.mpz(require_int("q", as_int(q), minimum=3))
        if p == q or p * q != public_key._n:
            raise ValueError("`p` and `q` must be two different primes with p * q == n")
        p, q = _check_prime("p", p), _check_prime("q", q)
        if gmpy2.gcd(public_key._n, (p - 1) * (q - 1)) != 1:
            raise ValueError("`p` and `q` must satisfy gcd(p*q, (p-1)*(q-1)) == 1")
        self._public, self._crt = public_key, CRTKey(p=p, q=q, n=public_key._n)

    @property
    def public_key(self) -> PaillierPublicKey:
        return self._public

    def export(self) -> tuple[int, int, int]:
        """Key material ``(n, p, q)`` as plain ints, e.g. to build ``phe`` keys for interop.

        (phe reads residues above ``n/3``, not ``n/2``, as negative; the two agree for every
        value below ``n/3`` in magnitude, i.e. for anything but deliberately huge numbers.)
        """
        return self._public.n, int(self._crt.p), int(self._crt.q)

    def decrypt(self, ciphertext: EncryptedNumber) -> int | float:
        """Decrypt to an ``int`` (``frac_bits == 0``) or a ``float`` (``m / 2**frac_bits``).

        Raises :class:`~course_lib.errors.DecryptionError` if the ciphertext belongs to another
        key, or if its value is too large for a float (use :meth:`decrypt_raw` for those).
        Paillier has no integrity check: a modified ciphertext decrypts to a wrong number.
        """
        m = self.decrypt_raw(ciphertext)
        if ciphertext.frac_bits == 0:
            return m
        try:
            return m / 2**ciphertext.frac_bits  # int / int: correctly rounded
        except OverflowError:  # |m| / 2**frac_bits above float's 1.8e308
            raise DecryptionError() from None

    def decrypt_raw(self, ciphertext: EncryptedNumber) -> int:
        """The signed integer ``m`` in ``[-max_int, max_int]``, before fixed-point scaling."""
        if not isinstance(ciphertext, EncryptedNumber) or ciphertext.public_key != self._public:
            raise DecryptionError()
        return to_signed(self._crt.decrypt(ciphertext._c), self._public._n)

    def encrypt(self, value: int | float, *, frac_bits: int | None = None) -> EncryptedNumber:
        """Encrypt like :meth:`PaillierPublicKey.encrypt`, computing ``r^n`` by CRT (faster).

        For the key owner, e.g. a client encrypting its own inputs. The ciphertext has exactly
        the same distribution as one made with the public key.
        """
        pub = self._public
        m, frac_bits = encode_value(value, frac_bits, pub.max_int)
        rn = self._crt.r_pow_n(random_unit(pub._n))
        return EncryptedNumber._trusted(pub, g_pow(m, pub._n, pub._nsquare) * rn % pub._nsquare,
                                        frac_bits)

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(bits={self._public.bits}, n={short_hex(self._public.n)})"


def _encrypt_plain_trivially(key: PaillierPublicKey, value: Any, frac_bits: int) -> EncryptedNumber:
    """``g^m`` with r = 1: only ever *added* to a random ciphertext, so the sum stays random."""
    if frac_bits == 0 and not isinstance(value, numbers.Integral):
        frac_bits = DEFAULT_FRAC_BITS
    m, frac_bits = encode_value(value, frac_bits, key.max_int)
    return EncryptedNumber._trusted(key, g_pow(m, key._n, key._nsquare), frac_bits)
