"""The optional CKKS wrapper: skipped with a reason when TenSEAL (the 'he' extra) is absent;
the error path for a missing TenSEAL is tested either way."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from course_lib.crypto import ckks

needs_tenseal = pytest.mark.skipif(
    not ckks.is_available(),
    reason="TenSEAL is not installed (optional extra: pip install 'model-privacy-course[he]')")


@pytest.fixture(scope="module")
def context():
    return ckks.make_context()


@needs_tenseal
def test_add_and_multiply_by_plaintext(context):
    rng = np.random.default_rng(0)
    a, b, w = rng.uniform(-1, 1, (3, 100))
    ea, eb = ckks.encrypt(context, a), ckks.encrypt(context, b)
    np.testing.assert_allclose((ea + eb).decrypt(), a + b, atol=1e-5)
    np.testing.assert_allclose((ea * w).decrypt(), a * w, atol=1e-5)
    np.testing.assert_allclose((0.5 * ea).decrypt(), 0.5 * a, atol=1e-5)


@needs_tenseal
def test_long_vectors_are_split_into_ciphertexts(context):
    x = np.linspace(-1, 1, 10_000)
    clients = [ckks.encrypt(context, x * k) for k in range(1, 4)]
    total = sum(clients)
    assert len(total.chunks) == 3 and total.length == 10_000  # 4096 slots per ciphertext
    np.testing.assert_allclose(total.decrypt(), 6 * x, atol=1e-4)
    assert total.nbytes > 100_000
    with pytest.raises(ValueError, match="same length"):
        total + ckks.encrypt(context, x[:10])


@needs_tenseal
def test_public_context_cannot_decrypt(context):
    public = ckks.public_context(context)
    encrypted = ckks.encrypt(public, [1.0, 2.0])
    with pytest.raises(ValueError, match="secret"):
        encrypted.decrypt()
    np.testing.assert_allclose(encrypted.decrypt(context.secret_key()), [1.0, 2.0], atol=1e-5)


def test_missing_tenseal_raises_an_import_error_naming_the_extra(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "tenseal":
            raise ImportError("No module named 'tenseal'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    assert ckks.is_available() is False
    with pytest.raises(ImportError, match="'he' extra") as info:
        ckks.make_context()
    assert isinstance(info.value, ckks.MissingExtraError)
