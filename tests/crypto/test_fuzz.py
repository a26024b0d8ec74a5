"""Fuzzing every public decrypt, parse and load function: random and mutated inputs.

The property is the library's error contract (``course_lib/errors.py``): whatever bytes
arrive, a decrypt/parse/load function returns the original (for a mutation that changed
nothing) or raises :class:`DecryptionError` with its one message, never any other exception
and never a modified plaintext. ``verify`` answers with :class:`SignatureError` alone.
Paillier has no integrity, so there the property is weaker and stated per test.

Two Hypothesis profiles: ``ci`` (200 examples per test, derandomised, the default) and
``fuzz`` (many more, fresh randomness), chosen with ``HYPOTHESIS_PROFILE``; ``make fuzz``
runs the fuzz profile. The profiles are applied per test here, never loaded globally.
"""

from __future__ import annotations

import base64
import math
import os
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib.crypto import (
    _pkcs8,
    asymmetric,
    inference,
    model,
    naive,
    paillier,
    symmetric,
    transport,
)
from course_lib.errors import DecryptionError, SignatureError

pytestmark = pytest.mark.filterwarnings("ignore::course_lib.crypto.insecure.InsecureWarning")

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow,
                                                       HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_COMMON)
settings.register_profile("fuzz", max_examples=5_000, **_COMMON)
FUZZ = settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")))


@st.composite
def mutations(draw, original: bytes) -> bytes:
    """1-4 edits of ``original``: bit flips, byte changes, cuts, insertions, appends, swaps."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "append", "insert", "delete",
                                     "swap"]))
        n = len(data)
        if kind == "flip" and n:
            data[draw(st.integers(0, n - 1))] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and n:
            data[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, n)):]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=64))
        elif kind == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del data[i:i + draw(st.integers(1, 32))]
        elif kind == "swap" and n >= 32:
            i, j = draw(st.integers(0, n - 16)), draw(st.integers(0, n - 16))
            data[i:i + 16], data[j:j + 16] = data[j:j + 16], data[i:i + 16]
    return bytes(data)


def refused(call) -> bool:
    """True if ``call`` raised DecryptionError with the one message; False if it returned.

    Any other exception propagates and fails the test.
    """
    try:
        call()
    except DecryptionError as err:
        assert str(err) == DecryptionError.MESSAGE
        return True
    return False


def random_or_prefixed(prefix: bytes, max_size: int = 2048):
    """Random bytes, or random bytes behind a valid-looking prefix (to get past the header)."""
    return st.one_of(st.binary(max_size=max_size),
                     st.binary(max_size=max_size).map(lambda tail: prefix + tail))


# --- fixtures: one valid input of each format ----------------------------------------------

KEY = symmetric.generate_key()
STATE = {"0.weight": torch.arange(8, dtype=torch.float32).reshape(2, 4),
         "0.bias": torch.tensor([1.5, -2.0])}


@pytest.fixture(scope="module")
def hpke_keys():
    return transport.generate_hpke_keypair()


@pytest.fixture(scope="module")
def paillier_keys():
    return paillier.generate_keypair()  # 2048 bits: large plaintexts reach the float range


# --- symmetric ------------------------------------------------------------------------------

TOKEN = symmetric.encrypt(KEY, b"patient record 17", b"ad")


@FUZZ
@given(data=st.data())
def test_symmetric_decrypt_refuses_every_mutation(data):
    mutated = data.draw(mutations(TOKEN))
    if mutated != TOKEN:
        assert refused(lambda: symmetric.decrypt(KEY, mutated, b"ad"))


@FUZZ
@given(blob=random_or_prefixed(bytes([symmetric.VERSION]), 256),
       ad=st.binary(max_size=8))
def test_symmetric_decrypt_and_parse_of_random_bytes(blob, ad):
    assert refused(lambda: symmetric.decrypt(KEY, blob, ad))
    if not refused(lambda: symmetric.parse_token(blob)):
        version, nonce, ct, tag = symmetric.parse_token(blob)
        assert len(nonce) == 12 and len(tag) == 16 and 1 + 12 + len(ct) + 16 == len(blob)


@FUZZ
@given(words=st.integers(4, 35), fmt=st.sampled_from(["B", "b", "H", "I", "Q", "f", "d"]),
       data=st.data())
def test_symmetric_decrypt_counts_bytes_for_every_memoryview_format(words, fmt, data):
    # a token of 8 * words bytes, seen as 1-, 2-, 4- or 8-byte elements: lengths are bytes
    plaintext = bytes(range(256))[:8 * words - symmetric.OVERHEAD]
    token = symmetric.encrypt(KEY, plaintext)
    assert symmetric.decrypt(KEY, memoryview(token).cast(fmt)) == plaintext
    assert symmetric.parse_token(memoryview(token).cast(fmt))[2] == token[13:-16]
    mutated = data.draw(mutations(token))
    if mutated != token and len(mutated) % 8 == 0:
        assert refused(lambda: symmetric.decrypt(KEY, memoryview(mutated).cast(fmt)))


# --- asymmetric -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hybrid(rsa_key):
    return asymmetric.encrypt_for(rsa_key.public_key(), b"model update, round 3", b"ad")


@FUZZ
@given(data=st.data())
def test_decrypt_with_refuses_every_mutation(rsa_key, hybrid, data):
    mutated = data.draw(mutations(hybrid))
    if mutated != hybrid:
        assert refused(lambda: asymmetric.decrypt_with(rsa_key, mutated, b"ad"))


@FUZZ
@given(blob=random_or_prefixed(b"\x01\x01\x00", 700))
def test_decrypt_with_unwrap_and_parse_of_random_bytes(rsa_key, blob):
    assert refused(lambda: asymmetric.decrypt_with(rsa_key, blob))
    assert refused(lambda: asymmetric.unwrap_key(rsa_key, blob))
    if not refused(lambda: asymmetric.parse_blob(blob)):
        version, wrapped, token = asymmetric.parse_blob(blob)
        assert 3 + len(wrapped) + len(token) == len(blob)


@pytest.fixture(scope="module")
def signature(rsa_key):
    return asymmetric.sign(rsa_key, b"the data")


@FUZZ
@given(data=st.data())
def test_verify_answers_only_signature_error(rsa_key, signature, data):
    bad_sig = data.draw(st.one_of(mutations(signature), st.binary(max_size=300)))
    bad_data = data.draw(st.one_of(st.just(b"the data"), mutations(b"the data")))
    if (bad_sig, bad_data) == (signature, b"the data"):
        return
    with pytest.raises(SignatureError) as err:
        asymmetric.verify(rsa_key.public_key(), bad_data, bad_sig)
    assert str(err.value) == SignatureError.MESSAGE


@pytest.fixture(scope="module")
def fast_key_file(rsa_key, tmp_path_factory):
    """A key file in our format, with 1,000 PBKDF2 rounds so that each load is fast."""
    from cryptography.hazmat.primitives import serialization

    der = rsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _pkcs8.encrypt_pkcs8_pem(der, b"pw", rounds=1000), tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data())
def test_load_private_key_refuses_mutations_and_random_files(rsa_key, fast_key_file, data):
    pem, folder = fast_key_file
    content = data.draw(st.one_of(mutations(pem), st.binary(max_size=2000),
                                  st.binary(max_size=1500).map(
                                      lambda b: _pkcs8._BEGIN + b"\n" + base64.encodebytes(b)
                                      + _pkcs8._END + b"\n")))
    path = folder / "k.pem"
    path.write_bytes(content)
    result = []
    if not refused(lambda: result.append(asymmetric.load_private_key(path, "pw"))):
        assert result[0].private_numbers() == rsa_key.private_numbers()  # whitespace edits


@FUZZ
@given(data=st.data())
def test_load_public_key_refuses_mutations_and_random_files(rsa_key, tmp_path_factory, data):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    content = data.draw(st.one_of(mutations(pem), st.binary(max_size=600)))
    path = tmp_path_factory.getbasetemp() / "fuzz.pub"
    path.write_bytes(content)
    result = []
    if not refused(lambda: result.append(asymmetric.load_public_key(path))):
        # a public key file has no integrity: a changed modulus is still a public key
        assert isinstance(result[0], rsa.RSAPublicKey) and result[0].key_size >= 2048


# --- model-parameter encryption --------------------------------------------------------------

BLOB = bytes(model.encrypt_state_dict(STATE, KEY, associated_data=b"Linear(4, 2)"))


@FUZZ
@given(data=st.data())
def test_decrypt_state_dict_and_describe_refuse_every_mutation(data):
    mutated = data.draw(mutations(BLOB))
    if mutated != BLOB:
        assert refused(lambda: model.decrypt_state_dict(mutated, KEY,
                                                        associated_data=b"Linear(4, 2)"))
        # describe authenticates the prelude and header only: a change after them may be
        # located, not refused, but the authenticated part must be intact
        if not refused(lambda: model.describe(mutated, KEY, associated_data=b"Linear(4, 2)")):
            header_end = 48 + int.from_bytes(BLOB[12:16], "big") + 16
            assert mutated[:header_end] == BLOB[:header_end]


@FUZZ
@given(blob=random_or_prefixed(b"CLMODEL\x01", 512))
def test_decrypt_state_dict_of_random_bytes(blob):
    assert refused(lambda: model.decrypt_state_dict(blob, KEY))
    assert refused(lambda: model.describe(blob, KEY))


@FUZZ
@given(data=st.data())
def test_load_encrypted_refuses_mutated_files(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.clmodel"
    mutated = data.draw(st.one_of(mutations(BLOB), st.binary(max_size=400)))
    path.write_bytes(mutated)
    if mutated != BLOB:
        assert refused(lambda: model.load_encrypted(path, KEY, associated_data=b"Linear(4, 2)"))


@pytest.fixture(scope="module")
def hybrid_model(rsa_key):
    return bytes(model.encrypt_state_dict_for(STATE, rsa_key.public_key()))


@FUZZ
@given(data=st.data())
def test_decrypt_state_dict_with_refuses_mutations(rsa_key, hybrid_model, data):
    mutated = data.draw(st.one_of(mutations(hybrid_model),
                                  random_or_prefixed(b"CLMWRAP\x01\x01\x00", 600)))
    if mutated != hybrid_model:
        assert refused(lambda: model.decrypt_state_dict_with(mutated, rsa_key))


# --- transport (HPKE) ----------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_open_with_refuses_mutations_and_random_bytes(hpke_keys, data):
    private_key, public_key = hpke_keys
    blob = seal(public_key)
    mutated = data.draw(st.one_of(mutations(blob),
                                  random_or_prefixed(bytes([transport.VERSION]), 1300)))
    if mutated != blob:
        assert refused(lambda: transport.open_with(private_key, mutated, info=b"round 3"))
    if not refused(lambda: transport.parse_blob(mutated)):
        version, enc, sealed = transport.parse_blob(mutated)
        assert len(enc) == transport.ENC_SIZE and 1 + len(enc) + len(sealed) == len(mutated)


_SEALED: dict[int, bytes] = {}


def seal(public_key) -> bytes:
    """One blob per key, made once (seal_for draws a fresh encapsulation every time)."""
    key = id(public_key)
    if key not in _SEALED:
        _SEALED[key] = transport.seal_for(public_key, b"update from client 7", info=b"round 3")
    return _SEALED[key]


# --- the naive baseline (Fernet + torch.load) ----------------------------------------------

FERNET_KEY = naive.generate_key()
FERNET_TOKEN = naive.encrypt_state_dict(STATE, FERNET_KEY)


def _fernet_bytes(token: bytes) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(token)
    except ValueError:
        return None


@FUZZ
@given(data=st.data())
def test_naive_decrypt_refuses_mutations(data):
    mutated = data.draw(st.one_of(mutations(FERNET_TOKEN), st.binary(max_size=400)))
    result = []
    if not refused(lambda: result.append(naive.decrypt_state_dict(mutated, FERNET_KEY))):
        # Fernet's base64 decoder skips characters outside the alphabet: same bytes, same token
        assert _fernet_bytes(mutated) == _fernet_bytes(FERNET_TOKEN)
        assert all(torch.equal(result[0][k], STATE[k]) for k in STATE)


# --- Paillier: received ciphertexts --------------------------------------------------------

@FUZZ
@given(c=st.one_of(st.integers(), st.integers(1, 2**4096)), frac_bits=st.integers(-3, 2100))
def test_received_paillier_ciphertexts_raise_only_clean_errors(paillier_keys, c, frac_bits):
    public_key, private_key = paillier_keys
    try:
        ciphertext = paillier.EncryptedNumber(public_key, c, frac_bits=frac_bits)
    except ValueError as err:  # a bad argument, named
        assert "`ciphertext`" in str(err) or "`frac_bits`" in str(err)
        return
    result = []
    if not refused(lambda: result.append(private_key.decrypt(ciphertext))):
        # no integrity: any in-range ciphertext decrypts to *some* number in the range
        value, top = result[0], public_key.max_int.bit_length()  # |m| < 2**top
        if frac_bits == 0:
            assert isinstance(value, int) and abs(value) <= public_key.max_int
        else:
            assert isinstance(value, float) and math.isfinite(value)
            assert top - frac_bits > 1000 or abs(value) <= math.ldexp(1.0, top - frac_bits)


@pytest.fixture(scope="module")
def packed(paillier_keys):
    scheme = paillier.PackingScheme(paillier_keys[0], frac_bits=16, bound=1.0, max_summands=4)
    vectors = np.random.default_rng(0).uniform(-1, 1, size=(3, 150))
    return scheme, sum(scheme.encrypt(v) for v in vectors)


@FUZZ
@given(data=st.data())
def test_packed_decryption_never_returns_a_value_out_of_range(paillier_keys, packed, data):
    public_key, private_key = paillier_keys
    scheme, total = packed
    n, nsquare = public_key.n, public_key.n**2
    if data.draw(st.booleans()):  # a random ciphertext in place of one of them
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        c = rng.randrange(1, nsquare)
        while math.gcd(c, n) != 1:
            c = rng.randrange(1, nsquare)
        forged = paillier.EncryptedNumber(public_key, c)
    else:  # an honest-looking ciphertext plus a crafted plaintext offset in one slot
        delta = data.draw(st.integers(-(2**24), 2**24))
        slot = data.draw(st.integers(0, scheme.slots_per_ciphertext - 1))
        forged = total.ciphertexts[0] + public_key.encrypt(delta << (slot * scheme.slot_bits))
    cts = (forged,) + total.ciphertexts[1:]
    claimed = data.draw(st.integers(0, scheme.slot_limit))
    received = paillier.PackedCiphertext(scheme, cts, length=total.length, num_summands=3,
                                         max_abs_slot=claimed)
    result = []
    if not refused(lambda: result.append(scheme.decrypt(private_key, received))):
        assert np.all(np.abs(result[0]) <= claimed / 2**scheme.frac_bits)


@pytest.fixture(scope="module")
def encrypted_batch(paillier_keys):
    X = np.random.default_rng(1).uniform(-4, 4, size=(5, 3))
    return inference.encrypt_features(paillier_keys[0], X, input_bound=8.0)


@FUZZ
@given(data=st.data())
def test_decrypt_logits_of_random_ciphertexts(paillier_keys, encrypted_batch, data):
    public_key, private_key = paillier_keys
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    rows = tuple(tuple(paillier.EncryptedNumber(public_key, rng.randrange(1, public_key.n**2)
                                                | 1) if rng.random() < 0.5 else ct
                       for ct in row) for row in encrypted_batch.ciphertexts)
    if rows == encrypted_batch.ciphertexts:
        return
    received = inference.EncryptedBatch(public_key, rows, encrypted_batch.num_samples,
                                        data.draw(st.integers(0, 60)),
                                        data.draw(st.sampled_from([encrypted_batch.slot_bits,
                                                                   2, 1, 0, 2046, 5000])),
                                        encrypted_batch.input_bound)
    result = []
    if not refused(lambda: result.append(inference.decrypt_logits(private_key, received))):
        assert result[0].shape == (5, 3)
