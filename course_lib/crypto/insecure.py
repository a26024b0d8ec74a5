"""INSECURE teaching demonstrations: textbook RSA with toy primes, AES-ECB, GCM nonce reuse.

Everything here exists so that chapter 3.1 can show *why* the safe recipes look the way they
do. Each function issues an :class:`InsecureWarning` on *every* call (not once per line of
code, which is what :func:`warnings.warn` does by default), the number-theory helpers and
``xor_bytes`` included. Silence it on purpose with
``warnings.filterwarnings("ignore", category=InsecureWarning)``. Never use this module to
protect anything: use :mod:`course_lib.crypto.symmetric` and :mod:`course_lib.crypto.asymmetric`.

What goes wrong, in one line each:

- textbook RSA (``c = m^e mod n``, no padding) is deterministic, so an attacker can test
  guesses, and malleable: ``E(m1)·E(m2) = E(m1·m2) mod n``. Toy primes are factored at once.
- ECB encrypts equal 16-byte blocks to equal ciphertext blocks, so patterns show through.
- Reusing a GCM nonce with the same key gives the same keystream: ``c1 XOR c2 = m1 XOR m2``,
  and it also leaks GCM's authentication key, allowing forgeries.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from course_lib._validation import require_bytes, require_int
from course_lib.crypto import symmetric

__all__ = [
    "InsecureWarning", "ToyRSAKey", "is_prime", "extended_gcd", "modular_inverse",
    "toy_rsa_keygen", "toy_rsa_encrypt", "toy_rsa_decrypt", "textbook_rsa_encrypt_unsafe",
    "aes_ecb_encrypt_unsafe", "aes_gcm_encrypt_with_nonce_unsafe", "xor_bytes", "warn_insecure",
]


class InsecureWarning(UserWarning):
    """Issued by every function of :mod:`course_lib.crypto.insecure`."""


def warn_insecure(message: str, *, stacklevel: int = 2) -> None:
    """Issue an :class:`InsecureWarning` with ``message``, on every call.

    :func:`warnings.warn` records in the calling module's ``__warningregistry__`` that a line
    has warned, and under Python's default filter stays silent at that line afterwards: a loop,
    or a notebook cell run twice, would warn once. This passes no registry, so every call
    warns; the user's own filters (``"ignore"``, ``"error"``, ``"once"``) still
    apply. ``stacklevel`` means what it means for :func:`warnings.warn` (2: the caller of the
    function that calls this one).
    """
    if not isinstance(message, str):
        raise TypeError(f"`message` must be a str, got {type(message).__name__}")
    require_int("stacklevel", stacklevel, minimum=1)
    try:
        frame = sys._getframe(stacklevel)
    except ValueError:  # fewer frames than asked for: blame the interpreter, as warnings does
        module, filename, lineno = "sys", "sys", 1
    else:
        module = frame.f_globals.get("__name__", "<string>")
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
    # registry=None: no per-line memory ("default" shows every time; "once" still dedups)
    warnings.warn_explicit(message, InsecureWarning, filename, lineno, module=module,
                           registry=None)


def _warn(what: str) -> None:
    # stacklevel 3: past _warn and the public function, to the learner's line
    warn_insecure(f"{what} is insecure and shown for teaching only; never use it to protect "
                  "data", stacklevel=3)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    if n in small:
        return True
    if any(n % p == 0 for p in small):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin primality test, exact for every n < 3.3 * 10**24.

    A teaching version (warns): for real keys use ``gmpy2.is_prime`` or the library's keys.
    """
    _warn("a hand-written primality test")
    return _is_prime(require_int("n", n))


def _extended_gcd(a: int, b: int) -> tuple[int, int, int]:
    old_r, r = a, b
    old_x, x = 1, 0
    old_y, y = 0, 1
    while r != 0:
        q = old_r // r
        old_r, r = r, old_r - q * r
        old_x, x = x, old_x - q * x
        old_y, y = y, old_y - q * y
    return old_r, old_x, old_y


def extended_gcd(a: int, b: int) -> tuple[int, int, int]:
    """Return ``(g, x, y)`` with ``a*x + b*y == g == gcd(a, b)`` (extended Euclid; warns).

    Its running time depends on the inputs: fine on a blackboard, a timing leak on secrets.
    """
    _warn("a variable-time extended Euclid")
    return _extended_gcd(require_int("a", a), require_int("b", b))


def _modular_inverse(a: int, m: int) -> int:
    g, x, _ = _extended_gcd(a % m, m)
    if g != 1:
        raise ValueError(f"`a` must be coprime to `m`, got gcd({a}, {m}) = {g}")
    return x % m


def modular_inverse(a: int, m: int) -> int:
    """Return ``x`` with ``a*x ≡ 1 (mod m)``; ``ValueError`` if gcd(a, m) != 1 (warns)."""
    _warn("a variable-time modular inverse")
    require_int("a", a)
    return _modular_inverse(a, require_int("m", m, minimum=2))


@dataclass(frozen=True)
class ToyRSAKey:
    """A textbook RSA key pair with every intermediate value visible."""

    p: int
    q: int
    n: int
    phi: int
    e: int
    d: int

    def __repr__(self) -> str:
        return (f"ToyRSAKey(p={self.p}, q={self.q}, n={self.n}, phi={self.phi}, "
                f"e={self.e}, d={self.d})")


def toy_rsa_keygen(p: int, q: int, e: int = 17) -> ToyRSAKey:
    """Build textbook RSA from two primes: n = p·q, φ(n) = (p-1)(q-1), d = e⁻¹ mod φ(n).

    INSECURE (warns): toy primes are factored instantly and textbook RSA has no padding.
    """
    _warn("textbook RSA with toy primes")
    for name, value in (("p", p), ("q", q)):
        require_int(name, value, minimum=2)
        if not _is_prime(value):
            raise ValueError(f"`{name}` must be prime, got {value}")
    if p == q:
        raise ValueError(f"`p` and `q` must be different primes, got p = q = {p}")
    require_int("e", e, minimum=3)
    phi = (p - 1) * (q - 1)
    if math.gcd(e, phi) != 1:
        raise ValueError(f"`e` must be coprime to phi = (p-1)(q-1) = {phi}, got e = {e}")
    return ToyRSAKey(p=p, q=q, n=p * q, phi=phi, e=e, d=_modular_inverse(e, phi))


def toy_rsa_encrypt(m: int, n: int, e: int) -> int:
    """Textbook RSA encryption ``c = m^e mod n`` for an integer ``0 <= m < n`` (INSECURE, warns)."""
    _warn("textbook RSA")
    require_int("n", n, minimum=2)
    require_int("m", m, minimum=0, maximum=n - 1)
    require_int("e", e, minimum=1)
    return pow(m, e, n)


def toy_rsa_decrypt(c: int, n: int, d: int) -> int:
    """Textbook RSA decryption ``m = c^d mod n`` (INSECURE, warns)."""
    _warn("textbook RSA")
    require_int("n", n, minimum=2)
    require_int("c", c, minimum=0, maximum=n - 1)
    require_int("d", d, minimum=1)
    return pow(c, d, n)


def textbook_rsa_encrypt_unsafe(public_key: rsa.RSAPublicKey, m: int) -> int:
    """``m^e mod n`` with a *real* RSA public key but no padding: deterministic and malleable,
    to show that key size alone does not make RSA safe (INSECURE, warns)."""
    _warn("unpadded (textbook) RSA")
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TypeError(f"`public_key` must be an RSA public key, got {type(public_key).__name__}")
    numbers = public_key.public_numbers()
    require_int("m", m, minimum=0, maximum=numbers.n - 1)
    return pow(m, numbers.e, numbers.n)


def aes_ecb_encrypt_unsafe(key: bytes, plaintext: bytes) -> bytes:
    """AES in ECB mode with PKCS#7 padding: equal blocks give equal ciphertext (INSECURE, warns)."""
    _warn("AES-ECB")
    key = require_bytes("key", key)
    if len(key) not in (16, 24, 32):
        raise ValueError(f"`key` must be 16, 24 or 32 bytes, got {len(key)} bytes")
    plaintext = require_bytes("plaintext", plaintext)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(bytes(plaintext)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_gcm_encrypt_with_nonce_unsafe(key: bytes, nonce: bytes, plaintext: bytes,
                                      associated_data: bytes = b"") -> bytes:
    """AES-GCM with a caller-chosen nonce, in the recipe's token format (INSECURE, warns).

    The safe recipe never lets you choose the nonce; this exists to show what happens when
    the same (key, nonce) pair encrypts two messages.
    """
    _warn("AES-GCM with a caller-chosen nonce")
    key = require_bytes("key", key)
    if len(key) != symmetric.KEY_SIZE:
        raise ValueError(f"`key` must be {symmetric.KEY_SIZE} bytes, got {len(key)} bytes")
    nonce = require_bytes("nonce", nonce)
    if len(nonce) != symmetric.NONCE_SIZE:
        raise ValueError(f"`nonce` must be {symmetric.NONCE_SIZE} bytes, got {len(nonce)} bytes")
    plaintext = require_bytes("plaintext", plaintext)
    associated_data = require_bytes("associated_data", associated_data)
    sealed = AESGCM(bytes(key)).encrypt(bytes(nonce), plaintext, associated_data)
    return bytes([symmetric.VERSION]) + bytes(nonce) + sealed


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR two byte strings over the length of the shorter one (warns).

    The helper behind the nonce-reuse demonstration; a "one-time pad" built from it with a
    reused or short key is broken the same way.
    """
    _warn("XOR of byte strings (a one-time pad only if the key is random, secret and never "
          "reused)")
    a = require_bytes("a", a)
    b = require_bytes("b", b)
    return bytes(x ^ y for x, y in zip(a, b, strict=False))
