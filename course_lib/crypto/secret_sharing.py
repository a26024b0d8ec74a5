"""Secret sharing over a prime field: additive shares, Shamir's t-of-n, Beaver multiplication.

*Additive sharing* splits a secret ``s`` into random numbers that sum to it modulo a prime
``P``: ``s = s_0 + s_1 + ... (mod P)``. Every share but the last is uniformly random, and the
last is ``s`` minus their sum, so any proper subset of the shares is uniformly distributed
whatever ``s`` is: it reveals *nothing* (information-theoretically, not just "hard to break").
Sums are free: each party adds its shares locally.

*Shamir sharing* hides ``s`` as the constant term of a random polynomial ``f`` of degree
``t - 1`` and hands out points ``(i, f(i))``. Any ``t`` points determine ``f`` (Lagrange
interpolation) and so ``f(0) = s``; for any ``t - 1`` points *every* secret is equally likely,
because some polynomial through them passes through each candidate ``(0, s')``.

*Beaver triples* (Beaver 1991) let two parties multiply shared values: see
:func:`beaver_product`. :func:`pairwise_mask` is the one-line core of secure aggregation.

Reals use fixed point: :func:`encode_fixed` maps ``x`` to ``round(x * 2**frac_bits) mod P``
(negatives wrap to the top half of the field). The default field is ``P = 2**127 - 1``, a
Mersenne prime large enough for a product of two 16-bit fixed-point numbers summed many times.

Randomness. Shares come from the OS CSPRNG (``secrets``). Functions that draw randomness also
take ``unsafe_seed``: an int makes the run reproducible *for demonstrations only*; anyone who
knows the seed can recompute every share, so the secret is then not protected at all.

Examples
--------
>>> from course_lib.crypto import secret_sharing as ss
>>> shares = ss.share_additive(ss.encode_fixed([0.5, -2.25]), num_shares=3)
>>> ss.decode_fixed(ss.reconstruct_additive(shares)).tolist()
[0.5, -2.25]
>>> points = ss.shamir_share(42, threshold=3, num_shares=5)
>>> ss.shamir_reconstruct(points[1:4])
42
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from course_lib._validation import require_bytes, require_int
from course_lib.crypto._beaver import BeaverTriple, beaver_product, make_beaver_triples
from course_lib.crypto._field import (
    DEFAULT_FRAC_BITS,
    PRIME,
    check_prime,
    decode_fixed,
    encode_fixed,
    field_mod,
    random_field_elements,
)
from course_lib.crypto.fixed_point import quantize

__all__ = [
    "PRIME", "DEFAULT_FRAC_BITS", "random_field_elements", "encode_fixed", "decode_fixed",
    "share_additive", "reconstruct_additive", "shamir_share", "shamir_reconstruct",
    "lagrange_interpolate", "BeaverTriple", "make_beaver_triples", "beaver_product",
    "encode_ring", "decode_ring", "pairwise_mask",
]


def share_additive(secret: Any, *, num_shares: int = 2, prime: int = PRIME,
                   unsafe_seed: int | None = None) -> list[np.ndarray]:
    """Split field elements (any shape) into ``num_shares`` arrays summing to them mod ``prime``."""
    prime = check_prime(prime)
    require_int("num_shares", num_shares, minimum=2)
    secret = field_mod(secret, prime)
    rng_seeds = [None] * num_shares if unsafe_seed is None else \
        [unsafe_seed * 1_000_003 + i for i in range(num_shares)]
    shares = [random_field_elements(secret.shape, prime=prime, unsafe_seed=rng_seeds[i])
              for i in range(num_shares - 1)]
    shares.append(field_mod(secret - sum(shares), prime))  # makes the sum come out right
    return shares


def reconstruct_additive(shares: Sequence[Any], *, prime: int = PRIME) -> np.ndarray:
    """Add all the shares modulo ``prime``; with one share missing the result is random."""
    prime = check_prime(prime)
    if len(shares) < 1:
        raise ValueError("`shares` must contain at least one share, got none")
    return field_mod(sum(np.asarray(s, dtype=object) for s in shares), prime)


def shamir_share(secret: int, *, threshold: int, num_shares: int, prime: int = PRIME,
                 unsafe_seed: int | None = None) -> list[tuple[int, int]]:
    """Points ``(i, f(i))`` for ``i = 1..num_shares`` of a random polynomial with ``f(0) = secret``.

    ``f`` has degree ``threshold - 1``: any ``threshold`` points reconstruct the secret.
    """
    prime = check_prime(prime)
    require_int("secret", secret, minimum=0, maximum=prime - 1)
    require_int("num_shares", num_shares, minimum=1, maximum=prime - 1)
    require_int("threshold", threshold, minimum=1, maximum=num_shares)
    coeffs = [secret, *random_field_elements(threshold - 1, prime=prime, unsafe_seed=unsafe_seed)]
    shares = []
    for x in range(1, num_shares + 1):
        y = 0
        for a in reversed(coeffs):  # Horner: f(x) = a_0 + x (a_1 + x (a_2 + ...))
            y = (y * x + int(a)) % prime
        shares.append((x, y))
    return shares


def lagrange_interpolate(points: Sequence[tuple[int, int]], x: int = 0, *,
                         prime: int = PRIME) -> int:
    """Value at ``x`` of the unique polynomial of degree < len(points) through ``points``."""
    prime = check_prime(prime)
    xs = [require_int("point x", int(px), minimum=0) % prime for px, _ in points]
    if len(set(xs)) != len(xs) or not xs:
        raise ValueError(f"`points` must have distinct x coordinates, got {xs}")
    total = 0
    for j, (xj, (_, yj)) in enumerate(zip(xs, points)):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:  # basis polynomial l_j(x) = prod (x - x_m) / (x_j - x_m)
                num = num * (x - xm) % prime
                den = den * (xj - xm) % prime
        total = (total + int(yj) * num * pow(den, -1, prime)) % prime
    return total


def shamir_reconstruct(shares: Sequence[tuple[int, int]], *, prime: int = PRIME) -> int:
    """``f(0)`` from the given points. With fewer than ``threshold`` points it is a *wrong*,
    random-looking number: nothing signals failure, and nothing about the secret leaks."""
    return lagrange_interpolate(shares, 0, prime=prime)


# --- pairwise masking over the ring Z_(2^64): the core of secure aggregation ----------------

def encode_ring(values: Any, *, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """``round(x * 2**frac_bits)`` as uint64 (two's complement), so sums wrap modulo 2**64."""
    return quantize(values, frac_bits=frac_bits).astype(np.int64).view(np.uint64)


def decode_ring(values: Any, *, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Inverse of :func:`encode_ring` for a (summed) uint64 array: back to float64."""
    return np.asarray(values, dtype=np.uint64).view(np.int64) / float(2**frac_bits)


def pairwise_mask(values: Any, *, client: int, pair_keys: Mapping[int, bytes]) -> np.ndarray:
    """Add ``PRG(k_ij)`` for every other client ``j > client`` and subtract it for ``j < client``.

    Each pair of clients shares a 32-byte key ``k_ij``; the PRG is AES-256-CTR. Summed over
    all clients every mask appears once with ``+`` and once with ``-`` and cancels, so the
    server learns the sum and nothing else. Use fresh keys for every round (a key reused on
    two different vectors leaks their difference). Key agreement and dropouts are the job of
    secure aggregation (``course_lib.secagg``); here the keys are given.

    Parameters
    ----------
    values : array of uint64
        This client's vector, e.g. from :func:`encode_ring`.
    client : int
        This client's id.
    pair_keys : mapping of int to bytes
        ``{other_client_id: 32-byte key shared with that client}``.
    """
    require_int("client", client, minimum=0)
    masked = np.array(values, dtype=np.uint64, copy=True)  # (length,)
    for other, key in pair_keys.items():
        key = require_bytes("pair_keys value", key)
        if len(key) != 32 or other == client:
            raise ValueError(f"`pair_keys` must map other client ids to 32-byte keys, got "
                             f"{other}: {len(key)} bytes")
        stream = Cipher(algorithms.AES(bytes(key)), modes.CTR(bytes(16))).encryptor() \
            .update(bytes(8 * masked.size))
        mask = np.frombuffer(stream, dtype=np.uint64).reshape(masked.shape)
        masked = masked + mask if client < other else masked - mask  # wraps modulo 2**64
    return masked
