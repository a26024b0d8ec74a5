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
:class:`PackingScheme`; see :mod:`course_lib.crypto._packing`. The key and ciphertext classes
are defined in :mod:`course_lib.crypto._paillier_keys` (below both this module and the
packing, so neither imports the other) and re-exported here: always import them from here.

Received values are checked: ``PaillierPublicKey(n)`` refuses an even, prime, square or
small ``n`` (small only with ``unsafe_allow_small=True``, which warns);
``PaillierPrivateKey`` checks that ``p`` and ``q`` are primes; ``EncryptedNumber`` checks the
ciphertext's range and ``frac_bits``. Decrypting raises only
:class:`~course_lib.errors.DecryptionError` (another key's ciphertext, a value too large for a
float, a packed slot out of range).

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
import random
import secrets
from typing import Any

import gmpy2

from course_lib._validation import require_int
from course_lib.crypto._packing import PackedCiphertext, PackingScheme, pack_slots, unpack_slots
from course_lib.crypto._paillier_keys import (
    MIN_KEY_BITS,
    EncryptedNumber,
    PaillierPrivateKey,
    PaillierPublicKey,
    require_flag,
)
from course_lib.crypto._paillier_math import DEFAULT_FRAC_BITS, encode_value, g_pow, generate_primes
from course_lib.crypto.insecure import warn_insecure

__all__ = [
    "DEFAULT_KEY_BITS", "MIN_KEY_BITS", "DEFAULT_FRAC_BITS",
    "PaillierPublicKey", "PaillierPrivateKey", "EncryptedNumber",
    "generate_keypair", "generate_keypair_unsafe_toy", "keypair_from_primes",
    "encrypt_with_randomness_unsafe",
    "PackingScheme", "PackedCiphertext", "pack_slots", "unpack_slots",
]

DEFAULT_KEY_BITS = 2048


def _keypair(p: Any, q: Any) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """The key pair of two checked primes (the caller has warned if the key is small)."""
    public_key = PaillierPublicKey._unchecked(p * q)
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
    warn_insecure(f"a {bits}-bit Paillier key is insecure and shown for teaching only; "
                  "never use it to protect data")
    require_int("bits", bits, minimum=16, maximum=MIN_KEY_BITS - 2)
    if bits % 2:
        raise ValueError(f"`bits` must be even, got {bits}")
    if seed is not None:
        require_int("seed", seed)
    randbits = secrets.randbits if seed is None else random.Random(seed).getrandbits
    return _keypair(*generate_primes(bits, randbits))


def keypair_from_primes(p: int, q: int, *, unsafe_allow_small: bool = False
                        ) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Rebuild a key pair from its primes (interop, or toy numbers like p=11, q=13 by hand).

    ``n`` below 2048 bits is refused unless ``unsafe_allow_small=True``, which warns.
    """
    require_flag("unsafe_allow_small", unsafe_allow_small)
    for name, value in (("p", p), ("q", q)):
        require_int(name, value, minimum=3)
        if not gmpy2.is_prime(value, 50):
            raise ValueError(f"`{name}` must be prime, got a {value.bit_length()}-bit "
                             "composite number")
    if p == q:
        raise ValueError("`p` and `q` must be two different primes, got p == q")
    n = p * q
    if math.gcd(n, (p - 1) * (q - 1)) != 1:
        raise ValueError("`p` and `q` must satisfy gcd(p*q, (p-1)*(q-1)) == 1")
    if n.bit_length() < MIN_KEY_BITS:
        if not unsafe_allow_small:
            raise ValueError(f"p*q must have at least {MIN_KEY_BITS} bits, got "
                             f"{n.bit_length()} (pass unsafe_allow_small=True for a toy key)")
        warn_insecure(f"a {n.bit_length()}-bit Paillier key is insecure and shown for teaching "
                      "only; never use it to protect data")
    return _keypair(p, q)


def encrypt_with_randomness_unsafe(public_key: PaillierPublicKey, value: int, *,
                                   r: int) -> EncryptedNumber:
    """INSECURE (warns): ``c = g^m * r^n mod n^2`` with a caller-chosen ``r``, for worked
    examples and known-answer tests. Reusing or predicting ``r`` breaks semantic security."""
    warn_insecure("Paillier encryption with caller-chosen randomness is insecure and shown for "
                  "teaching only")
    if not isinstance(public_key, PaillierPublicKey):
        raise TypeError(f"`public_key` must be a PaillierPublicKey, "
                        f"got {type(public_key).__name__}")
    m, _ = encode_value(require_int("value", value), 0, public_key.max_int)
    r = require_int("r", r, minimum=1, maximum=public_key.n - 1)
    if math.gcd(r, public_key.n) != 1:
        raise ValueError(f"`r` must be coprime to n, got r = {r}")
    n, nsquare = public_key._n, public_key._nsquare
    return EncryptedNumber._trusted(public_key, g_pow(m, n, nsquare) * gmpy2.powmod(r, n, nsquare)
                                    % nsquare, 0)
