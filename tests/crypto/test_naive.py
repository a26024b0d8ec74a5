"""The naive baseline (torch.save + Fernet) works, and refuses a modified token."""

from __future__ import annotations

import pytest
import torch

from course_lib.crypto import naive
from course_lib.errors import DecryptionError


def test_round_trip_and_tamper():
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "n": torch.tensor(3)}
    key = naive.generate_key()
    token = naive.encrypt_state_dict(state, key)
    out = naive.decrypt_state_dict(token, key)
    assert list(out) == ["w", "n"] and all(torch.equal(out[k], state[k]) for k in state)
    bad = bytearray(token)
    bad[60] ^= 1
    with pytest.raises(DecryptionError):
        naive.decrypt_state_dict(bytes(bad), key)
    with pytest.raises(DecryptionError):
        naive.decrypt_state_dict(token, naive.generate_key())
