"""RSA for the course: hybrid encryption for a recipient, signatures and key files.

RSA itself can only encrypt a few hundred bytes and is slow, so real systems use *hybrid
encryption*: a fresh random AES key encrypts the payload (:mod:`course_lib.crypto.symmetric`)
and RSA-OAEP encrypts ("wraps") only that 32-byte key for the recipient.

Hybrid blob format (version 1), lengths in bytes::

    offset   length  field
    0        1       version, always 0x01
    1        2       L, big-endian length of the wrapped key (384 for RSA-3072)
    3        L       RSA-OAEP(SHA-256, MGF1-SHA-256, no label) encryption of a 32-byte AES key
    3+L      ...     symmetric token of the payload (0x01 || nonce || ciphertext || tag)

The associated data is bound to the symmetric token. Defaults follow current guidance:
RSA-3072 (about 128-bit security, NIST SP 800-57), OAEP with SHA-256 for encryption and PSS with
SHA-256 (salt length 32) for signatures. Keys below 2048 bits are refused; for the arithmetic
by hand see :mod:`course_lib.crypto.insecure`.

Examples
--------
>>> from course_lib.crypto import asymmetric
>>> alice = asymmetric.generate_private_key(key_size=2048)
>>> blob = asymmetric.encrypt_for(alice.public_key(), b"model update, round 3")
>>> asymmetric.decrypt_with(alice, blob)
b'model update, round 3'
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from course_lib._validation import require_bytes, require_int
from course_lib.crypto import symmetric
from course_lib.crypto._pkcs8 import check_encrypted_pem, encrypt_pkcs8_pem
from course_lib.errors import DecryptionError, SignatureError

__all__ = [
    "DEFAULT_KEY_SIZE", "MIN_KEY_SIZE", "MAX_KEY_SIZE", "KEY_FILE_KDF_ROUNDS",
    "MAX_KEY_FILE_KDF_ROUNDS", "OAEP_PADDING", "PSS_PADDING",
    "generate_private_key", "wrap_key", "unwrap_key", "encrypt_for", "decrypt_with",
    "sign", "verify", "save_private_key", "load_private_key", "save_public_key",
    "load_public_key", "parse_blob",
]

VERSION = 0x01
DEFAULT_KEY_SIZE = 3072
MIN_KEY_SIZE = 2048
PSS_SALT_LENGTH = 32  # = the SHA-256 digest length, the common interoperable choice
# PBKDF2-HMAC-SHA256 iterations protecting a saved private key (OWASP's 2023 figure). The
# library default of cryptography's BestAvailableEncryption is far lower (2,048), which makes
# guessing the password of a stolen key file cheap.
KEY_FILE_KDF_ROUNDS = 600_000
# The most PBKDF2 iterations a key file we load may ask for (10x ours, a few seconds): the
# count is written by whoever made the file, and 2**31 - 1 would take many minutes.
MAX_KEY_FILE_KDF_ROUNDS = 10 * KEY_FILE_KDF_ROUNDS
MAX_KEY_SIZE = 16384
MAX_KEY_FILE_SIZE = 1 << 20  # an RSA-16384 private key PEM is about 13 KB

# The exact padding parameters, public for interop (and for published test vectors).
OAEP_PADDING = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()),
                            algorithm=hashes.SHA256(), label=None)
PSS_PADDING = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)
_OAEP, _PSS = OAEP_PADDING, PSS_PADDING


def generate_private_key(key_size: int = DEFAULT_KEY_SIZE) -> rsa.RSAPrivateKey:
    """Generate an RSA private key (public exponent 65537); its ``.public_key()`` is shareable.

    ``key_size`` must be at least 2048 bits; 3072 is the default. Generation takes a moment
    (about 0.1-1 s for 3072 bits): it searches for two large random primes.
    """
    require_int("key_size", key_size, minimum=MIN_KEY_SIZE, maximum=MAX_KEY_SIZE)
    if key_size % 8:
        raise ValueError(f"`key_size` must be a multiple of 8 bits, got {key_size}")
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def _check_public(public_key: object) -> rsa.RSAPublicKey:
    if isinstance(public_key, rsa.RSAPrivateKey):
        raise TypeError("`public_key` must be an RSA public key; pass private_key.public_key()")
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TypeError(f"`public_key` must be an RSA public key, got {type(public_key).__name__}")
    if public_key.key_size < MIN_KEY_SIZE:
        raise ValueError(f"`public_key` must be at least {MIN_KEY_SIZE} bits, "
                         f"got {public_key.key_size}")
    return public_key


def _check_private(private_key: object) -> rsa.RSAPrivateKey:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError(f"`private_key` must be an RSA private key, "
                        f"got {type(private_key).__name__}")
    return private_key


def wrap_key(public_key: rsa.RSAPublicKey, key: bytes) -> bytes:
    """Encrypt a 32-byte symmetric key for ``public_key`` with RSA-OAEP (SHA-256)."""
    public_key = _check_public(public_key)
    key = symmetric._byte_view("key", key)
    if len(key) != symmetric.KEY_SIZE:
        raise ValueError(f"`key` must be {symmetric.KEY_SIZE} bytes, got {len(key)} bytes")
    return public_key.encrypt(bytes(key), _OAEP)


def unwrap_key(private_key: rsa.RSAPrivateKey, wrapped: bytes) -> bytes:
    """Recover a key wrapped by :func:`wrap_key`; any failure raises :class:`DecryptionError`."""
    private_key = _check_private(private_key)
    wrapped = require_bytes("wrapped", wrapped)
    try:
        key = private_key.decrypt(bytes(wrapped), _OAEP)
    except ValueError:
        raise DecryptionError() from None
    if len(key) != symmetric.KEY_SIZE:
        raise DecryptionError()
    return key


def encrypt_for(public_key: rsa.RSAPublicKey, plaintext: bytes,
                associated_data: bytes = b"") -> bytes:
    """Hybrid-encrypt ``plaintext`` (any size) so that only the holder of the private key can
    read it. Returns a version-1 blob (see module doc)."""
    public_key = _check_public(public_key)
    plaintext = require_bytes("plaintext", plaintext)
    associated_data = require_bytes("associated_data", associated_data)
    key = symmetric.generate_key()
    wrapped = wrap_key(public_key, key)
    token = symmetric.encrypt(key, plaintext, associated_data)
    return bytes([VERSION]) + len(wrapped).to_bytes(2, "big") + wrapped + token


def parse_blob(blob: bytes) -> tuple[int, bytes, bytes]:
    """Split a hybrid blob into ``(version, wrapped_key, symmetric_token)``.

    Raises :class:`DecryptionError` if the blob is too short for its declared parts.
    """
    blob = bytes(require_bytes("blob", blob))
    if len(blob) < 3:
        raise DecryptionError()
    length = int.from_bytes(blob[1:3], "big")
    if len(blob) < 3 + length + symmetric.OVERHEAD:
        raise DecryptionError()
    return blob[0], blob[3:3 + length], blob[3 + length:]


def decrypt_with(private_key: rsa.RSAPrivateKey, blob: bytes,
                 associated_data: bytes = b"") -> bytes:
    """Decrypt a blob made by :func:`encrypt_for`.

    Every failure (wrong key, any modified, truncated or extended byte, wrong associated data,
    unknown version) raises :class:`DecryptionError` with the same message.
    """
    private_key = _check_private(private_key)
    associated_data = require_bytes("associated_data", associated_data)
    version, wrapped, token = parse_blob(blob)
    if version != VERSION or len(wrapped) != (private_key.key_size + 7) // 8:
        raise DecryptionError()
    key = unwrap_key(private_key, wrapped)
    return symmetric.decrypt(key, token, associated_data)


def sign(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """Sign ``data`` with RSA-PSS (SHA-256, MGF1-SHA-256, salt length 32)."""
    private_key = _check_private(private_key)
    data = require_bytes("data", data)
    return private_key.sign(bytes(data), _PSS, hashes.SHA256())


def verify(public_key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> None:
    """Check a signature made by :func:`sign`. Returns ``None``; raises :class:`SignatureError`."""
    public_key = _check_public(public_key)
    data = require_bytes("data", data)
    signature = require_bytes("signature", signature)
    try:
        public_key.verify(bytes(signature), bytes(data), _PSS, hashes.SHA256())
    except InvalidSignature:
        raise SignatureError() from None


def _password_bytes(password: object) -> bytes:
    password = symmetric._password_bytes(password)
    if not password:
        raise ValueError("`password` must not be empty: a private key file must be encrypted")
    return password


def _path(path: object) -> Path:
    # An int would be taken by open() as a file descriptor; bytes paths are not supported.
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(f"`path` must be a str or os.PathLike of str, got {type(path).__name__}")
    return Path(path)


def _read_key_file(path: object) -> bytes:
    """The file's bytes; a file larger than any key file raises :class:`DecryptionError`."""
    with open(_path(path), "rb") as f:
        data = f.read(MAX_KEY_FILE_SIZE + 1)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise DecryptionError()
    return data


def _atomic_write(path: str | os.PathLike, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = _path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_private_key(private_key: rsa.RSAPrivateKey, path: str | os.PathLike,
                     password: str | bytes) -> None:
    """Save ``private_key`` as an encrypted PKCS#8 PEM file readable only by its owner (0600).

    The key is encrypted with AES-256-CBC under a key derived from the password by
    PBKDF2-HMAC-SHA256 with 600,000 iterations (PBES2), readable by OpenSSL and other tools.

    An empty password is refused: an unencrypted private key on disk is a leaked key.
    """
    private_key = _check_private(private_key)
    password = _password_bytes(password)
    _path(path)
    der = private_key.private_bytes(encoding=serialization.Encoding.DER,
                                    format=serialization.PrivateFormat.PKCS8,
                                    encryption_algorithm=serialization.NoEncryption())
    pem = encrypt_pkcs8_pem(der, password, rounds=KEY_FILE_KDF_ROUNDS)
    _atomic_write(path, pem, 0o600)


def load_private_key(path: str | os.PathLike, password: str | bytes) -> rsa.RSAPrivateKey:
    """Load a key saved by :func:`save_private_key` (or any PBES2/PBKDF2 PKCS#8 PEM file).

    A wrong password, a modified file, a file that is not an encrypted RSA key of 2048 to
    16384 bits, or one whose PBKDF2 iteration count exceeds ``MAX_KEY_FILE_KDF_ROUNDS``
    (checked before any key is derived) raises :class:`DecryptionError`. A missing file
    raises ``FileNotFoundError``.
    """
    password = _password_bytes(password)
    data = _read_key_file(path)
    check_encrypted_pem(data, max_rounds=MAX_KEY_FILE_KDF_ROUNDS)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # a flipped bit can rewrite the OID
        raise DecryptionError() from None
    if not isinstance(key, rsa.RSAPrivateKey) or not MIN_KEY_SIZE <= key.key_size <= MAX_KEY_SIZE:
        raise DecryptionError()
    return key


def save_public_key(public_key: rsa.RSAPublicKey, path: str | os.PathLike) -> None:
    """Save a public key as SubjectPublicKeyInfo PEM (safe to share)."""
    public_key = _check_public(public_key)
    pem = public_key.public_bytes(encoding=serialization.Encoding.PEM,
                                  format=serialization.PublicFormat.SubjectPublicKeyInfo)
    _atomic_write(path, pem, 0o644)


def load_public_key(path: str | os.PathLike) -> rsa.RSAPublicKey:
    """Load a public key saved by :func:`save_public_key`.

    A file that is not a PEM RSA public key of 2048 to 16384 bits raises
    :class:`DecryptionError` (one error for every bad key file); a missing file raises
    ``FileNotFoundError``.
    """
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DecryptionError() from None
    if not isinstance(key, rsa.RSAPublicKey) or not MIN_KEY_SIZE <= key.key_size <= MAX_KEY_SIZE:
        raise DecryptionError()
    return key
