"""Shared fixtures: RSA keys are slow to generate, so each size is made once per session."""

from __future__ import annotations

import pytest

from course_lib.crypto import asymmetric


@pytest.fixture(scope="session")
def rsa_key():
    """A 2048-bit key: the smallest the library accepts, so the tests stay fast."""
    return asymmetric.generate_private_key(key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key():
    return asymmetric.generate_private_key(key_size=2048)


@pytest.fixture(scope="session")
def digits():
    """The digits split, loaded once per session."""
    from course_lib.fl.data import load_digits

    return load_digits(seed=0)
