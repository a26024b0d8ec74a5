"""Encrypted inference on the whole digits test set (450 images), both directions of privacy.

The Paillier test uses a real 2048-bit key: samples are packed into slots (38 per ciphertext),
so the client encrypts 12 x 64 ciphertexts instead of 450 x 64, and the server's work is per
batch; the whole test set takes a few seconds. Toy keys appear only in the error-path tests.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from course_lib.crypto import inference, paillier
from course_lib.crypto import secret_sharing as ss
from course_lib.crypto.linear import LinearModel, train_linear
from course_lib.fl.data import load_digits

pytestmark = pytest.mark.filterwarnings("ignore::course_lib.crypto.insecure.InsecureWarning")

INPUT_BOUND = 128.0  # standardised digits stay below 89 in magnitude


@pytest.fixture(scope="module")
def setup():
    data = load_digits(seed=0)
    model = train_linear(data.X_train, data.y_train)
    return model, data.X_test.numpy(), data.y_test.numpy()


@pytest.fixture(scope="module")
def keys():
    return paillier.generate_keypair()


def test_linear_model_is_accurate_and_deterministic(setup):
    model, X, y = setup
    assert model.accuracy(X, y) > 0.95
    data = load_digits(seed=0)
    again = train_linear(data.X_train, data.y_train)
    np.testing.assert_array_equal(again.weight, model.weight)
    assert repr(model) == "LinearModel(64 -> 10)"


def test_paillier_inference_matches_the_plaintext_model_on_the_whole_test_set(setup, keys):
    model, X, _ = setup
    public_key, private_key = keys
    slot_bits = inference.required_slot_bits(model.weight, model.bias, input_bound=INPUT_BOUND)
    batch = inference.encrypt_features(private_key, X, input_bound=INPUT_BOUND,
                                       slot_bits=slot_bits)  # client
    assert batch.num_samples == 450 and len(batch.ciphertexts) == -(-450 // batch.slots)
    encrypted_logits = inference.encrypted_linear(batch, model.weight, model.bias)  # server
    logits = inference.decrypt_logits(private_key, encrypted_logits)  # client
    plain = model.logits(X)
    assert logits.shape == (450, 10)
    bound = inference.logit_error_bound(model.weight, X)
    assert np.all(np.abs(logits - plain).max(axis=1) <= bound)
    np.testing.assert_array_equal(logits.argmax(axis=1), model.predict(X))


def test_one_digit_with_the_public_key(setup, keys):
    model, X, _ = setup
    public_key, private_key = keys
    batch = inference.encrypt_features(public_key, X[None, 7], input_bound=INPUT_BOUND)
    assert len(batch.ciphertexts) == 1 and len(batch.ciphertexts[0]) == 64
    logits = inference.decrypt_logits(private_key,
                                      inference.encrypted_linear(batch, model.weight, model.bias))
    np.testing.assert_allclose(logits[0], model.logits(X[7]), atol=1e-3)


def test_two_servers_match_the_plaintext_model_on_the_whole_test_set(setup):
    model, X, _ = setup
    result = inference.two_server_linear(model.weight, model.bias, X)
    plain = model.logits(X)
    assert result.logits.shape == (450, 10)
    bound = inference.logit_error_bound(model.weight, X)
    assert np.all(np.abs(result.logits - plain).max(axis=1) <= bound)
    np.testing.assert_array_equal(result.logits.argmax(axis=1), model.predict(X))


def test_neither_server_sees_the_weights_or_the_input(setup):
    model, X, _ = setup
    first = inference.two_server_linear(model.weight, model.bias, X[:5])
    second = inference.two_server_linear(model.weight, model.bias, X[:5])
    for view in first.views:
        # a share on its own decodes to field noise, not to the weights or the pixels
        assert np.all(np.abs(ss.decode_fixed(view["weight_share"], frac_bits=20)) > 1e6)
        assert np.all(np.abs(ss.decode_fixed(view["input_share"], frac_bits=20)) > 1e6)
    # the opened matrices are one-time-padded: fresh for every run, far from W and X
    E1, E2 = first.views[0]["opened_weight_minus_A"], second.views[0]["opened_weight_minus_A"]
    assert not np.array_equal(E1, E2)
    assert np.all(np.abs(ss.decode_fixed(E1, frac_bits=20)) > 1e6)
    np.testing.assert_array_equal(first.logits.argmax(1), second.logits.argmax(1))
    seeded = [inference.two_server_linear(model.weight, model.bias, X[:2], unsafe_seed=4)
              for _ in range(2)]
    np.testing.assert_array_equal(seeded[0].views[1]["opened_input_minus_B"],
                                  seeded[1].views[1]["opened_input_minus_B"])


def test_input_outside_the_bound_and_slot_overflow_are_refused():
    public_key, private_key = paillier.generate_keypair_unsafe_toy(512, seed=0)
    model = LinearModel(weight=np.full((2, 3), 4.0), bias=np.zeros(2))
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="`X` must lie in"):
        inference.encrypt_features(private_key, X * 20, input_bound=10.0)
    needed = inference.required_slot_bits(model.weight, model.bias, input_bound=10.0)
    narrow = inference.encrypt_features(private_key, X, input_bound=10.0, slot_bits=needed - 1)
    with pytest.raises(ValueError, match="slot overflow"):
        inference.encrypted_linear(narrow, model.weight, model.bias)
    wide = inference.encrypt_features(private_key, X, input_bound=10.0, slot_bits=needed)
    logits = inference.decrypt_logits(private_key,
                                      inference.encrypted_linear(wide, model.weight, model.bias))
    np.testing.assert_array_equal(logits, np.full((4, 2), 12.0))


def test_results_are_rerandomised(setup):
    public_key, private_key = paillier.generate_keypair_unsafe_toy(512, seed=0)
    model, X, _ = setup
    batch = inference.encrypt_features(private_key, X[:3], input_bound=INPUT_BOUND)
    raw = inference.encrypted_linear(batch, model.weight, model.bias, rerandomize=False)
    fresh = inference.encrypted_linear(batch, model.weight, model.bias)
    assert raw.ciphertexts[0][0].ciphertext != fresh.ciphertexts[0][0].ciphertext
    np.testing.assert_array_equal(inference.decrypt_logits(private_key, raw),
                                  inference.decrypt_logits(private_key, fresh))


def test_crypto_inference_does_not_import_torch():
    code = "import sys, course_lib.crypto.inference; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
