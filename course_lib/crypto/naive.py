"""The naive way to encrypt a model: ``torch.save`` + Fernet. A *baseline for comparison* only.

This is what a first attempt (and many tutorials) write::

    buffer = io.BytesIO(); torch.save(state_dict, buffer)
    token = Fernet(key).encrypt(buffer.getvalue())
    ...
    state_dict = torch.load(io.BytesIO(Fernet(key).decrypt(token)), weights_only=True)

It is correct: Fernet is authenticated encryption (AES-128-CBC + HMAC-SHA256), so a
modified token is refused. :mod:`course_lib.crypto.model` is what the course uses instead,
for two reasons.

Speed. ``torch.save`` pickles the state_dict into a zip archive (a copy of every tensor);
``getvalue`` copies it again; Fernet pads it for CBC, encrypts it (a third copy), computes
an HMAC over it in a second pass, then base64-encodes the whole token, which copies once
more and makes it 33 % larger. Decryption undoes each step, and ``torch.load`` copies the
tensors out of the archive. CBC encryption cannot run in parallel either.
``benchmarks/bench_crypto.py`` measures the difference side by side.

Safety. ``torch.load`` reads a *pickle*, and unpickling untrusted data can run arbitrary
code. ``weights_only=True`` (the default since torch 2.6) restricts the unpickler to tensors
and plain containers, which closes the known holes, but it is still a complex parser run on
the data; here it only ever sees bytes that passed Fernet's HMAC, i.e. bytes made by a key
holder. :mod:`course_lib.crypto.model` never unpickles at all: its header is strict JSON
checked after authentication.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import torch
from cryptography.fernet import Fernet, InvalidToken

from course_lib._validation import require_bytes
from course_lib.errors import DecryptionError

__all__ = ["generate_key", "encrypt_state_dict", "decrypt_state_dict"]


def generate_key() -> bytes:
    """A fresh Fernet key (32 random bytes, url-safe base64 encoded: 44 bytes)."""
    return Fernet.generate_key()


def _fernet(key: object) -> Fernet:
    key = bytes(require_bytes("key", key))
    try:
        return Fernet(key)
    except ValueError:  # binascii.Error is a ValueError
        raise ValueError(f"`key` must be a Fernet key (32 random bytes, url-safe base64: 44 "
                         f"bytes, see generate_key()), got {len(key)} bytes") from None


def encrypt_state_dict(state_dict: dict[str, torch.Tensor], key: bytes) -> bytes:
    """``torch.save`` to memory, then Fernet-encrypt the bytes. Returns a Fernet token."""
    fernet = _fernet(key)
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise TypeError("`state_dict` must be a mapping of str to torch.Tensor or an "
                        f"nn.Module, got {type(state_dict).__name__}")
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return fernet.encrypt(buffer.getvalue())


def decrypt_state_dict(token: bytes, key: bytes) -> dict[str, torch.Tensor]:
    """Fernet-decrypt, then ``torch.load(..., weights_only=True)``.

    A token that fails Fernet's check, or whose authenticated content is not a saved
    state_dict, raises :class:`~course_lib.errors.DecryptionError`.
    """
    fernet = _fernet(key)
    token = bytes(require_bytes("token", token))
    try:
        plaintext = fernet.decrypt(token)
    except InvalidToken:
        raise DecryptionError() from None
    try:
        state_dict = torch.load(io.BytesIO(plaintext), weights_only=True)
    except Exception:  # pickle, zip and torch errors alike: one error, no oracle
        raise DecryptionError() from None
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise DecryptionError()
    return state_dict
