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
- **Signatures.** Ed25519 (pyca/cryptography) in the active model: every client has a long-term
  signing key, and a :class:`Directory` (the PKI that Bonawitz et al. assume) gives every
  party each client's verification key before any round. Every signed statement starts with
  a label and the round's session id (:func:`statement`), so a signature made for one round
  or one session verifies for no other.
- **Shares** are evaluated at ``x = holder id + 1``, so that every secret's shares held by
  the same responders reuse one set of Lagrange coefficients (see :class:`LagrangeCache`).

All secret randomness comes from ``_RANDOM`` (the OS CSPRNG). Tests may replace it with a
seeded ``random.Random`` to make a run reproducible; the library never does.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from course_lib.crypto.secret_sharing import PRIME

__all__ = ["PRIME", "FIELD_BYTES", "kdf", "prg", "self_mask", "random_field_element",
           "new_private_key", "mask_private_key", "public_bytes", "agree", "shamir_share_at",
           "LagrangeCache", "SIGNATURE_BYTES", "new_session_id", "new_signing_key", "Directory",
           "make_identities", "statement", "sign"]

_RANDOM: random.Random = secrets.SystemRandom()  # test seam: swap for random.Random(seed)
FIELD_BYTES = 16  # a field element < 2**127 in 16 bytes
_ZERO_COUNTER = bytes(16)
SIGNATURE_BYTES = 64  # Ed25519


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


# -- signatures: the active (malicious-server) model -------------------------------------------

def new_session_id() -> bytes:
    """16 fresh bytes naming one round of the protocol (public; bound into every signature)."""
    return _RANDOM.randbytes(16)


def new_signing_key() -> Ed25519PrivateKey:
    """A client's long-term Ed25519 signing key (from ``_RANDOM``, like every other key)."""
    return Ed25519PrivateKey.from_private_bytes(_RANDOM.randbytes(32))


def statement(label: bytes, session: bytes, *ids: int | Iterable[int], data: bytes = b"") -> bytes:
    """The exact bytes a client signs: ``label``, the session id, integers or sets of client
    ids (each set as its sorted length-prefixed list, hashed), then raw ``data``.

    Two statements are equal only if every part is, so a signature cannot be moved to another
    label (round), session, client or set.
    """
    parts = [b"course_lib.secagg/", label, b"\0", struct.pack(">I", len(session)), session]
    for item in ids:
        if isinstance(item, int):
            parts.append(struct.pack(">BI", 0, item))
        else:
            members = sorted(int(v) for v in item)
            digest = hashlib.sha256(struct.pack(f">I{len(members)}I", len(members), *members))
            parts.append(b"\1" + digest.digest())
    parts.append(data)
    return b"".join(parts)


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature of ``message``."""
    return key.sign(message)


@dataclass(frozen=True, repr=False)
class Directory:
    """The public-key directory (PKI): client id -> 32-byte Ed25519 verification key.

    Handed to every client and the server at set-up, before any round, by a party the clients
    trust (Bonawitz et al. assume such a PKI; without it a server could invent clients, or
    replace a client's advertised keys with its own and read the shares meant for it).
    """

    keys: Mapping[int, bytes]

    def verify(self, client: int, signature: object, message: bytes) -> bool:
        """Whether ``signature`` is ``client``'s signature of ``message`` (never raises for a
        malformed signature or an unknown client: it is simply not valid)."""
        key = self.keys.get(client) if isinstance(client, int) else None
        if key is None or not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Directory(clients={len(self.keys)})"


def make_identities(num_clients: int) -> tuple[list[Ed25519PrivateKey], Directory]:
    """Long-term signing keys for clients ``0 .. n-1`` and the directory of their public keys."""
    keys = [new_signing_key() for _ in range(num_clients)]
    return keys, Directory({u: k.public_key().public_bytes_raw() for u, k in enumerate(keys)})
