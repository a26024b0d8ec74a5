"""Encrypted PKCS#8 (RFC 5958 / RFC 8018 PBES2) with a work factor we choose.

cryptography writes encrypted PKCS#8 PEM only with 2,048 PBKDF2 iterations, far below the
600,000 that OWASP recommends for PBKDF2-HMAC-SHA256, and lets a caller raise the count only
for PKCS#12 and OpenSSH files. This module builds the standard structure itself from
cryptography's primitives; reading stays with cryptography's own parser (and OpenSSL's)::

    EncryptedPrivateKeyInfo ::= SEQUENCE {
      encryptionAlgorithm  SEQUENCE { id-PBES2, PBES2-params SEQUENCE {
          keyDerivationFunc SEQUENCE { id-PBKDF2, SEQUENCE {
              salt OCTET STRING, iterationCount INTEGER, keyLength INTEGER,
              prf SEQUENCE { id-hmacWithSHA256, NULL } } },
          encryptionScheme  SEQUENCE { aes256-CBC, iv OCTET STRING } } },
      encryptedData        OCTET STRING }   -- AES-256-CBC(PKCS#7 padded PrivateKeyInfo DER)
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_HMAC_SHA256 = "1.2.840.113549.2.9"
_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def encrypt_pkcs8_pem(private_key_info_der: bytes, password: bytes, *, rounds: int) -> bytes:
    """Return an ``ENCRYPTED PRIVATE KEY`` PEM of an unencrypted PKCS#8 DER."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt,
                     iterations=rounds).derive(password)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(private_key_info_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    der = _seq(
        _seq(_oid(_PBES2), _seq(
            _seq(_oid(_PBKDF2), _seq(_tlv(0x04, salt), _int(rounds), _int(32),
                                     _seq(_oid(_HMAC_SHA256), b"\x05\x00"))),
            _seq(_oid(_AES256_CBC), _tlv(0x04, iv)))),
        _tlv(0x04, encrypted))
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + b"\n".join(lines)
            + b"\n-----END ENCRYPTED PRIVATE KEY-----\n")
