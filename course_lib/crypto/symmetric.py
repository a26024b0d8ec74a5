"""The AES recipe: authenticated symmetric encryption with AES-256-GCM.

This is the *recipe* layer (in pyca/cryptography's sense): the caller gives a key and data,
never a nonce, IV or mode. The library draws a fresh random nonce for every message and
carries it inside the token.

Token format (version 1), all lengths in bytes::

    offset  length  field
    0       1       version, always 0x01
    1       12      nonce (random, from os.urandom)
    13      n       AES-256-GCM ciphertext (same length as the plaintext)
    13+n    16      GCM authentication tag

The associated data (optional) is authenticated but neither encrypted nor stored: the
receiver must supply the same bytes. Any standard AES-GCM implementation can decrypt a token
from these parts (the test-suite does it with pycryptodome).

Why a random 96-bit nonce is safe here: a key must not see the same nonce twice. With random
nonces the chance of a repeat after 2**32 messages under one key is about 2**-33, which is
NIST SP 800-38D's limit; beyond that many messages, rotate the key.

Examples
--------
>>> from course_lib.crypto import symmetric
>>> key = symmetric.generate_key()
>>> token = symmetric.encrypt(key, b"patient record 17", associated_data=b"hospital-A")
>>> symmetric.decrypt(key, token, associated_data=b"hospital-A")
b'patient record 17'
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from course_lib._validation import require_bytes
from course_lib.errors import DecryptionError

__all__ = [
    "KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "VERSION", "OVERHEAD", "SALT_SIZE",
    "generate_key", "encrypt", "decrypt", "derive_key", "parse_token",
]

VERSION = 0x01
KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12  # 96 bits, the size GCM is designed for
TAG_SIZE = 16  # 128-bit tag
HEADER_SIZE = 1 + NONCE_SIZE
OVERHEAD = HEADER_SIZE + TAG_SIZE  # 29 bytes added to every message
SALT_SIZE = 16

# scrypt parameters: OWASP's recommended minimum (N=2**17, r=8, p=1) needs 128 MiB of
# memory per guess, which is what makes a password-guessing attack expensive.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1


def generate_key() -> bytes:
    """Return a fresh random 256-bit AES key (32 bytes from the operating system's CSPRNG)."""
    return os.urandom(KEY_SIZE)


def _byte_view(name: str, value: object) -> bytes | bytearray | memoryview:
    """``value`` with ``len`` and indices counting bytes: bytes and bytearray as they are, a
    memoryview as a flat view of bytes (format "B"), even one of 4-byte ints. A memoryview
    that is not contiguous raises ValueError; anything else not bytes-like, TypeError."""
    if isinstance(value, (bytes, bytearray)):  # the common case, and the fast one
        return value
    view = memoryview(require_bytes(name, value))
    if not view.c_contiguous:
        raise ValueError(f"`{name}` must be a contiguous bytes-like object, got a "
                         f"non-contiguous {type(value).__name__}")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _check_key(key: object) -> bytes | bytearray | memoryview:
    key = _byte_view("key", key)
    if len(key) != KEY_SIZE:
        raise ValueError(f"`key` must be {KEY_SIZE} bytes (AES-256), got {len(key)} bytes")
    return key


def _password_bytes(password: object) -> bytes:
    """A password as bytes: text is encoded as UTF-8 (the one place a str is accepted)."""
    if isinstance(password, str):
        return password.encode("utf-8")
    if not isinstance(password, (bytes, bytearray, memoryview)):
        raise TypeError(f"`password` must be str or bytes, got {type(password).__name__}")
    return bytes(_byte_view("password", password))


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    """Encrypt and authenticate ``plaintext``; return a version-1 token (see module doc).

    Parameters
    ----------
    key : bytes
        32 bytes, e.g. from :func:`generate_key` or :func:`derive_key`.
    plaintext : bytes
        Any length, including empty.
    associated_data : bytes, optional
        Context that is authenticated but not encrypted (a file name, a model's
        architecture, a client id). Decryption needs the same bytes.

    Returns
    -------
    bytes
        ``len(plaintext) + 29`` bytes.
    """
    key = _check_key(key)
    plaintext = _byte_view("plaintext", plaintext)
    associated_data = _byte_view("associated_data", associated_data)
    nonce = os.urandom(NONCE_SIZE)
    sealed = AESGCM(bytes(key)).encrypt(nonce, plaintext, associated_data)
    return bytes([VERSION]) + nonce + sealed


def parse_token(token: bytes) -> tuple[int, bytes, bytes, bytes]:
    """Split a token into ``(version, nonce, ciphertext, tag)`` for teaching and interop.

    Raises :class:`DecryptionError` if the token is too short to hold those parts.
    """
    token = _byte_view("token", token)
    if len(token) < OVERHEAD:
        raise DecryptionError()
    token = bytes(token)
    return token[0], token[1:HEADER_SIZE], token[HEADER_SIZE:-TAG_SIZE], token[-TAG_SIZE:]


def decrypt(key: bytes, token: bytes, associated_data: bytes = b"") -> bytes:
    """Check and decrypt a token made by :func:`encrypt`; return the plaintext.

    Raises
    ------
    DecryptionError
        For every failure: wrong key, wrong associated data, any modified, truncated or
        extended byte, an unknown version. The message is always the same.
    TypeError, ValueError
        Only for arguments of the wrong type or a key of the wrong length.
    """
    key = _check_key(key)
    view = _byte_view("token", token)  # lengths in bytes, whatever the caller's view format
    associated_data = _byte_view("associated_data", associated_data)
    if len(view) < OVERHEAD or view[0] != VERSION:
        raise DecryptionError()
    try:
        view = memoryview(view)  # slices without copies, also for bytes
        return AESGCM(bytes(key)).decrypt(view[1:HEADER_SIZE], view[HEADER_SIZE:],
                                          associated_data)
    except InvalidTag:
        raise DecryptionError() from None


def derive_key(password: str | bytes, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """Derive a 32-byte AES key from a password with scrypt, a memory-hard KDF.

    Parameters
    ----------
    password : str or bytes
        Text is encoded as UTF-8. An empty password is refused.
    salt : bytes, optional
        At least 16 bytes. ``None`` draws a fresh random 16-byte salt, the usual case when
        encrypting; pass the stored salt back in when decrypting.

    Returns
    -------
    (key, salt) : tuple of bytes
        Store the salt beside the ciphertext; it is not secret.
    """
    password = _password_bytes(password)
    if len(password) == 0:
        raise ValueError("`password` must not be empty")
    if salt is None:
        salt = os.urandom(SALT_SIZE)
    salt = bytes(_byte_view("salt", salt))
    if len(salt) < SALT_SIZE:
        raise ValueError(f"`salt` must be at least {SALT_SIZE} bytes, got {len(salt)} bytes")
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(password), salt


