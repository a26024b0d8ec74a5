"""Fixtures for the attack tests: the digits split is loaded once."""

from __future__ import annotations

import pytest

from course_lib.fl.data import load_digits


@pytest.fixture(scope="session")
def digits():
    return load_digits(seed=0)
