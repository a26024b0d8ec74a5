"""Paillier encryption: add numbers you cannot see (a teaching implementation, checked against phe).

Paillier (1999) is *additively homomorphic*. With public key ``n = p*q`` and ``g = n + 1``::

    encrypt   c = g^m * r^n  mod n^2        (r random in [1, n) with gcd(r, n) = 1)
    decrypt   m = L(c^λ mod n^2) * μ mod n  (L(u) = (u - 1) / n; done here with CRT on p and q)
    add       E(a) * E(b)  = E(a + b)  mod n^2
    scale     E(a) ^ k     = E(k * a)  mod n^2

Because ``g = n + 1``, ``g^m = 1 + m*n (mod n^2)`` by the binomial theorem, so the only costly
step of encryption is ``r^n`` (one modular exponentiation with a 2048-bit exponent). Messages
live in ``Z_n``; negative integers use the usual convention that ``v > n/2`` means ``v - n``.
Reals are carried in fixed point (``frac_bits`` fractional bits, see ``EncryptedNumber``).

Security notes. Keys are at least 2048 bits (about 112-bit security); smaller keys exist only
through :func:`generate_keypair_unsafe_toy` and ``unsafe_allow_small=True``, which warn with
:class:`~course_lib.crypto.insecure.InsecureWarning`. Encryption randomness always comes from
the OS CSPRNG (``secrets``) and cannot be seeded, except in the warning
:func:`encrypt_with_randomness_unsafe` used for worked examples. Paillier ciphertexts are
*malleable by design* (that is the homomorphism) and carry no authentication: sign or
AEAD-wrap them in transit. Results computed from secret inputs should be
:meth:`~EncryptedNumber.rerandomize`-d before they are sent back.

Packing many small values into one plaintext (BatchCrypt-style) is in
:class:`PackingScheme`; see :mod:`course_lib.crypto._packing`.

Examples
--------
>>> from course_lib.crypto import paillier
>>> public_key, private_key = paillier.generate_keypair()
>>> a, b = public_key.encrypt(17), public_key.encrypt(-5)
>>> private_key.decrypt(a + b), private_key.decrypt(a * 3)
(12, 51)
>>> round(private_key.decrypt(public_key.encrypt(0.25) + 1.5), 4)
1.75
"""

from __future__ import annotations

import math
import numbers
import random
import secrets
import warnings
from typing import Any

import gmpy2

from course_lib._validation import require_int
from course_lib.crypto._packing import PackedCiphertext, PackingScheme, pack_slots, unpack_slots
from course_lib.crypto._paillier_math import (
    DEFAULT_FRAC_BITS,
    CRTKey,
    as_int,
    encode_scalar,
    encode_value,
    g_pow,
    generate_primes,
    random_unit,
    short_hex,
    to_signed,
)
from course_lib.crypto.insecure import InsecureWarning
from course_lib.errors import DecryptionError

__all__ = [
    "DEFAULT_KEY_BITS", "MIN_KEY_BITS", "DEFAULT_FRAC_BITS",
    "PaillierPublicKey", "PaillierPrivateKey", "EncryptedNumber",
    "generate_keypair", "generate_keypair_unsafe_toy", "keypair_from_primes",
    "encrypt_with_randomness_unsafe",
    "PackingScheme", "PackedCiphertext", "pack_slots", "unpack_slots",
]

DEFAULT_KEY_BITS = 2048
MIN_KEY_BITS = 2048


class PaillierPublicKey:
    """The public key ``n`` (with ``g = n + 1``): anyone holding it can encrypt and compute."""

    __slots__ = ("_n", "_nsquare")

    def __init__(self, n: int) -> None:
        self._n = gmpy2.mpz(require_int("n", as_int(n), minimum=15))
        self._nsquare = self._n * self._n

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
    Constructing one from a received integer validates ``0 < c < n^2`` and ``gcd(c, n) = 1``.
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
        self._key, self._c = public_key, c
        self._frac_bits = require_int("frac_bits", frac_bits, minimum=0)

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


class PaillierPrivateKey:
    """The factors ``p, q`` of ``n``: decrypts (with CRT) and encrypts about twice as fast.

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
        key. Paillier has no integrity check: a modified ciphertext decrypts to a wrong number.
        """
        m = self.decrypt_raw(ciphertext)
        return m if ciphertext.frac_bits == 0 else m / 2**ciphertext.frac_bits

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


def _keypair(p: Any, q: Any) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    public_key = PaillierPublicKey(p * q)
    return public_key, PaillierPrivateKey(public_key, p, q)


def generate_keypair(*, bits: int = DEFAULT_KEY_BITS
                     ) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Generate a key pair with an ``n`` of ``bits`` bits (at least 2048) from the OS CSPRNG."""
    require_int("bits", bits, minimum=MIN_KEY_BITS, maximum=8192)
    if bits % 2:
        raise ValueError(f"`bits` must be even, got {bits}")
    return _keypair(*generate_primes(bits, secrets.randbits))


def generate_keypair_unsafe_toy(bits: int = 128, *, seed: int | None = None
                                ) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """INSECURE (warns): a small key (16 to 2046 bits) for worked examples and fast tests.

    ``seed`` makes the *key* reproducible for a demonstration (anyone who knows the seed has
    the private key). Encryption randomness is still drawn from the OS CSPRNG.
    """
    warnings.warn(f"a {bits}-bit Paillier key is insecure and shown for teaching only; "
                  "never use it to protect data", InsecureWarning, stacklevel=2)
    require_int("bits", bits, minimum=16, maximum=MIN_KEY_BITS - 2)
    if bits % 2:
        raise ValueError(f"`bits` must be even, got {bits}")
    randbits = secrets.randbits if seed is None else random.Random(seed).getrandbits
    return _keypair(*generate_primes(bits, randbits))


def keypair_from_primes(p: int, q: int, *, unsafe_allow_small: bool = False
                        ) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Rebuild a key pair from its primes (interop, or toy numbers like p=11, q=13 by hand).

    ``n`` below 2048 bits is refused unless ``unsafe_allow_small=True``, which warns.
    """
    for name, value in (("p", p), ("q", q)):
        require_int(name, value, minimum=3)
        if not gmpy2.is_prime(value, 50):
            raise ValueError(f"`{name}` must be prime, got {value}")
    n = p * q
    if math.gcd(n, (p - 1) * (q - 1)) != 1:
        raise ValueError(f"gcd(p*q, (p-1)*(q-1)) must be 1, got primes {p} and {q}")
    if n.bit_length() < MIN_KEY_BITS:
        if not unsafe_allow_small:
            raise ValueError(f"p*q must have at least {MIN_KEY_BITS} bits, got "
                             f"{n.bit_length()} (pass unsafe_allow_small=True for a toy key)")
        warnings.warn(f"a {n.bit_length()}-bit Paillier key is insecure and shown for teaching "
                      "only; never use it to protect data", InsecureWarning, stacklevel=2)
    return _keypair(p, q)


def encrypt_with_randomness_unsafe(public_key: PaillierPublicKey, value: int, *,
                                   r: int) -> EncryptedNumber:
    """INSECURE (warns): ``c = g^m * r^n mod n^2`` with a caller-chosen ``r``, for worked
    examples and known-answer tests. Reusing or predicting ``r`` breaks semantic security."""
    warnings.warn("Paillier encryption with caller-chosen randomness is insecure and shown for "
                  "teaching only", InsecureWarning, stacklevel=2)
    m, _ = encode_value(require_int("value", value), 0, public_key.max_int)
    r = require_int("r", r, minimum=1, maximum=public_key.n - 1)
    if math.gcd(r, public_key.n) != 1:
        raise ValueError(f"`r` must be coprime to n, got r = {r}")
    n, nsquare = public_key._n, public_key._nsquare
    return EncryptedNumber._trusted(public_key, g_pow(m, n, nsquare) * gmpy2.powmod(r, n, nsquare)
                                    % nsquare, 0)
