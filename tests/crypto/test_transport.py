"""HPKE transport: round trips, one error for every tampering, and the RSA comparison."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from course_lib.crypto import transport
from course_lib.errors import DecryptionError


@pytest.fixture(scope="module")
def keys():
    return transport.generate_hpke_keypair()


@pytest.fixture(scope="module")
def other_keys():
    return transport.generate_hpke_keypair()


@pytest.mark.parametrize("size", [0, 1, 100, 10_000, 1_000_003])
def test_round_trip_any_size(keys, size):
    private_key, public_key = keys
    plaintext = os.urandom(size)
    blob = transport.seal_for(public_key, plaintext, info=b"round=3", associated_data=b"c7")
    assert len(blob) == size + transport.OVERHEAD
    assert transport.open_with(private_key, blob, info=b"round=3",
                               associated_data=b"c7") == plaintext


def test_bytes_like_inputs_are_accepted(keys):
    private_key, public_key = keys
    blob = transport.seal_for(public_key, bytearray(b"update"), info=memoryview(b"i"))
    assert transport.open_with(private_key, memoryview(blob), info=b"i") == b"update"
    assert transport.open_with(private_key, bytearray(blob), info=bytearray(b"i")) == b"update"


def test_blob_layout_and_sizes(keys):
    _, public_key = keys
    blob = transport.seal_for(public_key, b"abc")
    version, enc, ciphertext = transport.parse_blob(blob)
    assert version == 1 == blob[0]
    assert len(enc) == transport.ENC_SIZE == 1088 + 32
    assert len(ciphertext) == 3 + transport.TAG_SIZE
    assert transport.OVERHEAD == 1137


def test_public_key_size_is_the_sum_of_its_raw_parts():
    ml, xk = mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    raw = ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
    assert len(raw) == transport.PUBLIC_KEY_SIZE


def test_encryption_is_randomised(keys):
    _, public_key = keys
    assert transport.seal_for(public_key, b"same") != transport.seal_for(public_key, b"same")


def test_the_payload_is_plain_rfc9180_hpke_under_the_documented_context(keys):
    private_key, public_key = keys
    blob = transport.seal_for(public_key, b"payload", info=b"ctx", associated_data=b"ad")
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    context = b"course_lib/transport/v1" + (3).to_bytes(4, "big") + b"ctx" + b"ad"
    assert suite.decrypt(blob[1:], private_key, info=context) == b"payload"


def test_every_single_byte_flip_raises_decryption_error(keys):
    private_key, public_key = keys
    blob = transport.seal_for(public_key, b"w=0.25", info=b"i", associated_data=b"a")
    for position in range(len(blob)):
        for flip in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[position] ^= flip
            with pytest.raises(DecryptionError) as info:
                transport.open_with(private_key, bytes(tampered), info=b"i", associated_data=b"a")
            assert str(info.value) == DecryptionError.MESSAGE


@pytest.mark.parametrize("change", ["truncate", "extend", "empty", "info", "ad", "swap"])
def test_other_tampering_raises_the_same_error(keys, change):
    private_key, public_key = keys
    blob = transport.seal_for(public_key, b"model update", info=b"i", associated_data=b"a")
    info, ad = b"i", b"a"
    if change == "truncate":
        blob = blob[:-1]
    elif change == "extend":
        blob = blob + b"\x00"
    elif change == "empty":
        blob = b""
    elif change == "info":
        info = b"j"
    elif change == "ad":
        ad = b"b"
    else:  # moving bytes between info and associated_data must not verify either
        info, ad = b"", b"ia"
    with pytest.raises(DecryptionError):
        transport.open_with(private_key, blob, info=info, associated_data=ad)


def test_wrong_key_raises_decryption_error(keys, other_keys):
    _, public_key = keys
    blob = transport.seal_for(public_key, b"for the server only")
    with pytest.raises(DecryptionError):
        transport.open_with(other_keys[0], blob)


def test_argument_errors_name_the_parameter(keys):
    private_key, public_key = keys
    with pytest.raises(TypeError, match="`public_key` must be an HPKE public key"):
        transport.seal_for(private_key, b"x")
    with pytest.raises(TypeError, match="`public_key` must be an MLKEM768X25519PublicKey"):
        transport.seal_for(x25519.X25519PrivateKey.generate().public_key(), b"x")
    with pytest.raises(TypeError, match="`plaintext` must be bytes, got str"):
        transport.seal_for(public_key, "text")
    with pytest.raises(TypeError, match="`info` must be bytes"):
        transport.seal_for(public_key, b"x", info="round 3")
    with pytest.raises(TypeError, match="`associated_data` must be bytes"):
        transport.seal_for(public_key, b"x", associated_data=3)
    with pytest.raises(TypeError, match="`private_key` must be an MLKEM768X25519PrivateKey"):
        transport.open_with(public_key, b"x" * 2000)
    with pytest.raises(TypeError, match="`blob` must be bytes"):
        transport.open_with(private_key, None)


def test_compare_with_rsa_measures_both_schemes_side_by_side():
    hpke_row, rsa_row = transport.compare_with_rsa(bytes(9_800), repeats=3, rsa_key_size=2048)
    assert hpke_row.post_quantum and not rsa_row.post_quantum
    assert hpke_row.overhead_bytes == transport.OVERHEAD
    assert rsa_row.overhead_bytes == 1 + 2 + 256 + 29  # version, length, RSA-2048 block, token
    assert hpke_row.public_key_bytes == 1216 > rsa_row.public_key_bytes
    for row in (hpke_row, rsa_row):
        assert row.encrypt_ms > 0 and row.decrypt_ms > 0 and row.keygen_ms > 0
    with pytest.raises(ValueError, match="`repeats`"):
        transport.compare_with_rsa(b"x", repeats=0)


def test_blob_lengths_are_bytes_and_strided_views_are_named(keys):
    private_key, public_key = keys
    blob = transport.seal_for(public_key, b"x" * 19)  # 19 + 1137 = 1156 bytes, 4 * 289
    assert transport.open_with(private_key, memoryview(blob).cast("I")) == b"x" * 19
    with pytest.raises(ValueError, match="`blob` must be a contiguous bytes-like object"):
        transport.open_with(private_key, memoryview(blob)[::2])
