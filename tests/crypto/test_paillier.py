"""Paillier: homomorphic arithmetic, checked against phe (python-paillier) as the oracle.

One real 2048-bit key (module-scoped) is used where the key size matters: interop with phe and
the packed sum at full size. Everything else uses toy keys from the explicit unsafe path,
because their arithmetic is identical and they are ~30x faster.
"""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.crypto import paillier
from course_lib.crypto.insecure import InsecureWarning
from course_lib.errors import DecryptionError

pytestmark = pytest.mark.filterwarnings("ignore::course_lib.crypto.insecure.InsecureWarning")


@pytest.fixture(scope="module")
def real_keys():
    return paillier.generate_keypair()


@pytest.fixture(scope="module")
def phe_keys(real_keys):
    n, p, q = real_keys[1].export()
    public = phe.PaillierPublicKey(n)
    return public, phe.PaillierPrivateKey(public, p, q)


@pytest.fixture(scope="module")
def toy_keys():
    return paillier.generate_keypair_unsafe_toy(256, seed=1)


# --- interop with phe, the independent oracle ---------------------------------------------

@pytest.mark.parametrize("m", [0, 1, 42, -1, -123456789, 2**100, -(2**200)])
def test_phe_decrypts_our_integers(real_keys, phe_keys, m):
    public_key, private_key = real_keys
    for ciphertext in (public_key.encrypt(m), private_key.encrypt(m)):  # public and CRT paths
        assert phe_keys[1].decrypt(phe.EncryptedNumber(phe_keys[0], ciphertext.ciphertext)) == m


def test_phe_decrypts_our_fixed_point_floats(real_keys, phe_keys):
    # our frac_bits = 16 is phe's base-16 exponent -4: both mean "m / 2**16"
    for x in (0.5, -3.25, 1234.0625, -1e-4):
        ours = real_keys[0].encrypt(x)
        theirs = phe.EncryptedNumber(phe_keys[0], ours.ciphertext, exponent=-ours.frac_bits // 4)
        assert phe_keys[1].decrypt(theirs) == pytest.approx(x, abs=2**-17)


def test_we_decrypt_phe_ciphertexts(real_keys, phe_keys):
    public_key, private_key = real_keys
    for m in (0, 7, -7, 10**30):
        c = phe_keys[0].encrypt(m).ciphertext()
        assert private_key.decrypt(paillier.EncryptedNumber(public_key, c)) == m
    for x in (0.125, -2.5, 3.14159):
        enc = phe_keys[0].encrypt(x, precision=2**-16)  # exponent -4, i.e. 16 fractional bits
        ours = paillier.EncryptedNumber(public_key, enc.ciphertext(), frac_bits=-4 * enc.exponent)
        assert private_key.decrypt(ours) == pytest.approx(x, abs=2**-16)


def test_homomorphic_sums_and_scaling_match_phe(real_keys, phe_keys):
    public_key, private_key = real_keys
    values = [5, -17, 1000, 3]
    mixed = [public_key.encrypt(v) if i % 2 else
             paillier.EncryptedNumber(public_key, phe_keys[0].encrypt(v).ciphertext())
             for i, v in enumerate(values)]
    total = sum(mixed[1:], mixed[0])
    assert private_key.decrypt(total) == sum(values)
    assert phe_keys[1].decrypt(phe.EncryptedNumber(phe_keys[0], total.ciphertext)) == sum(values)
    # phe adds and scales our ciphertexts; we decrypt its results
    phe_total = phe.EncryptedNumber(phe_keys[0], public_key.encrypt(40).ciphertext) * -3 + 2
    assert private_key.decrypt(paillier.EncryptedNumber(public_key, phe_total.ciphertext())) \
        == -118
    assert phe_keys[1].decrypt(phe.EncryptedNumber(phe_keys[0], (mixed[0] * -9).ciphertext)) \
        == -45


def test_known_answer_against_phe_raw_encrypt(real_keys, phe_keys):
    r = 123456789123456789
    with pytest.warns(InsecureWarning):
        ours = paillier.encrypt_with_randomness_unsafe(real_keys[0], 31337, r=r)
    assert ours.ciphertext == phe_keys[0].raw_encrypt(31337, r_value=r)


# --- the scheme itself --------------------------------------------------------------------

def test_toy_key_decrypts_every_message():
    with pytest.warns(InsecureWarning):
        public_key, private_key = paillier.keypair_from_primes(11, 13, unsafe_allow_small=True)
    n = public_key.n
    for m in range(n):
        signed = m - n if m > n // 2 else m
        assert private_key.decrypt(public_key.encrypt(signed)) == signed


def test_worked_example_by_hand():
    # p = 11, q = 13: n = 143, g = 144, n^2 = 20449; m = 7, r = 23
    public_key, private_key = paillier.keypair_from_primes(11, 13, unsafe_allow_small=True)
    c = paillier.encrypt_with_randomness_unsafe(public_key, 7, r=23)
    assert c.ciphertext == (1 + 7 * 143) * pow(23, 143, 143**2) % 143**2
    assert private_key.decrypt(c) == 7


@settings(max_examples=40, deadline=None)
@given(a=st.integers(-(2**60), 2**60), b=st.integers(-(2**60), 2**60),
       k=st.integers(-(2**30), 2**30))
def test_homomorphic_properties(toy_keys, a, b, k):
    public_key, private_key = toy_keys
    ea, eb = public_key.encrypt(a), private_key.encrypt(b)
    assert private_key.decrypt(ea + eb) == a + b
    assert private_key.decrypt(ea - eb) == a - b
    assert private_key.decrypt(ea * k) == a * k
    assert private_key.decrypt(k * ea + b) == a * k + b
    assert private_key.decrypt(-ea) == -a
    assert private_key.decrypt(b - ea) == b - a


@settings(max_examples=30, deadline=None)
@given(x=st.floats(-1e6, 1e6), y=st.floats(-1e6, 1e6), s=st.floats(-100, 100))
def test_fixed_point_floats(toy_keys, x, y, s):
    public_key, private_key = toy_keys
    e = 2.0**-17  # rounding error of one 16-bit encoding
    ex = public_key.encrypt(x)
    assert ex.frac_bits == paillier.DEFAULT_FRAC_BITS
    assert private_key.decrypt(ex) == pytest.approx(x, abs=e)
    assert private_key.decrypt(ex + public_key.encrypt(y)) == pytest.approx(x + y, abs=2 * e)
    assert private_key.decrypt(ex + y) == pytest.approx(x + y, abs=2 * e)
    # x*s: both factors rounded, |x*s - x'*s'| <= |x| e + |s| e + e^2
    assert private_key.decrypt(ex * s) == pytest.approx(x * s, abs=(abs(x) + abs(s) + 1) * e)


def test_int_and_float_mix(toy_keys):
    public_key, private_key = toy_keys
    total = public_key.encrypt(3) + 0.5 + public_key.encrypt(0.25, frac_bits=20)
    assert total.frac_bits == 20
    assert private_key.decrypt(total) == 3.75


def test_encryption_is_randomised_and_not_seedable(toy_keys):
    public_key, private_key = toy_keys
    random.seed(0)
    np.random.seed(0)
    first = public_key.encrypt(5)
    random.seed(0)
    np.random.seed(0)
    second = public_key.encrypt(5)
    assert first.ciphertext != second.ciphertext  # global seeding does not reach `secrets`
    fresh = first.rerandomize()
    assert fresh.ciphertext != first.ciphertext and private_key.decrypt(fresh) == 5


@pytest.mark.parametrize("bad", ["zero", "n_squared", "negative", "shares_factor"])
def test_invalid_ciphertexts_are_refused(toy_keys, bad):
    public_key, private_key = toy_keys
    p = private_key.export()[1]
    c = {"zero": 0, "n_squared": public_key.n**2, "negative": -5, "shares_factor": 3 * p}[bad]
    with pytest.raises(ValueError, match="0 < c < n\\*\\*2 and gcd"):
        paillier.EncryptedNumber(public_key, c)


def test_wrong_key_and_wrong_operations(toy_keys):
    public_key, private_key = toy_keys
    other_public, other_private = paillier.generate_keypair_unsafe_toy(256, seed=2)
    c = public_key.encrypt(1)
    with pytest.raises(DecryptionError):
        other_private.decrypt(c)
    with pytest.raises(DecryptionError):
        private_key.decrypt(c.ciphertext)  # a raw int is not a ciphertext object
    with pytest.raises(ValueError, match="different public keys"):
        c + other_public.encrypt(1)
    with pytest.raises(TypeError, match="cannot multiply two ciphertexts"):
        c * c
    with pytest.raises(ValueError, match="at most n/2"):
        public_key.encrypt(public_key.n)
    with pytest.raises(ValueError, match="finite"):
        public_key.encrypt(float("nan"))


def test_key_sizes_and_warnings():
    with pytest.raises(ValueError, match="`bits` must be an int in \\[2048"):
        paillier.generate_keypair(bits=1024)
    with pytest.raises(ValueError, match="at least 2048 bits"):
        paillier.keypair_from_primes(11, 13)
    with pytest.raises(ValueError, match="must be prime"):
        paillier.keypair_from_primes(15, 13, unsafe_allow_small=True)
    with pytest.warns(InsecureWarning, match="insecure"):
        public_key, _ = paillier.generate_keypair_unsafe_toy(64)
    assert public_key.bits == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the safe path never warns
        public_key, private_key = paillier.generate_keypair()
    assert public_key.bits == 2048 and private_key.public_key == public_key


def test_export_round_trip_and_repr_hides_the_primes(real_keys):
    public_key, private_key = real_keys
    n, p, q = private_key.export()
    assert n == p * q == public_key.n and math.gcd(p, q) == 1
    rebuilt_public, rebuilt_private = paillier.keypair_from_primes(p, q)
    assert rebuilt_public == public_key
    assert rebuilt_private.decrypt(public_key.encrypt(-99)) == -99
    text = repr(private_key) + repr(public_key) + repr(public_key.encrypt(1))
    assert "bits=2048" in text
    for secret in (p, q):
        assert str(secret) not in text and f"{secret:x}"[:12] not in text


def test_seeded_toy_keys_are_reproducible():
    a = paillier.generate_keypair_unsafe_toy(128, seed=7)[0]
    b = paillier.generate_keypair_unsafe_toy(128, seed=7)[0]
    assert a == b and a.bits == 128


# --- packing ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(slot_bits=st.integers(2, 40), data=st.data())
def test_pack_unpack_round_trip_with_negative_slots(slot_bits, data):
    limit = 2 ** (slot_bits - 1)
    values = data.draw(st.lists(st.integers(-limit, limit - 1), max_size=30))
    packed = paillier.pack_slots(values, slot_bits=slot_bits)
    assert paillier.unpack_slots(packed, slot_bits=slot_bits, count=len(values)) == values


def test_pack_refuses_a_value_that_does_not_fit():
    with pytest.raises(ValueError, match="slot value must be in"):
        paillier.pack_slots([1, 128], slot_bits=8)


def test_unchecked_slot_overflow_corrupts_the_neighbour():
    # Why the checks exist: 127 + 1 does not fit an 8-bit signed slot; it silently carries
    # into the next slot instead of raising.
    a = paillier.pack_slots([127, 5], slot_bits=8)
    b = paillier.pack_slots([1, 0], slot_bits=8)
    assert paillier.unpack_slots(a + b, slot_bits=8, count=2) == [-128, 6]  # wrong: [128, 5]


@settings(max_examples=15, deadline=None)
@given(data=st.data(), num_clients=st.integers(1, 6), length=st.integers(1, 40))
def test_packed_sums_match_plaintext_sums_within_the_stated_error(toy_keys, data, num_clients,
                                                                  length):
    public_key, private_key = toy_keys
    scheme = paillier.PackingScheme(public_key, frac_bits=16, bound=2.0, max_summands=6)
    vectors = np.array([data.draw(st.lists(st.floats(-2.0, 2.0), min_size=length,
                                           max_size=length)) for _ in range(num_clients)])
    total = sum(scheme.encrypt(v) for v in vectors)
    assert total.num_summands == num_clients
    decoded = scheme.decrypt(private_key, total)
    assert decoded.shape == (length,)
    assert np.max(np.abs(decoded - vectors.sum(axis=0))) <= scheme.max_abs_error(num_clients)


def test_packing_overflow_is_detected(toy_keys):
    public_key, private_key = toy_keys
    scheme = paillier.PackingScheme(public_key, frac_bits=8, bound=1.0, max_summands=3)
    with pytest.raises(ValueError, match="must lie in \\[-1.0, 1.0\\]"):
        scheme.encrypt([0.5, 1.01])
    full = [scheme.encrypt(np.ones(30)) for _ in range(4)]
    three = full[0] + full[1] + full[2]
    np.testing.assert_array_equal(scheme.decrypt(private_key, three), np.full(30, 3.0))
    with pytest.raises(ValueError, match="slot overflow"):
        three + full[3]
    # bypassing the bookkeeping with the raw ciphertexts is caught at decryption
    raw = [a + b for a, b in zip(three.ciphertexts, full[3].ciphertexts)]
    forged = paillier.PackedCiphertext(scheme, tuple(raw), length=30, num_summands=3)
    with pytest.raises(DecryptionError):
        scheme.decrypt(private_key, forged)


# --- packing: every operation tracks its worst case; decryption checks again ---------------

@pytest.fixture(scope="module")
def tight(toy_keys):
    # frac_bits 8, bound 1, three summands: value_limit 256, slot_limit 768, 11-bit slots
    return paillier.PackingScheme(toy_keys[0], frac_bits=8, bound=1.0, max_summands=3)


def test_scheme_limits(tight):
    assert (tight.value_limit, tight.slot_limit, tight.slot_bits) == (256, 768, 11)


@settings(max_examples=25, deadline=None)
@given(x=st.lists(st.floats(-1, 1), min_size=1, max_size=30), k=st.integers(-3, 3),
       y=st.lists(st.floats(-1, 1), min_size=30, max_size=30))
def test_scaling_negation_and_subtraction_match_plaintext(toy_keys, tight, x, k, y):
    private_key = toy_keys[1]
    x = np.asarray(x)
    y = np.asarray(y[:len(x)])
    a, b = tight.encrypt(x), tight.encrypt(y)
    step = 2.0 ** -9  # rounding of one 8-bit encoding
    assert (a * k).max_abs_slot == abs(k) * 256
    np.testing.assert_allclose(tight.decrypt(private_key, k * a), k * x, atol=abs(k) * step)
    np.testing.assert_allclose(tight.decrypt(private_key, -a), -x, atol=step)
    np.testing.assert_allclose(tight.decrypt(private_key, a - b), x - y, atol=2 * step)


def test_every_operation_refuses_to_overflow(tight):
    a = tight.encrypt(np.ones(5))
    with pytest.raises(ValueError, match="slot overflow.*product by `scalar` = 4 could reach 1024"):
        a * 4
    with pytest.raises(ValueError, match="slot overflow.*`scalar` = -4"):
        -4 * a
    with pytest.raises(ValueError, match="slot overflow.*sum could reach 1024"):
        a * 2 - a - a  # the worst case counts, not the true value (0)
    with pytest.raises(ValueError, match="slot overflow"):
        sum([a, -a, a, -a])
    with pytest.raises(TypeError, match="`scalar` must be an int"):
        a * 0.5
    with pytest.raises(TypeError, match="cannot multiply two ciphertexts"):
        a * a
    with pytest.raises(TypeError, match="can only add a PackedCiphertext"):
        a + 1
    assert (a * 0).max_abs_slot == 0 and (a * 3).max_abs_slot == 768


def test_scaling_the_raw_ciphertexts_is_caught_at_decryption(toy_keys, tight):
    public_key, private_key = toy_keys
    a = tight.encrypt(np.full(30, 0.75))
    # a server that scales by hand (E(x)^5) and claims the fresh bound
    scaled = paillier.PackedCiphertext(tight, [ct * 5 for ct in a.ciphertexts], length=30)
    with pytest.raises(DecryptionError):
        tight.decrypt(private_key, scaled)
    # even when it claims the whole headroom: 5 * 192 = 960 > 768
    scaled = paillier.PackedCiphertext(tight, [ct * 5 for ct in a.ciphertexts], length=30,
                                       max_abs_slot=768)
    with pytest.raises(DecryptionError):
        tight.decrypt(private_key, scaled)


def test_a_clients_crafted_ciphertext_that_overflows_the_sum_is_caught(toy_keys, tight):
    public_key, private_key = toy_keys
    honest = [tight.encrypt(np.full(23, 1.0)) for _ in range(2)]
    # the cheater packs 600 (= 2.34, above bound 1) itself: 600 + 256 + 256 = 1112 > 768
    crafted = public_key.encrypt(paillier.pack_slots([600] * 23, slot_bits=tight.slot_bits))
    cheat = paillier.PackedCiphertext(tight, [crafted], length=23)
    with pytest.raises(DecryptionError):
        tight.decrypt(private_key, sum(honest) + cheat)
    # bits above the last slot are refused too
    high = public_key.encrypt(1 << (23 * tight.slot_bits))
    with pytest.raises(DecryptionError):
        tight.decrypt(private_key, paillier.PackedCiphertext(tight, [high], length=23))
    # what no check can see: an in-range lie decrypts (that needs a range proof)
    liar = paillier.PackedCiphertext(tight, [public_key.encrypt(
        paillier.pack_slots([200] * 23, slot_bits=tight.slot_bits))], length=23)
    assert np.allclose(tight.decrypt(private_key, sum(honest) + liar), 2 + 200 / 256)


def test_packed_ciphertext_checks_its_arguments(toy_keys, tight):
    public_key, _ = toy_keys
    a = tight.encrypt(np.zeros(30))
    with pytest.raises(TypeError, match="`scheme` must be a PackingScheme"):
        paillier.PackedCiphertext("scheme", a.ciphertexts, length=30)
    with pytest.raises(TypeError, match="`ciphertexts` must hold EncryptedNumbers"):
        paillier.PackedCiphertext(tight, [5, 6], length=30)
    with pytest.raises(ValueError, match="`ciphertexts` must hold 2 ciphertexts"):
        paillier.PackedCiphertext(tight, a.ciphertexts[:1], length=30)
    with pytest.raises(ValueError, match="frac_bits 0"):
        paillier.PackedCiphertext(tight, [public_key.encrypt(0.5)] * 2, length=30)
    with pytest.raises(ValueError, match="slot overflow.*`max_abs_slot` is 769"):
        paillier.PackedCiphertext(tight, a.ciphertexts, length=30, max_abs_slot=769)
    with pytest.raises(ValueError, match="slot overflow"):
        paillier.PackedCiphertext(tight, a.ciphertexts, length=30, num_summands=4)
    with pytest.raises(TypeError, match="`private_key` must be a PaillierPrivateKey"):
        tight.decrypt(public_key, a)
    other = paillier.generate_keypair_unsafe_toy(256, seed=5)[1]
    with pytest.raises(DecryptionError):
        tight.decrypt(other, a)


def test_rerandomized_packed_ciphertext_decrypts_the_same(toy_keys, tight):
    a = tight.encrypt(np.full(30, 0.5))
    fresh = a.rerandomize()
    assert fresh.ciphertexts[0].ciphertext != a.ciphertexts[0].ciphertext
    np.testing.assert_array_equal(tight.decrypt(toy_keys[1], fresh), np.full(30, 0.5))


# --- received values: keys, primes, fractional bits ----------------------------------------

def test_public_key_refuses_bad_moduli(real_keys):
    for n, match in [(2**2048 + 2, "must be odd"), (2**2203 - 1, "got a prime"),
                     ((2**1031 - 1) ** 2, "perfect square"), (143, "at least 2048 bits"),
                     (1.0, "must be an int"), (9, r"in \[15")]:
        with pytest.raises((ValueError, TypeError), match=match):
            paillier.PaillierPublicKey(n)
    with pytest.warns(InsecureWarning, match="143|8-bit"):
        small = paillier.PaillierPublicKey(143, unsafe_allow_small=True)
    assert small.bits == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paillier.PaillierPublicKey(real_keys[0].n) == real_keys[0]


def test_private_key_checks_that_p_and_q_are_prime():
    public_key = paillier.PaillierPublicKey(15 * 21, unsafe_allow_small=True)
    with pytest.raises(ValueError, match="`p` must be prime, got a 4-bit composite"):
        paillier.PaillierPrivateKey(public_key, 15, 21)
    with pytest.raises(ValueError, match="p \\* q == n"):
        paillier.PaillierPrivateKey(public_key, 5, 7)
    with pytest.raises(ValueError, match="`q` must be prime"):
        paillier.PaillierPrivateKey(paillier.PaillierPublicKey(7 * 45, unsafe_allow_small=True),
                                    7, 45)
    with pytest.raises(ValueError, match="two different primes"):
        paillier.keypair_from_primes(13, 13, unsafe_allow_small=True)


def test_received_frac_bits_are_bounded_and_huge_values_raise_decryption_error(toy_keys,
                                                                               real_keys):
    public_key, private_key = toy_keys
    c = public_key.encrypt(2**200).ciphertext
    with pytest.raises(ValueError, match="`frac_bits` must be an int in \\[0, 256\\]"):
        paillier.EncryptedNumber(public_key, c, frac_bits=257)
    assert private_key.decrypt(paillier.EncryptedNumber(public_key, c, frac_bits=190)) == 2.0**10
    big_key = real_keys  # 2048 bits: 2**1500 / 2 overflows a float
    c = big_key[0].encrypt(2**1500).ciphertext
    with pytest.raises(DecryptionError):
        big_key[1].decrypt(paillier.EncryptedNumber(big_key[0], c, frac_bits=1))
    assert big_key[1].decrypt_raw(paillier.EncryptedNumber(big_key[0], c, frac_bits=1)) \
        == 2**1500


def test_packing_scheme_layout(real_keys):
    scheme = paillier.PackingScheme(real_keys[0], frac_bits=16, bound=1.0, max_summands=10)
    # 10 * 2**16 needs 20 bits, plus a sign bit
    assert scheme.slot_bits == 21 and scheme.slots_per_ciphertext == 2046 // 21
    assert scheme.num_ciphertexts(10_000) == math.ceil(10_000 / 97)
    assert "slot_bits=21" in repr(scheme)
    with pytest.raises(ValueError, match="does not fit"):
        paillier.PackingScheme(paillier.generate_keypair_unsafe_toy(32)[0], frac_bits=40,
                               bound=1e3, max_summands=10)


def test_packed_aggregation_at_full_size(real_keys):
    public_key, private_key = real_keys
    scheme = paillier.PackingScheme(public_key, frac_bits=16, bound=1.0, max_summands=10)
    clients = np.random.default_rng(0).uniform(-1, 1, size=(10, 500))
    total = sum(scheme.encrypt(v) for v in clients)
    assert len(total.ciphertexts) == 6 and total.nbytes == 6 * 512
    error = np.abs(scheme.decrypt(private_key, total) - clients.sum(axis=0))
    assert error.max() <= scheme.max_abs_error()
    with pytest.raises(ValueError, match="same scheme and length"):
        total + paillier.PackingScheme(public_key, frac_bits=8).encrypt(np.zeros(500))
