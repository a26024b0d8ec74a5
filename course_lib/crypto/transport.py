"""Post-quantum transport of a model update: HPKE with the hybrid KEM ML-KEM-768 + X25519.

RSA-OAEP (chapter 4.1's hybrid encryption) falls to a large quantum computer running Shor's
algorithm, and an eavesdropper can record model updates today and decrypt them later
("harvest now, decrypt later"). HPKE (Hybrid Public Key Encryption, RFC 9180) with a
post-quantum KEM closes that gap. The KEM here combines two key agreements:

- ML-KEM-768 (FIPS 203, the standardised Kyber): believed secure against quantum computers;
- X25519 (elliptic-curve Diffie-Hellman): long studied, secure against classical computers.

The shared secret depends on both, so the channel stays secure as long as *either* holds.
HPKE then derives an AES-256-GCM key from it (HKDF-SHA256) and encrypts the payload; a fresh
encapsulation is made for every message, as RSA hybrid encryption draws a fresh AES key.

This module is a thin recipe over pyca/cryptography's ``hazmat.primitives.hpke`` (>= 47):
the caller gives a key and bytes, never a nonce or a mode, and every failure raises the one
:class:`~course_lib.errors.DecryptionError`.

Blob format (version 1), lengths in bytes::

    offset   length  field
    0        1       version, always 0x01
    1        1120    KEM encapsulation: ML-KEM-768 ciphertext (1088) and X25519 share (32)
    1121     n + 16  AES-256-GCM ciphertext of the n-byte plaintext, then its 16-byte tag

The single-shot HPKE interface takes no per-message associated data; RFC 9180 (section 8.1)
says single-shot users should bind context through ``info``. So ``info`` and
``associated_data`` are both bound there, unambiguously:
``b"course_lib/transport/v1" || len(info) as 4 bytes || info || associated_data``. Neither is
stored in the blob: the receiver must pass the same bytes.

Sizes: the public key is 1,216 bytes (1,184 + 32) against 422 for an RSA-3072 key
(DER SubjectPublicKeyInfo), and each message carries 1,137 bytes of overhead against 1 + 2
+ 384 + 29 = 416 for the RSA-3072 hybrid; :func:`compare_with_rsa` measures both, with
timings, in one run.

Examples
--------
>>> from course_lib.crypto import transport
>>> private_key, public_key = transport.generate_hpke_keypair()
>>> blob = transport.seal_for(public_key, b"update from client 7", info=b"round 3")
>>> len(blob) - len(b"update from client 7") == transport.OVERHEAD
True
>>> transport.open_with(private_key, blob, info=b"round 3")
b'update from client 7'
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from course_lib._validation import require_bytes, require_int
from course_lib.crypto import asymmetric, symmetric
from course_lib.errors import DecryptionError

__all__ = [
    "VERSION", "ENC_SIZE", "TAG_SIZE", "OVERHEAD", "PUBLIC_KEY_SIZE",
    "generate_hpke_keypair", "seal_for", "open_with", "parse_blob",
    "TransportCost", "compare_with_rsa",
]

VERSION = 0x01
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_LABEL = b"course_lib/transport/v1"
ENC_SIZE = hpke.KEM.MLKEM768_X25519.enc_length()  # 1120 = 1088 (ML-KEM-768) + 32 (X25519)
TAG_SIZE = 16
OVERHEAD = 1 + ENC_SIZE + TAG_SIZE  # 1137 bytes added to every message
PUBLIC_KEY_SIZE = 1184 + 32  # raw ML-KEM-768 encapsulation key + raw X25519 public key

PrivateKey = hpke.MLKEM768X25519PrivateKey
PublicKey = hpke.MLKEM768X25519PublicKey


def generate_hpke_keypair() -> tuple[PrivateKey, PublicKey]:
    """Return a fresh ``(private_key, public_key)`` for the ML-KEM-768 + X25519 KEM.

    The public key may be shared with every sender; keep the private key at the receiver.
    """
    private_key = PrivateKey(mlkem.MLKEM768PrivateKey.generate(),
                             x25519.X25519PrivateKey.generate())
    return private_key, private_key.public_key()


def _context(info: object, associated_data: object) -> bytes:
    info = bytes(require_bytes("info", info))
    associated_data = bytes(require_bytes("associated_data", associated_data))
    return _LABEL + len(info).to_bytes(4, "big") + info + associated_data


def seal_for(public_key: PublicKey, plaintext: bytes, *, info: bytes = b"",
             associated_data: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` (any size) so that only the holder of the private key can read it.

    Parameters
    ----------
    public_key : MLKEM768X25519PublicKey
        The receiver's public key, from :func:`generate_hpke_keypair`.
    plaintext : bytes
    info : bytes
        Context the receiver must repeat, e.g. ``b"fl-server/round=3"``.
    associated_data : bytes
        Further data authenticated but not encrypted (e.g. a client id).

    Returns
    -------
    bytes
        A version-1 blob, ``len(plaintext) + OVERHEAD`` bytes (see the module doc).
    """
    if isinstance(public_key, PrivateKey):
        raise TypeError("`public_key` must be an HPKE public key; pass private_key.public_key()")
    if not isinstance(public_key, PublicKey):
        raise TypeError(f"`public_key` must be an MLKEM768X25519PublicKey, "
                        f"got {type(public_key).__name__}")
    plaintext = require_bytes("plaintext", plaintext)
    sealed = _SUITE.encrypt(plaintext, public_key, info=_context(info, associated_data))
    return bytes([VERSION]) + sealed


def parse_blob(blob: bytes) -> tuple[int, bytes, bytes]:
    """Split a blob into ``(version, encapsulation, ciphertext_and_tag)``.

    Raises :class:`DecryptionError` if it is too short to hold them.
    """
    blob = bytes(require_bytes("blob", blob))
    if len(blob) < OVERHEAD:
        raise DecryptionError()
    return blob[0], blob[1:1 + ENC_SIZE], blob[1 + ENC_SIZE:]


def open_with(private_key: PrivateKey, blob: bytes, *, info: bytes = b"",
              associated_data: bytes = b"") -> bytes:
    """Decrypt a blob made by :func:`seal_for` with the same ``info`` and ``associated_data``.

    Every failure (wrong key, any modified, truncated or extended byte, different ``info`` or
    ``associated_data``, unknown version) raises :class:`DecryptionError` with one message.
    """
    if not isinstance(private_key, PrivateKey):
        raise TypeError(f"`private_key` must be an MLKEM768X25519PrivateKey, "
                        f"got {type(private_key).__name__}")
    context = _context(info, associated_data)
    blob = memoryview(symmetric._byte_view("blob", blob))  # count bytes; never copy an update
    if len(blob) < OVERHEAD or blob[0] != VERSION:
        raise DecryptionError()
    try:
        return _SUITE.decrypt(blob[1:], private_key, info=context)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None


@dataclass(frozen=True)
class TransportCost:
    """One scheme's costs for one payload, measured by :func:`compare_with_rsa`.

    Sizes are in bytes, times are medians in milliseconds.
    """

    scheme: str
    post_quantum: bool
    public_key_bytes: int
    overhead_bytes: int
    keygen_ms: float
    encrypt_ms: float
    decrypt_ms: float


def _interleaved_median_ms(functions: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median time of each function, calling them in turn within every repeat, so that a
    change in machine load affects all of them alike."""
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for fn, samples in zip(functions, times):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [1000 * statistics.median(samples) for samples in times]


def compare_with_rsa(plaintext: bytes, *, repeats: int = 20,
                     rsa_key_size: int = asymmetric.DEFAULT_KEY_SIZE) -> list[TransportCost]:
    """Measure HPKE and the RSA-OAEP hybrid side by side on the same ``plaintext``.

    Each scheme generates one key pair (timed once); then, ``repeats`` times, the four
    operations (HPKE seal and open, RSA hybrid encrypt and decrypt) run one after another, so
    that load on the machine affects all alike; medians are reported. Both round trips are
    checked. RSA key generation time varies a lot from key to key (a random prime search).

    Returns
    -------
    list of TransportCost
        ``[hpke_row, rsa_row]``.
    """
    plaintext = bytes(require_bytes("plaintext", plaintext))
    require_int("repeats", repeats, minimum=1, maximum=10_000)
    require_int("rsa_key_size", rsa_key_size, minimum=asymmetric.MIN_KEY_SIZE,
                maximum=asymmetric.MAX_KEY_SIZE)
    if rsa_key_size % 8:
        raise ValueError(f"`rsa_key_size` must be a multiple of 8 bits, got {rsa_key_size}")

    generate_hpke_keypair()  # warm-up: the first ML-KEM call in a process pays a set-up cost
    start = time.perf_counter()
    private_key, public_key = generate_hpke_keypair()
    hpke_keygen = 1000 * (time.perf_counter() - start)
    hpke_blob = seal_for(public_key, plaintext)
    start = time.perf_counter()
    rsa_key = asymmetric.generate_private_key(key_size=rsa_key_size)
    rsa_keygen = 1000 * (time.perf_counter() - start)
    rsa_public = rsa_key.public_key()
    rsa_blob = asymmetric.encrypt_for(rsa_public, plaintext)
    if open_with(private_key, hpke_blob) != plaintext or \
            asymmetric.decrypt_with(rsa_key, rsa_blob) != plaintext:  # pragma: no cover
        raise RuntimeError("round trip failed")
    hpke_enc, hpke_dec, rsa_enc, rsa_dec = _interleaved_median_ms([
        lambda: seal_for(public_key, plaintext), lambda: open_with(private_key, hpke_blob),
        lambda: asymmetric.encrypt_for(rsa_public, plaintext),
        lambda: asymmetric.decrypt_with(rsa_key, rsa_blob)], repeats)
    der = rsa_public.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return [
        TransportCost("HPKE ML-KEM-768+X25519 / AES-256-GCM", True, PUBLIC_KEY_SIZE,
                      len(hpke_blob) - len(plaintext), hpke_keygen, hpke_enc, hpke_dec),
        TransportCost(f"RSA-{rsa_key_size}-OAEP hybrid / AES-256-GCM", False, len(der),
                      len(rsa_blob) - len(plaintext), rsa_keygen, rsa_enc, rsa_dec),
    ]
