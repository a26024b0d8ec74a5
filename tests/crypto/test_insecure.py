"""The insecure teaching demos: correct arithmetic, loud warnings, and the leaks they show."""

from __future__ import annotations

import math
import os
import warnings

import pytest

from course_lib.crypto import asymmetric, insecure, paillier, symmetric

pytestmark = pytest.mark.filterwarnings("ignore::course_lib.crypto.insecure.InsecureWarning")


@pytest.mark.parametrize("call", [
    lambda: insecure.toy_rsa_keygen(61, 53),
    lambda: insecure.toy_rsa_encrypt(65, 3233, 17),
    lambda: insecure.toy_rsa_decrypt(2790, 3233, 2753),
    lambda: insecure.aes_ecb_encrypt_unsafe(b"k" * 16, b"x"),
    lambda: insecure.aes_gcm_encrypt_with_nonce_unsafe(b"k" * 32, b"n" * 12, b"x"),
    lambda: insecure.is_prime(97),
    lambda: insecure.extended_gcd(240, 46),
    lambda: insecure.modular_inverse(17, 3120),
    lambda: insecure.xor_bytes(b"ab", b"cd"),
    lambda: insecure.textbook_rsa_encrypt_unsafe(
        asymmetric.generate_private_key(2048).public_key(), 5),
])
def test_every_insecure_function_warns_once_per_call(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own default: once per call site
        call()
    assert [w.category for w in caught] == [insecure.InsecureWarning]
    assert "insecure and shown for teaching only" in str(caught[0].message)
    assert caught[0].filename == __file__, "the warning points at the caller's line"


@pytest.mark.parametrize("call", [
    lambda: insecure.toy_rsa_encrypt(65, 3233, 17),
    lambda: insecure.is_prime(7),
    lambda: paillier.generate_keypair_unsafe_toy(32),
    lambda: paillier.keypair_from_primes(11, 13, unsafe_allow_small=True),
])
def test_two_calls_from_one_line_give_two_warnings(call):
    # Under Python's default filter, warnings.warn would stay silent the second time: the
    # registry of the calling module remembers the line. A loop or a re-run cell must warn.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            call()
    assert [w.category for w in caught] == [insecure.InsecureWarning] * 2
    assert caught[0].lineno == caught[1].lineno


def test_the_users_filters_still_apply():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=insecure.InsecureWarning)
        insecure.is_prime(7)
    assert caught == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", insecure.InsecureWarning)
        with pytest.raises(insecure.InsecureWarning):
            insecure.xor_bytes(b"a", b"b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("once")
        insecure.is_prime(7)
        insecure.is_prime(11)
    assert len(caught) == 1


def test_textbook_example_from_the_literature():
    # The classic worked example: p=61, q=53, e=17 -> n=3233, phi=3120, d=2753; 65 -> 2790.
    key = insecure.toy_rsa_keygen(61, 53, e=17)
    assert (key.n, key.phi, key.d) == (3233, 3120, 2753)
    assert insecure.toy_rsa_encrypt(65, key.n, key.e) == 2790
    assert insecure.toy_rsa_decrypt(2790, key.n, key.d) == 65


def test_toy_rsa_decrypts_every_message():
    key = insecure.toy_rsa_keygen(101, 113, e=3)
    for m in range(key.n):
        assert insecure.toy_rsa_decrypt(insecure.toy_rsa_encrypt(m, key.n, key.e), key.n,
                                        key.d) == m


def test_keygen_validation():
    with pytest.raises(ValueError, match="`p` must be prime, got 60"):
        insecure.toy_rsa_keygen(60, 53)
    with pytest.raises(ValueError, match="different primes"):
        insecure.toy_rsa_keygen(53, 53)
    with pytest.raises(ValueError, match="`e` must be coprime to phi"):
        insecure.toy_rsa_keygen(61, 53, e=3 * 5)
    with pytest.raises(ValueError, match=r"`m` must be an int in \[0, 3232\], got 3233"):
        insecure.toy_rsa_encrypt(3233, 3233, 17)


def test_number_theory_helpers_against_python():
    primes = [n for n in range(2, 2000) if insecure.is_prime(n)]
    assert primes == [n for n in range(2, 2000) if all(n % d for d in range(2, math.isqrt(n) + 1))]
    assert insecure.is_prime(2**61 - 1) and not insecure.is_prime(2**61 + 1)
    for a, b in [(240, 46), (17, 3120), (0, 5), (12345, 54321)]:
        g, x, y = insecure.extended_gcd(a, b)
        assert g == math.gcd(a, b) and a * x + b * y == g
    assert insecure.modular_inverse(17, 3120) == pow(17, -1, 3120)
    with pytest.raises(ValueError, match="coprime"):
        insecure.modular_inverse(6, 9)


def test_textbook_rsa_is_deterministic_and_malleable(rsa_key):
    pub = rsa_key.public_key()
    n = pub.public_numbers().n
    assert insecure.textbook_rsa_encrypt_unsafe(pub, 1234) == insecure.textbook_rsa_encrypt_unsafe(
        pub, 1234)
    c1 = insecure.textbook_rsa_encrypt_unsafe(pub, 6)
    c2 = insecure.textbook_rsa_encrypt_unsafe(pub, 7)
    assert c1 * c2 % n == insecure.textbook_rsa_encrypt_unsafe(pub, 42)


def test_ecb_repeats_blocks_and_gcm_does_not():
    key = os.urandom(32)
    block = b"sixteen byte blk"
    ecb = insecure.aes_ecb_encrypt_unsafe(key, block * 4)
    assert ecb[0:16] == ecb[16:32] == ecb[32:48] == ecb[48:64]
    gcm = symmetric.encrypt(key, block * 4)[13:-16]
    assert len({gcm[i:i + 16] for i in range(0, 64, 16)}) == 4


def test_nonce_reuse_leaks_the_xor_of_plaintexts():
    key, nonce = os.urandom(32), os.urandom(12)
    m1, m2 = b"attack at dawn!!", b"retreat at dusk!"
    t1 = insecure.aes_gcm_encrypt_with_nonce_unsafe(key, nonce, m1)
    t2 = insecure.aes_gcm_encrypt_with_nonce_unsafe(key, nonce, m2)
    # The tokens are valid for the safe recipe: it is the nonce choice that is the flaw.
    assert symmetric.decrypt(key, t1) == m1
    c1, c2 = t1[13:-16], t2[13:-16]
    assert insecure.xor_bytes(c1, c2) == insecure.xor_bytes(m1, m2)
    assert insecure.xor_bytes(insecure.xor_bytes(c1, c2), m1) == m2


def test_nonce_and_key_sizes_are_checked():
    with pytest.raises(ValueError, match="`nonce` must be 12 bytes, got 8"):
        insecure.aes_gcm_encrypt_with_nonce_unsafe(b"k" * 32, b"n" * 8, b"x")
    with pytest.raises(ValueError, match="`key` must be 16, 24 or 32 bytes"):
        insecure.aes_ecb_encrypt_unsafe(b"k" * 10, b"x")


def test_asymmetric_module_is_unaffected(rsa_key):
    # Sanity: the safe path still round-trips after the insecure demos ran in the same process.
    blob = asymmetric.encrypt_for(rsa_key.public_key(), b"ok")
    assert asymmetric.decrypt_with(rsa_key, blob) == b"ok"
