"""The AES-256-GCM recipe, checked against pycryptodome as an independent implementation."""

from __future__ import annotations

import os

import pytest
from Crypto.Cipher import AES as PycryptodomeAES
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.crypto import symmetric
from course_lib.errors import DecryptionError


@pytest.fixture
def key():
    return symmetric.generate_key()


def test_generate_key_is_32_fresh_bytes():
    keys = {symmetric.generate_key() for _ in range(8)}
    assert len(keys) == 8
    assert all(isinstance(k, bytes) and len(k) == 32 for k in keys)


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=2048), ad=st.binary(max_size=64))
def test_round_trip(plaintext, ad):
    key = symmetric.generate_key()
    token = symmetric.encrypt(key, plaintext, ad)
    assert len(token) == len(plaintext) + symmetric.OVERHEAD == len(plaintext) + 29
    assert symmetric.decrypt(key, token, ad) == plaintext


def test_token_layout_and_fresh_nonces(key):
    t1 = symmetric.encrypt(key, b"same message")
    t2 = symmetric.encrypt(key, b"same message")
    assert t1[0] == t2[0] == 0x01
    assert t1[1:13] != t2[1:13], "every token must carry a fresh nonce"
    assert t1 != t2
    version, nonce, ciphertext, tag = symmetric.parse_token(t1)
    assert (version, len(nonce), len(ciphertext), len(tag)) == (1, 12, 12, 16)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 65536 + 3])
def test_pycryptodome_decrypts_our_tokens_from_the_documented_parts(key, size):
    plaintext = os.urandom(size)
    ad = b"model=mlp-64-32-10"
    token = symmetric.encrypt(key, plaintext, ad)
    version, nonce, ciphertext, tag = token[0], token[1:13], token[13:-16], token[-16:]
    assert version == 1
    cipher = PycryptodomeAES.new(key, PycryptodomeAES.MODE_GCM, nonce=nonce)
    cipher.update(ad)
    assert cipher.decrypt_and_verify(ciphertext, tag) == plaintext


def test_we_decrypt_a_token_assembled_from_pycryptodome(key):
    nonce = os.urandom(12)
    cipher = PycryptodomeAES.new(key, PycryptodomeAES.MODE_GCM, nonce=nonce)
    cipher.update(b"ad")
    ciphertext, tag = cipher.encrypt_and_digest(b"hello from another library")
    token = b"\x01" + nonce + ciphertext + tag
    assert symmetric.decrypt(key, token, b"ad") == b"hello from another library"


def test_every_single_byte_flip_is_detected(key):
    token = symmetric.encrypt(key, b"a short secret message", b"ctx")
    for i in range(len(token)):
        for bit in (0x01, 0x80):
            bad = bytearray(token)
            bad[i] ^= bit
            with pytest.raises(DecryptionError) as info:
                symmetric.decrypt(key, bytes(bad), b"ctx")
            assert str(info.value) == DecryptionError.MESSAGE


def test_every_truncation_and_extension_is_detected(key):
    token = symmetric.encrypt(key, b"0123456789abcdef0123", b"")
    for n in range(len(token)):
        with pytest.raises(DecryptionError):
            symmetric.decrypt(key, token[:n])
    for extra in (b"\x00", b"\x00" * 16, os.urandom(5)):
        with pytest.raises(DecryptionError):
            symmetric.decrypt(key, token + extra)


def test_wrong_key_wrong_ad_unknown_version_all_give_the_same_error(key):
    token = symmetric.encrypt(key, b"payload", b"ad")
    failures = []
    for attempt in (
        lambda: symmetric.decrypt(symmetric.generate_key(), token, b"ad"),
        lambda: symmetric.decrypt(key, token, b"other"),
        lambda: symmetric.decrypt(key, token),
        lambda: symmetric.decrypt(key, b"\x02" + token[1:], b"ad"),
        lambda: symmetric.decrypt(key, b"", b"ad"),
    ):
        with pytest.raises(DecryptionError) as info:
            attempt()
        failures.append(str(info.value))
    assert len(set(failures)) == 1


@pytest.mark.parametrize("bad_len", [0, 16, 24, 31, 33, 64])
def test_wrong_key_length_states_32_bytes(bad_len):
    with pytest.raises(ValueError, match=rf"`key` must be 32 bytes.*got {bad_len}"):
        symmetric.encrypt(b"k" * bad_len, b"x")
    with pytest.raises(ValueError, match="32 bytes"):
        symmetric.decrypt(b"k" * bad_len, b"x" * 40)


@pytest.mark.parametrize("call, name", [
    (lambda k: symmetric.encrypt(k, "text"), "plaintext"),
    (lambda k: symmetric.encrypt(k, b"x", "ad"), "associated_data"),
    (lambda k: symmetric.encrypt(k.hex(), b"x"), "key"),
    (lambda k: symmetric.decrypt(k, "token"), "token"),
    (lambda k: symmetric.encrypt(k, None), "plaintext"),
])
def test_str_or_none_where_bytes_are_needed_is_a_type_error(key, call, name):
    with pytest.raises(TypeError, match=f"`{name}` must be bytes"):
        call(key)


def test_bytearray_and_memoryview_are_accepted(key):
    token = symmetric.encrypt(bytearray(key), memoryview(b"data"), bytearray(b"ad"))
    assert symmetric.decrypt(memoryview(key), bytearray(token), b"ad") == b"data"


def test_derive_key_is_deterministic_for_a_salt_and_salted_by_default():
    key1, salt1 = symmetric.derive_key("correct horse battery staple")
    key2, salt2 = symmetric.derive_key("correct horse battery staple")
    assert len(key1) == 32 and len(salt1) == 16
    assert salt1 != salt2 and key1 != key2
    again, same_salt = symmetric.derive_key("correct horse battery staple", salt1)
    assert again == key1 and same_salt == salt1
    assert symmetric.derive_key(b"correct horse battery staple", salt1)[0] == key1
    assert symmetric.derive_key("correct horse battery stapler", salt1)[0] != key1


def test_derive_key_matches_scrypt_from_hashlib():
    import hashlib

    key, salt = symmetric.derive_key("pw", b"s" * 16)
    expected = hashlib.scrypt(b"pw", salt=b"s" * 16, n=2**17, r=8, p=1, dklen=32,
                              maxmem=256 * 1024 * 1024)
    assert key == expected


def test_derive_key_rejects_empty_password_and_short_salt():
    with pytest.raises(ValueError, match="`password` must not be empty"):
        symmetric.derive_key("")
    with pytest.raises(ValueError, match="`salt` must be at least 16 bytes, got 8"):
        symmetric.derive_key("pw", b"12345678")
    with pytest.raises(TypeError, match="`salt` must be bytes"):
        symmetric.derive_key("pw", "a str salt of 16+")
