"""The primitives of secure aggregation: key agreement -> seeds, the PRG, Shamir at chosen points.

- **Key agreement.** X25519 (pyca/cryptography). The raw shared secret goes through
  HKDF-SHA256 with a label, so one agreement never yields the same key for two purposes.
- **PRG.** AES-256-CTR keyed with a 32-byte seed, all-zero counter block: one call expands a
  seed into ``8 * dim`` bytes, read as ``dim`` uint64 words. Every seed is fresh in every
  round, so a key never encrypts twice from the same counter.
- **Secrets that are Shamir-shared** are field elements of GF(2**127 - 1), the field of
  :mod:`course_lib.crypto.secret_sharing`: the self-mask seed ``b_u`` and the *mask-key seed*
  from which the X25519 masking key ``s_u`` is derived (HKDF -> 32 private-key bytes).
  Bonawitz et al. share the 32-byte ``s_u^SK`` itself; sharing a 127-bit seed instead keeps
  one field element per secret, at X25519's own ~128-bit security level.
- **Shares** are evaluated at ``x = holder id + 1``, so that every secret's shares held by
  the same responders reuse one set of Lagrange coefficients (see :class:`LagrangeCache`).

All secret randomness comes from ``_RANDOM`` (the OS CSPRNG). Tests may replace it with a
seeded ``random.Random`` to make a run reproducible; the library never does.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from course_lib.crypto.secret_sharing import PRIME

__all__ = ["PRIME", "FIELD_BYTES", "kdf", "prg", "self_mask", "random_field_element",
           "new_private_key", "mask_private_key", "public_bytes", "agree", "shamir_share_at",
           "LagrangeCache"]

_RANDOM: random.Random = secrets.SystemRandom()  # test seam: swap for random.Random(seed)
FIELD_BYTES = 16  # a field element < 2**127 in 16 bytes
_ZERO_COUNTER = bytes(16)


def kdf(secret: bytes, label: bytes) -> bytes:
    """32 bytes from ``secret`` by HKDF-SHA256, domain-separated by ``label``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"course_lib.secure_agg/" + label).derive(secret)


def prg(seed: bytes, length: int) -> np.ndarray:
    """``length`` pseudorandom uint64 words: the AES-256-CTR keystream under ``seed``."""
    stream = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_COUNTER)).encryptor() \
        .update(bytes(8 * length))
    return np.frombuffer(stream, dtype=np.uint64)  # (length,), read-only view


def self_mask(seed: int, length: int) -> np.ndarray:
    """``PRG(b_u)``: the self-mask of a client from its (shared) seed ``b_u``."""
    return prg(kdf(seed.to_bytes(FIELD_BYTES, "big"), b"self mask"), length)


def random_field_element() -> int:
    """A uniform element of GF(2**127 - 1) from the CSPRNG."""
    return _RANDOM.randrange(PRIME)


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 key (from ``_RANDOM``, so that seeded tests are reproducible)."""
    return X25519PrivateKey.from_private_bytes(_RANDOM.randbytes(32))


def mask_private_key(seed: int) -> X25519PrivateKey:
    """The masking key ``s_u`` derived from its (shared) seed: whoever rebuilds the seed from
    ``t`` shares rebuilds the key, and with it every pairwise mask of that client."""
    return X25519PrivateKey.from_private_bytes(kdf(seed.to_bytes(FIELD_BYTES, "big"),
                                                   b"mask key"))


def public_bytes(private: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of the public key that goes with ``private``."""
    return private.public_key().public_bytes_raw()


def agree(private: X25519PrivateKey, peer_public: bytes, label: bytes) -> bytes:
    """A 32-byte key shared by two clients: HKDF(X25519(private, peer), label)."""
    return kdf(private.exchange(X25519PublicKey.from_public_bytes(peer_public)), label)


def shamir_share_at(secret: int, xs: Sequence[int], threshold: int) -> list[int]:
    """Shares ``f(x)``, ``x`` in ``xs``, of a random ``f``: degree ``t - 1``, ``f(0) = secret``.

    Horner's rule as in :func:`course_lib.crypto.secret_sharing.shamir_share`, but at the
    given points (holder ``v`` gets ``x = v + 1``) and for all of them at once.
    """
    coeffs = [random_field_element() for _ in range(threshold - 1)]  # a_1 .. a_(t-1)
    x = np.array(list(xs), dtype=object)  # (holders,) Python ints: no overflow
    y = np.zeros(len(x), dtype=object)
    for i, a in enumerate(reversed(coeffs)):  # f(x) = secret + x (a_1 + x (a_2 + ...))
        y = (y + a) * x
        if i % 8 == 7:  # x < 2**17: eight steps without reduction stay below 2**263
            y %= PRIME
    return [int(v) for v in (y + secret) % PRIME]


class LagrangeCache:
    """Lagrange coefficients at 0 for sets of x-coordinates, computed once per set.

    ``f(0) = sum_j y_j * lambda_j`` with ``lambda_j = prod_{m != j} x_m / (x_m - x_j)``. In
    the complete graph every client's shares come from the same responders, so one
    ``O(t^2)`` computation serves all ``n`` reconstructions, each then ``t`` multiplications.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, ...], list[int]] = {}

    def coefficients(self, xs: tuple[int, ...]) -> list[int]:
        if xs not in self._cache:
            lambdas = []
            for j, xj in enumerate(xs):
                num, den = 1, 1
                for m, xm in enumerate(xs):
                    if m != j:
                        num = num * xm % PRIME
                        den = den * (xm - xj) % PRIME
                lambdas.append(num * pow(den, -1, PRIME) % PRIME)
            self._cache[xs] = lambdas
        return self._cache[xs]

    def reconstruct(self, points: Sequence[tuple[int, int]]) -> int:
        """``f(0)`` from exactly ``t`` points ``(x, y)`` (any ``t`` of them give the same)."""
        lambdas = self.coefficients(tuple(x for x, _ in points))
        return sum(lam * y for lam, (_, y) in zip(lambdas, points)) % PRIME
