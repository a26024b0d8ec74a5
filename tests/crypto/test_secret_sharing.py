"""Secret sharing: additive and Shamir reconstruction, what too few shares reveal, Beaver products,
pairwise masks."""

from __future__ import annotations

import itertools
import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.crypto import secret_sharing as ss

P = ss.PRIME


# --- additive sharing and fixed point -----------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20),
       num_shares=st.integers(2, 6))
def test_additive_round_trip(values, num_shares):
    shares = ss.share_additive(ss.encode_fixed(values), num_shares=num_shares)
    assert len(shares) == num_shares
    decoded = ss.decode_fixed(ss.reconstruct_additive(shares))
    np.testing.assert_allclose(decoded, values, rtol=0, atol=2**-17)


def test_shares_add_locally():
    a, b = ss.encode_fixed([1.5, -2.0]), ss.encode_fixed([0.25, 4.0])
    sa, sb = ss.share_additive(a, num_shares=3), ss.share_additive(b, num_shares=3)
    summed = [(x + y) % P for x, y in zip(sa, sb)]  # each party adds its own two shares
    assert ss.decode_fixed(ss.reconstruct_additive(summed)).tolist() == [1.75, 2.0]


def test_all_but_one_share_are_independent_of_the_secret():
    # With the randomness fixed, two very different secrets give identical first shares:
    # the first n-1 shares do not depend on the secret at all.
    low = ss.share_additive(ss.encode_fixed([0.0] * 4), num_shares=3, unsafe_seed=5)
    high = ss.share_additive(ss.encode_fixed([1e6] * 4), num_shares=3, unsafe_seed=5)
    for a, b in zip(low[:-1], high[:-1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(low[-1], high[-1])
    # and a lone share decodes to noise, not to the secret
    assert np.all(np.abs(ss.decode_fixed(low[0])) > 1e20)


def test_default_randomness_is_the_csprng_and_the_seed_is_explicit():
    random.seed(0)
    np.random.seed(0)
    first = ss.share_additive(ss.encode_fixed([1.0]))[0]
    random.seed(0)
    np.random.seed(0)
    second = ss.share_additive(ss.encode_fixed([1.0]))[0]
    assert not np.array_equal(first, second)
    seeded = [ss.share_additive(ss.encode_fixed([1.0]), unsafe_seed=3)[0] for _ in range(2)]
    np.testing.assert_array_equal(seeded[0], seeded[1])


def test_field_elements_are_in_range_and_exact_python_ints():
    r = ss.random_field_elements((3, 4))
    assert r.shape == (3, 4) and r.dtype == object
    assert all(isinstance(v, int) and 0 <= v < P for v in r.flat)
    big = r @ r.T  # 127-bit products: no silent int64 overflow
    assert int(big[0, 0]) == sum(int(v) * int(v) for v in r[0])


# --- Shamir -------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold,num_shares", [(1, 3), (2, 3), (3, 5), (5, 5)])
def test_shamir_any_t_shares_reconstruct(threshold, num_shares):
    secret = 123456789
    shares = ss.shamir_share(secret, threshold=threshold, num_shares=num_shares)
    for subset in itertools.combinations(shares, threshold):
        assert ss.shamir_reconstruct(subset) == secret


@pytest.mark.parametrize("threshold,num_shares", [(2, 3), (3, 5), (4, 6)])
def test_shamir_t_minus_one_shares_give_a_wrong_secret(threshold, num_shares):
    secret = 424242
    shares = ss.shamir_share(secret, threshold=threshold, num_shares=num_shares)
    for subset in itertools.combinations(shares, threshold - 1):
        assert ss.shamir_reconstruct(subset) != secret


def test_shamir_t_minus_one_shares_fit_every_candidate_secret():
    # Information-theoretic hiding: through any t-1 points and ANY candidate (0, s') passes
    # a polynomial of degree t-1, so t-1 shares rule out no secret.
    shares = ss.shamir_share(7, threshold=3, num_shares=5)
    seen = shares[:2]
    for candidate in (0, 7, 99, P - 1):
        poly = [(0, candidate), *seen]
        completion = (4, ss.lagrange_interpolate(poly, 4))  # a share consistent with `candidate`
        assert ss.shamir_reconstruct([*seen, completion]) == candidate


def test_shamir_validation():
    with pytest.raises(ValueError, match="`threshold` must be an int in \\[1, 3\\]"):
        ss.shamir_share(1, threshold=4, num_shares=3)
    with pytest.raises(ValueError, match="`secret`"):
        ss.shamir_share(P, threshold=2, num_shares=3)
    with pytest.raises(ValueError, match="distinct x"):
        ss.shamir_reconstruct([(1, 5), (1, 6)])


# --- Beaver triples -----------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(x=st.lists(st.floats(-100, 100), min_size=1, max_size=8), data=st.data())
def test_beaver_elementwise_product_matches_plaintext(x, data):
    y = data.draw(st.lists(st.floats(-100, 100), min_size=len(x), max_size=len(x)))
    xs, ys = ss.share_additive(ss.encode_fixed(x)), ss.share_additive(ss.encode_fixed(y))
    triples = ss.make_beaver_triples((len(x),), (len(y),), op="mul")
    (z0, z1), _ = ss.beaver_product(xs, ys, triples, op="mul")
    z = ss.decode_fixed(ss.reconstruct_additive([z0, z1]), frac_bits=32)
    e = 2.0**-17
    bound = (np.abs(x) + np.abs(y)) * e + e * e
    assert np.all(np.abs(z - np.multiply(x, y)) <= bound + 1e-12)


def test_beaver_matmul_is_exact_on_integers():
    rng = np.random.default_rng(0)
    A = rng.integers(-1000, 1000, size=(4, 6)).astype(object)
    X = rng.integers(-1000, 1000, size=(6, 3)).astype(object)
    triples = ss.make_beaver_triples(A.shape, X.shape, op="matmul")
    (z0, z1), (E, F) = ss.beaver_product(ss.share_additive(A % P), ss.share_additive(X % P),
                                         triples, op="matmul")
    Z = ss.reconstruct_additive([z0, z1])
    signed = np.where(Z > P // 2, Z - P, Z)
    np.testing.assert_array_equal(signed.astype(np.int64), (A @ X).astype(np.int64))
    assert E.shape == A.shape and F.shape == X.shape
    assert not np.array_equal(E, A % P) and not np.array_equal(F, X % P)


def test_reusing_a_triple_leaks_the_difference_of_the_inputs():
    # Why a triple is used once: E = x - a, so two openings with the same a give x1 - x2.
    x1, x2, y = ss.encode_fixed([3.0, 5.0]), ss.encode_fixed([1.0, -2.0]), ss.encode_fixed([1, 1])
    triples = ss.make_beaver_triples((2,), (2,))
    _, (E1, _) = ss.beaver_product(ss.share_additive(x1), ss.share_additive(y), triples)
    _, (E2, _) = ss.beaver_product(ss.share_additive(x2), ss.share_additive(y), triples)
    assert ss.decode_fixed((E1 - E2) % P).tolist() == [2.0, 7.0]


def test_beaver_rejects_bad_shapes_and_ops():
    with pytest.raises(ValueError, match="do not fit"):
        ss.make_beaver_triples((2, 3), (4, 5), op="matmul")
    with pytest.raises(ValueError, match="`op` must be one of"):
        ss.make_beaver_triples((2,), (2,), op="div")
    with pytest.raises(ValueError, match="2 parties"):
        ss.beaver_product([1, 2, 3], [1, 2, 3], ss.make_beaver_triples((), ()))


# --- pairwise masking ---------------------------------------------------------------------

def test_pairwise_masks_cancel_in_the_sum():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 1000))
    keys = {(i, j): os.urandom(32) for i in range(4) for j in range(i + 1, 4)}
    masked = []
    for i in range(4):
        pair_keys = {j: keys[min(i, j), max(i, j)] for j in range(4) if j != i}
        masked.append(ss.pairwise_mask(ss.encode_ring(values[i]), client=i, pair_keys=pair_keys))
    total = np.sum(masked, axis=0, dtype=np.uint64)  # wraps modulo 2**64, like the masks
    np.testing.assert_allclose(ss.decode_ring(total), values.sum(axis=0), atol=4 * 2**-17)
    # one masked vector alone is unrelated to the client's values
    assert np.corrcoef(ss.decode_ring(masked[0]), values[0])[0, 1] < 0.2


def test_pairwise_mask_validation():
    with pytest.raises(ValueError, match="32-byte keys"):
        ss.pairwise_mask(ss.encode_ring([1.0]), client=0, pair_keys={1: b"short"})
    with pytest.raises(ValueError, match="32-byte keys"):
        ss.pairwise_mask(ss.encode_ring([1.0]), client=0, pair_keys={0: bytes(32)})
