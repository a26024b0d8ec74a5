"""Encrypted PKCS#8 (RFC 5958 / RFC 8018 PBES2) with a work factor we choose.

cryptography writes encrypted PKCS#8 PEM only with 2,048 PBKDF2 iterations, far below the
600,000 that OWASP recommends for PBKDF2-HMAC-SHA256, and lets a caller raise the count only
for PKCS#12 and OpenSSH files. This module builds the standard structure itself from
cryptography's primitives; decrypting stays with cryptography's own parser (and OpenSSL's)::

    EncryptedPrivateKeyInfo ::= SEQUENCE {
      encryptionAlgorithm  SEQUENCE { id-PBES2, PBES2-params SEQUENCE {
          keyDerivationFunc SEQUENCE { id-PBKDF2, SEQUENCE {
              salt OCTET STRING, iterationCount INTEGER, keyLength INTEGER,
              prf SEQUENCE { id-hmacWithSHA256, NULL } } },
          encryptionScheme  SEQUENCE { aes256-CBC, iv OCTET STRING } } },
      encryptedData        OCTET STRING }   -- AES-256-CBC(PKCS#7 padded PrivateKeyInfo DER)

Before that parser runs, :func:`check_encrypted_pem` reads the structure above far enough to
find the PBKDF2 iteration count, and refuses a file whose count exceeds a cap. The count is
chosen by whoever wrote the file, and a key file with a count of 2**31 - 1 would hold the
interpreter for many minutes on the first password guess.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from course_lib.errors import DecryptionError

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_HMAC_SHA256 = "1.2.840.113549.2.9"
_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_BEGIN = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_END = b"-----END ENCRYPTED PRIVATE KEY-----"


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


# ------------------------------------------------------------------------------- reading

def _read_tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """``(tag, content, next offset)`` of the DER element at ``offset``; malformed -> error."""
    if offset + 2 > len(data):
        raise DecryptionError()
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if not 1 <= size <= 4 or offset + size > len(data):  # 0x80 (indefinite) is not DER
            raise DecryptionError()
        length = int.from_bytes(data[offset:offset + size], "big")
        offset += size
    if offset + length > len(data):
        raise DecryptionError()
    return tag, data[offset:offset + length], offset + length


def _children(content: bytes) -> list[tuple[int, bytes]]:
    items, offset = [], 0
    while offset < len(content):
        tag, value, offset = _read_tlv(content, offset)
        items.append((tag, value))
    return items


def _sequence(item: tuple[int, bytes], minimum: int) -> list[tuple[int, bytes]]:
    tag, content = item
    children = _children(content) if tag == 0x30 else []
    if len(children) < minimum:
        raise DecryptionError()
    return children


def _is_oid(item: tuple[int, bytes], dotted: str) -> bool:
    return item[0] == 0x06 and _tlv(0x06, item[1]) == _oid(dotted)


def check_encrypted_pem(data: bytes, *, max_rounds: int) -> None:
    """Raise :class:`DecryptionError` unless ``data`` is one ``ENCRYPTED PRIVATE KEY`` PEM
    block protected by PBES2 with PBKDF2, whose iteration count is in ``[1, max_rounds]``.

    Only the unencrypted outer structure is read; no key is derived.
    """
    text = data.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)) or text.count(b"-----") != 4:
        raise DecryptionError()
    try:
        der = base64.b64decode(b"".join(text[len(_BEGIN):-len(_END)].split()), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        raise DecryptionError() from None
    tag, content, end = _read_tlv(der, 0)
    if end != len(der):
        raise DecryptionError()
    info = _sequence((tag, content), 2)  # EncryptedPrivateKeyInfo
    algorithm = _sequence(info[0], 2)  # id-PBES2, PBES2-params
    if not _is_oid(algorithm[0], _PBES2):
        raise DecryptionError()
    kdf = _sequence(_sequence(algorithm[1], 2)[0], 2)  # id-PBKDF2, PBKDF2-params
    if not _is_oid(kdf[0], _PBKDF2):
        raise DecryptionError()
    salt, count = _sequence(kdf[1], 2)[:2]
    if salt[0] != 0x04 or count[0] != 0x02 or not 1 <= len(count[1]) <= 8:
        raise DecryptionError()
    rounds = int.from_bytes(count[1], "big", signed=True)
    if not 1 <= rounds <= max_rounds:
        raise DecryptionError()
