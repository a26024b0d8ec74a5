"""Model-parameter encryption: a state_dict <-> authenticated, chunked AES-256-GCM ciphertext.

The source text "encrypts" a model by overwriting its weights with ``torch.randn``: that
destroys the model and protects nothing. Here the parameters are really encrypted with
AES-256-GCM, come back bit for bit, and any change to the ciphertext is detected.

Public API: :func:`encrypt_state_dict` / :func:`decrypt_state_dict` (in memory),
:func:`encrypt_state_dict_into` / :func:`decrypt_state_dict_into` (in memory, into buffers and
tensors the caller already has; :func:`encrypted_size` says how large the buffer must be),
:func:`save_encrypted` / :func:`load_encrypted` (streaming, atomic files),
:func:`encrypt_state_dict_for` / :func:`decrypt_state_dict_with` (for a recipient's RSA key),
:func:`describe` (the byte layout of a blob, for teaching). Every failure to decrypt raises
:class:`~course_lib.errors.DecryptionError`; bad arguments raise ``TypeError``/``ValueError``.

Stream format (version 1); memory blobs and files hold the same bytes. Integers big-endian::

    offset      length    field
    0           7         magic b"CLMODEL"
    7           1         version, 0x01
    8           4         C, chunk size in bytes (16 <= C <= 8 MiB; 4 MiB when we write)
    12          4         H, header length in bytes (2 <= H <= 16 MiB)
    16          32        salt, random per stream
    48          H + 16    chunk 0: AES-GCM(header), associated data = bytes 0..47 (the prelude)
    64 + H      ...       chunks 1..n: each tensor's bytes, in header order, cut into pieces of
                          at most C bytes (a piece never spans two tensors), each encrypted
                          and followed by its 16-byte tag
    end - 16    16        chunk n+1: the final chunk, empty plaintext, so just a tag

The header is compact UTF-8 JSON ``{"tensors": [[name, dtype, shape], ...]}`` in state_dict
order, e.g. ``{"tensors":[["0.weight","float32",[32,64]],["0.bias","float32",[32]]]}``;
dtype is one of float64, float32, float16, bfloat16, int64, int32, int16, int8, uint8, bool.
A tensor's bytes are its memory in C order, little-endian; a tensor with no elements has no
chunk. The header is encrypted too, so names and shapes stay private.

Keys and nonces (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in
Tink's streaming AEAD)::

    stream_key || prefix = HKDF-SHA256(key, salt=salt,
                                       info=b"course_lib.crypto.model v1 stream\\0" || AD)
                           (32 + 7 bytes)
    nonce(i, last) = prefix (7) || i as uint32 (4) || 0x01 if last else 0x00 (1)

Chunk i uses nonce(i, i == n+1). So a chunk moved, dropped, duplicated or swapped fails its
tag (its index is in the nonce), cutting the stream anywhere loses the last-flagged chunk,
and the authenticated header fixes the exact stream length, so extra bytes are refused. The
associated data AD (e.g. the architecture) only enters the key derivation: the wrong AD
gives the wrong key, and the header already fails. A fresh salt gives every stream its own
key, so counter nonces never repeat under one key.

Hybrid format (for a recipient), version 1::

    0       7     magic b"CLMWRAP"
    7       1     version, 0x01
    8       2     L, length of the wrapped key (384 for RSA-3072)
    10      L     RSA-OAEP(SHA-256, MGF1-SHA-256) of a fresh 32-byte AES key
    10 + L  ...   a stream as above, under that key, with AD = bytes 0..9+L || user AD

Reading never uses pickle: the header is parsed as JSON with strict checks (known dtypes,
shapes of at most 32 non-negative ints, unique names) only *after* its tag verified, and its
length is capped at 16 MiB before anything is allocated. Tensors are rebuilt with
``torch.from_numpy`` on fresh memory that AES-GCM decrypts straight into.

Examples
--------
>>> import torch
>>> from course_lib.crypto import model, symmetric
>>> key = symmetric.generate_key()
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 2))
>>> blob = model.encrypt_state_dict(net, key, associated_data=b"Linear(4, 2)")
>>> restored = model.decrypt_state_dict(blob, key, associated_data=b"Linear(4, 2)")
>>> list(restored), torch.equal(restored["0.weight"], net[0].weight)
(['0.weight', '0.bias'], True)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from typing import NamedTuple

import torch
from cryptography.hazmat.primitives.asymmetric import rsa

from course_lib._validation import require_bytes
from course_lib.crypto import _model_format as fmt
from course_lib.crypto import _model_stream as engine
from course_lib.crypto import asymmetric, symmetric
from course_lib.crypto.symmetric import TAG_SIZE
from course_lib.errors import DecryptionError

__all__ = [
    "encrypt_state_dict", "decrypt_state_dict", "encrypt_state_dict_into",
    "decrypt_state_dict_into", "encrypted_size", "save_encrypted", "load_encrypted",
    "encrypt_state_dict_for", "decrypt_state_dict_with", "describe", "Region",
]

_CHUNK_SIZE = 4 * 2**20  # a private test seam: tests shrink it to get many chunks
_WRAP_MAGIC = b"CLMWRAP"
_WRAP_VERSION = 1

StateDict = dict[str, torch.Tensor]


class Region(NamedTuple):
    """One field of a stream, as listed by :func:`describe`."""

    offset: int
    length: int
    field: str


def _args(key: object, associated_data: object) -> tuple[bytes, bytes]:
    key = bytes(symmetric._check_key(key))
    return key, bytes(require_bytes("associated_data", associated_data))


def _view(blob: object) -> memoryview:
    return memoryview(symmetric._byte_view("blob", blob))  # flat bytes, never a copy


def _writable_view(name: str, buffer: object) -> memoryview:
    """A flat, writable byte view of ``buffer`` (bytearray, numpy array, memoryview, mmap)."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(f"`{name}` must be a writable buffer (bytearray, numpy array, "
                        f"memoryview, mmap), got {type(buffer).__name__}") from None
    if view.readonly:
        raise TypeError(f"`{name}` must be a writable buffer, got a read-only "
                        f"{type(buffer).__name__}")
    if not view.c_contiguous:
        raise ValueError(f"`{name}` must be a contiguous buffer, got a non-contiguous "
                         f"{type(buffer).__name__}")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


# ---------------------------------------------------------------------------------- memory

def encrypt_state_dict(state_dict: StateDict | torch.nn.Module, key: bytes, *,
                       associated_data: bytes = b"") -> bytearray:
    """Encrypt and authenticate every tensor of a state_dict (or ``nn.Module``) in memory.

    Parameters
    ----------
    state_dict : dict of str to torch.Tensor, or torch.nn.Module
        Dense tensors of the dtypes listed in the module docstring, on any real device.
        Names, order, dtypes and shapes are kept; tied weights come back as separate copies.
    key : bytes
        32 bytes, e.g. from :func:`course_lib.crypto.symmetric.generate_key`.
    associated_data : bytes, optional
        Context bound to the ciphertext but not stored in it (e.g. the architecture as
        text). Decryption needs the same bytes.

    Returns
    -------
    bytearray
        The stream (format in the module docstring): the parameters' size plus 80 bytes,
        the header, and 16 bytes per chunk of at most 4 MiB. A bytearray, not bytes, so that
        it is written in place without a final copy (``bytes(blob)`` copies if needed).
        Python zero-fills a new bytearray on one thread before it is written; to encrypt
        at the speed of AES-GCM, reuse a buffer with :func:`encrypt_state_dict_into`.
    """
    key, associated_data = _args(key, associated_data)
    return engine.encrypt_to_buffer(fmt.collect(state_dict), key, associated_data,
                                    chunk_size=_CHUNK_SIZE)


def encrypted_size(state_dict: StateDict | torch.nn.Module) -> int:
    """The exact length in bytes of the stream :func:`encrypt_state_dict` writes for
    ``state_dict``: the size ``out`` of :func:`encrypt_state_dict_into` needs at least.

    Arithmetic only (names, dtypes and shapes); nothing is encrypted or allocated.
    """
    return engine.plan_for(fmt.collect(state_dict), chunk_size=_CHUNK_SIZE)[1].total


def encrypt_state_dict_into(state_dict: StateDict | torch.nn.Module, key: bytes, out: object,
                            *, associated_data: bytes = b"") -> int:
    """Encrypt like :func:`encrypt_state_dict`, but into the caller's writable buffer ``out``.

    Writes the same format into ``out[:n]`` and returns ``n`` (the rest of ``out`` is left
    alone). For repeated encryption of one model, reuse one buffer: there is then no fresh
    memory to fault in or to zero, and this runs at the speed of AES-GCM itself.

    Parameters
    ----------
    state_dict, key, associated_data
        As in :func:`encrypt_state_dict`.
    out : bytearray, numpy array, memoryview, mmap or any writable contiguous buffer
        At least :func:`encrypted_size` ``(state_dict)`` bytes. It must not share memory
        with the tensors being encrypted.

    Returns
    -------
    int
        The number of bytes written, ``encrypted_size(state_dict)``.

    Raises
    ------
    TypeError, ValueError
        ``out`` read-only, not a buffer, not contiguous or too small (nothing is written),
        and the argument errors of :func:`encrypt_state_dict`. If encryption fails part way,
        the bytes written so far are zeroed before the exception propagates.

    Examples
    --------
    >>> import torch
    >>> from course_lib.crypto import model, symmetric
    >>> key, net = symmetric.generate_key(), torch.nn.Linear(4, 2)
    >>> out = bytearray(model.encrypted_size(net))
    >>> n = model.encrypt_state_dict_into(net, key, out)
    >>> n == len(out), list(model.decrypt_state_dict(out, key))
    (True, ['weight', 'bias'])
    """
    key, associated_data = _args(key, associated_data)
    entries = fmt.collect(state_dict)
    view = _writable_view("out", out)
    try:
        return engine.encrypt_into(entries, key, associated_data, view, chunk_size=_CHUNK_SIZE)
    finally:
        view.release()


def decrypt_state_dict(blob: bytes | bytearray | memoryview, key: bytes, *,
                       associated_data: bytes = b"") -> StateDict:
    """Check and decrypt a blob made by :func:`encrypt_state_dict` (or a file's bytes).

    Returns a new ``dict`` of CPU tensors with the original names, order, dtypes, shapes and
    bits; load it with ``module.load_state_dict(...)``, or decrypt straight into the module
    with :func:`decrypt_state_dict_into`.

    Raises
    ------
    DecryptionError
        For every failure: wrong key or associated data, any modified, missing, reordered or
        extra byte, an unknown version. Nothing is returned unless every chunk verified.
    TypeError, ValueError
        Only for arguments of the wrong type or a key of the wrong length.
    """
    key, associated_data = _args(key, associated_data)
    return engine.decrypt_buffer(_view(blob), key, associated_data)


def decrypt_state_dict_into(blob: bytes | bytearray | memoryview, key: bytes,
                            state_dict: StateDict | torch.nn.Module, *,
                            associated_data: bytes = b"") -> None:
    """Check and decrypt a blob straight into the existing tensors of ``state_dict``.

    Like ``module.load_state_dict(decrypt_state_dict(blob, key))`` without allocating a
    second copy of the parameters: each chunk is decrypted into the memory of the tensor
    of the same name. Pass an ``nn.Module`` to decrypt into its parameters and buffers.

    Parameters
    ----------
    blob, key, associated_data
        As in :func:`decrypt_state_dict`.
    state_dict : dict of str to torch.Tensor, or torch.nn.Module
        Exactly the blob's tensor names (any order), each a contiguous CPU tensor of the
        blob's dtype and shape. It is checked against the authenticated header before
        anything is written.

    Raises
    ------
    DecryptionError
        Every failure of the blob, as in :func:`decrypt_state_dict`. If it happens after
        writing started (a modified data chunk, a missing final chunk), every tensor of
        ``state_dict`` is zeroed: no unauthenticated plaintext is left in them.
    TypeError, ValueError
        ``state_dict`` does not match the blob (names, dtypes, shapes), or a tensor is not
        a contiguous CPU tensor; raised before anything is written.
    """
    key, associated_data = _args(key, associated_data)
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()  # detached tensors sharing the module's memory
    if not isinstance(state_dict, Mapping):
        raise TypeError("`state_dict` must be a mapping of str to torch.Tensor or an "
                        f"nn.Module, got {type(state_dict).__name__}")
    engine.decrypt_into(_view(blob), key, associated_data, state_dict)


# ----------------------------------------------------------------------------------- files

def save_encrypted(state_dict: StateDict | torch.nn.Module, path: str | os.PathLike, key: bytes,
                   *, associated_data: bytes = b"") -> None:
    """Encrypt a state_dict into the file ``path``, streaming and atomically.

    Chunks are encrypted into one 4 MiB buffer per worker thread and written in place
    (extra memory: those buffers, plus a copy of one tensor at a time if a tensor is not
    contiguous or not on the CPU), into a temporary file beside ``path`` (mode 0600). It is
    flushed to disk with ``fsync`` and renamed over ``path`` with ``os.replace``. If
    anything fails, the temporary file is removed and ``path`` is untouched: it never holds
    a partial file. Arguments as in :func:`encrypt_state_dict`.
    """
    key, associated_data = _args(key, associated_data)
    entries = fmt.collect(state_dict)
    path = _path(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with open(fd, "r+b", buffering=0) as file:
            engine.write_stream(file, entries, key, associated_data, chunk_size=_CHUNK_SIZE)
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _path(path: object) -> str:
    # An int would be taken by open() as a file descriptor; bytes paths are not supported.
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(f"`path` must be a str or os.PathLike of str, got {type(path).__name__}")
    return os.fspath(path)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); skipped where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_encrypted(path: str | os.PathLike, key: bytes, *,
                   associated_data: bytes = b"") -> StateDict:
    """Check and decrypt a file written by :func:`save_encrypted`, chunk by chunk.

    Extra memory beyond the returned tensors: one read buffer of one chunk per worker
    thread (at most 4 x 8 MiB). Raises :class:`DecryptionError` exactly as
    :func:`decrypt_state_dict` does, and ``OSError`` (e.g. ``FileNotFoundError``) if the
    file cannot be opened.
    """
    key, associated_data = _args(key, associated_data)
    with open(_path(path), "rb", buffering=0) as file:
        return engine.read_stream(file, key, associated_data)


# ----------------------------------------------------------------------------------- hybrid

def encrypt_state_dict_for(state_dict: StateDict | torch.nn.Module,
                           public_key: rsa.RSAPublicKey, *,
                           associated_data: bytes = b"") -> bytearray:
    """Encrypt a state_dict so that only the holder of ``public_key``'s private key reads it.

    A fresh AES-256 key encrypts the stream and is wrapped with RSA-OAEP (SHA-256) for the
    recipient (hybrid format in the module docstring). ``associated_data`` as in
    :func:`encrypt_state_dict`; the wrapped key is bound too.
    """
    associated_data = bytes(require_bytes("associated_data", associated_data))
    entries = fmt.collect(state_dict)
    key = symmetric.generate_key()
    wrapped = asymmetric.wrap_key(public_key, key)  # checks public_key
    prefix = (_WRAP_MAGIC + bytes([_WRAP_VERSION]) + len(wrapped).to_bytes(2, "big")
              + wrapped)
    out = engine.encrypt_to_buffer(entries, key, prefix + associated_data,
                                   chunk_size=_CHUNK_SIZE, reserve=len(prefix))
    out[:len(prefix)] = prefix
    return out


def decrypt_state_dict_with(blob: bytes | bytearray | memoryview,
                            private_key: rsa.RSAPrivateKey, *,
                            associated_data: bytes = b"") -> StateDict:
    """Decrypt a blob made by :func:`encrypt_state_dict_for` with the recipient's private key.

    Every failure (wrong private key, any modified, missing or extra byte, wrong associated
    data, unknown version) raises :class:`DecryptionError`.
    """
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError(f"`private_key` must be an RSA private key, "
                        f"got {type(private_key).__name__}")
    associated_data = bytes(require_bytes("associated_data", associated_data))
    view = _view(blob)
    size = (private_key.key_size + 7) // 8
    start = len(_WRAP_MAGIC) + 3 + size
    if (len(view) < start or view[:len(_WRAP_MAGIC)] != _WRAP_MAGIC
            or view[len(_WRAP_MAGIC)] != _WRAP_VERSION
            or int.from_bytes(view[len(_WRAP_MAGIC) + 1:len(_WRAP_MAGIC) + 3], "big") != size):
        raise DecryptionError()
    prefix = bytes(view[:start])
    key = asymmetric.unwrap_key(private_key, prefix[len(_WRAP_MAGIC) + 3:])
    return engine.decrypt_buffer(view[start:], key, prefix + associated_data)


# --------------------------------------------------------------------------------- teaching

def describe(blob: bytes | bytearray | memoryview, key: bytes, *,
             associated_data: bytes = b"") -> list[Region]:
    """List the fields of a stream, with offsets and lengths, for teaching and debugging.

    Only the header chunk is authenticated (its tag must verify, else
    :class:`DecryptionError`); the data chunks are located, not checked.
    """
    key, associated_data = _args(key, associated_data)
    view = _view(blob)
    stream = engine.open_stream(lambda offset, n: view[offset:offset + n], len(view), key,
                                associated_data)
    plan = stream.plan
    regions = [Region(0, 7, "magic b'CLMODEL'"), Region(7, 1, f"version {fmt.VERSION}"),
               Region(8, 4, f"chunk size C = {plan.chunk_size}"),
               Region(12, 4, f"header length H = {plan.header_size}"),
               Region(16, fmt.SALT_SIZE, "salt (random)"),
               Region(fmt.PRELUDE_SIZE, plan.header_size + TAG_SIZE,
                      f"chunk 0: header + tag, decrypted: {fmt.header_text(plan)}")]
    for c in fmt.iter_chunks(plan):
        name = plan.names[c.tensor]
        regions.append(Region(c.offset, c.length + TAG_SIZE,
                              f"chunk {c.index}: {name} bytes [{c.start}, {c.start + c.length})"
                              " + tag"))
    regions.append(Region(plan.total - TAG_SIZE, TAG_SIZE,
                          f"chunk {plan.num_chunks + 1}: final (empty) + tag"))
    return regions
