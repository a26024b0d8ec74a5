"""The stream engine behind :mod:`course_lib.crypto.model`: encrypt and decrypt, memory or file.

Loops over the same chunk plan (format in :mod:`course_lib.crypto.model`):

- :func:`encrypt_to_buffer`  tensors -> one new bytearray (``encrypt_into`` each chunk in place)
- :func:`encrypt_into`       tensors -> the caller's writable buffer (the same loop, :func:`_seal`)
- :func:`decrypt_buffer`     bytes-like -> new tensors (``decrypt_into`` straight into them)
- :func:`decrypt_into`       bytes-like -> the caller's tensors (the same loop, checked first)
- :func:`write_stream`       tensors -> file, chunk by chunk through one buffer per worker
- :func:`read_stream`        file -> new tensors, chunk by chunk through one buffer per worker

Nothing is joined or copied on the way: plaintext pieces are views of the tensors' memory,
ciphertext pieces are views of the output (or of a reusable chunk buffer for files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from course_lib.crypto import _model_format as fmt
from course_lib.crypto import _parallel
from course_lib.crypto._parallel import read_at, write_at
from course_lib.crypto.symmetric import TAG_SIZE
from course_lib.errors import DecryptionError

Entries = list[tuple[str, torch.Tensor]]
Job = tuple[bytes, memoryview, int, int]  # (nonce, plaintext piece or target, offset, length)


class Stream(NamedTuple):
    plan: fmt.Plan
    key: bytes  # the per-stream AES key
    prefix: bytes  # the 7-byte nonce prefix

    def final_nonce(self) -> bytes:
        return fmt.nonce(self.prefix, self.plan.num_chunks + 1, True)


# ---------------------------------------------------------------------------------- encrypt

def plan_for(entries: Entries, *, chunk_size: int) -> tuple[bytes, fmt.Plan]:
    """The header and plan of a stream of ``entries`` (arithmetic only, nothing allocated)."""
    header = fmt.encode_header(entries)
    plan = fmt.make_plan([n for n, _ in entries], [t.dtype for _, t in entries],
                         [tuple(t.shape) for _, t in entries],
                         chunk_size=chunk_size, header_size=len(header))
    if plan.num_chunks + 1 > fmt.MAX_CHUNKS:
        raise ValueError(f"`state_dict` needs {plan.num_chunks} chunks, more than the format's "
                         f"{fmt.MAX_CHUNKS - 1}")
    return header, plan


def begin(entries: Entries, key: bytes, associated_data: bytes, *,
          chunk_size: int) -> tuple[Stream, bytes]:
    """Plan a new stream; return it with its first bytes (prelude + sealed header)."""
    if not fmt.MIN_CHUNK_SIZE <= chunk_size <= fmt.MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be in [{fmt.MIN_CHUNK_SIZE}, {fmt.MAX_CHUNK_SIZE}], "
                         f"got {chunk_size}")
    header, plan = plan_for(entries, chunk_size=chunk_size)
    salt = os.urandom(fmt.SALT_SIZE)
    prelude = fmt.pack_prelude(chunk_size, len(header), salt)
    stream_key, prefix = fmt.stream_keys(key, salt, associated_data)
    sealed = AESGCM(stream_key).encrypt(fmt.nonce(prefix, 0, False), header, prelude)
    return Stream(plan, stream_key, prefix), prelude + sealed


def _sources(stream: Stream, entries: Entries) -> Iterator[Job]:
    """``(nonce, plaintext piece, offset, length)`` per data chunk, one tensor at a time."""
    current, view = -1, memoryview(b"")
    for chunk in fmt.iter_chunks(stream.plan):
        if chunk.tensor != current:  # a copy only if the tensor is not contiguous
            current, view = chunk.tensor, fmt.byte_view(entries[chunk.tensor][1])
        yield (fmt.nonce(stream.prefix, chunk.index, False),
               view[chunk.start:chunk.start + chunk.length], chunk.offset, chunk.length)


def _seal(stream: Stream, head: bytes, entries: Entries, view: memoryview) -> None:
    """Write the whole stream into ``view`` (exactly ``plan.total`` writable bytes).

    The regions written (prelude + header chunk, data chunks, final tag) tile ``view``
    exactly: each chunk starts where the previous one ended, so no byte keeps what the
    memory held before. On failure ``view`` is zeroed before the exception propagates.
    """
    total = stream.plan.total

    def work(aead: AESGCM, job: Job) -> None:
        nonce, piece, offset, length = job
        aead.encrypt_into(nonce, piece, b"", view[offset:offset + length + TAG_SIZE])

    try:
        view[:len(head)] = head
        _parallel.run_jobs(_sources(stream, entries), work, lambda: AESGCM(stream.key),
                           _parallel.default_workers(total))
        AESGCM(stream.key).encrypt_into(stream.final_nonce(), b"", b"", view[total - TAG_SIZE:])
    except BaseException as exc:  # a half-written stream must not outlive the error
        _parallel.discard(exc, [view])
        del view
        raise


def encrypt_to_buffer(entries: Entries, key: bytes, associated_data: bytes, *,
                      chunk_size: int, reserve: int = 0) -> bytearray:
    """The whole stream in a new bytearray, after ``reserve`` bytes left for the caller."""
    stream, head = begin(entries, key, associated_data, chunk_size=chunk_size)
    out = _parallel.new_bytearray(reserve + stream.plan.total)
    view = memoryview(out)[reserve:]
    try:
        _seal(stream, head, entries, view)  # zeroes what it wrote if it fails
    except BaseException as exc:
        _parallel.discard(exc, [])
        view.release()
        del out, view
        raise
    view.release()  # no export left: the caller may resize the bytearray
    return out


def encrypt_into(entries: Entries, key: bytes, associated_data: bytes, out: memoryview, *,
                 chunk_size: int) -> int:
    """Write the stream into the first bytes of the caller's flat writable ``out``; its length.

    ``out`` too small raises ValueError before anything is written; on any later failure the
    bytes written so far are zeroed.
    """
    stream, head = begin(entries, key, associated_data, chunk_size=chunk_size)
    total = stream.plan.total
    if out.nbytes < total:
        raise ValueError(f"`out` must hold at least {total} bytes (encrypted_size(state_dict)), "
                         f"got {out.nbytes} bytes")
    view = out[:total]
    try:
        _seal(stream, head, entries, view)
    finally:
        view.release()
    return total


def write_stream(file: Any, entries: Entries, key: bytes, associated_data: bytes, *,
                 chunk_size: int) -> None:
    """Write the stream to an unbuffered binary file, one chunk buffer per worker."""
    stream, head = begin(entries, key, associated_data, chunk_size=chunk_size)
    write_at(file, head, 0)

    def work(state: tuple[AESGCM, memoryview], job: Job) -> None:
        aead, buffer = state
        nonce, piece, offset, length = job
        sealed = buffer[:length + TAG_SIZE]
        aead.encrypt_into(nonce, piece, b"", sealed)
        write_at(file, sealed, offset)

    workers = _parallel.default_workers(stream.plan.total) if _parallel.POSITIONAL_IO else 1
    _parallel.run_jobs(_sources(stream, entries), work,
                       lambda: (AESGCM(stream.key), memoryview(bytearray(chunk_size + TAG_SIZE))),
                       workers)
    tag = AESGCM(stream.key).encrypt(stream.final_nonce(), b"", b"")
    write_at(file, tag, stream.plan.total - TAG_SIZE)


# ---------------------------------------------------------------------------------- decrypt

def open_stream(read: Callable[[int, int], bytes | memoryview], size: int, key: bytes,
                associated_data: bytes) -> Stream:
    """Check the prelude and header of a stream of ``size`` bytes; return its plan.

    Before the header's tag verifies, only the prelude's range checks run and at most
    ``MAX_HEADER_SIZE + 16`` bytes are read; the plan's length must then equal ``size``, so
    nothing larger than the input is ever allocated.
    """
    if size < fmt.PRELUDE_SIZE:
        raise DecryptionError()
    prelude = bytes(read(0, fmt.PRELUDE_SIZE))
    chunk_size, header_size, salt = fmt.parse_prelude(prelude)
    if size < fmt.PRELUDE_SIZE + header_size + TAG_SIZE:
        raise DecryptionError()
    stream_key, prefix = fmt.stream_keys(key, salt, associated_data)
    sealed = read(fmt.PRELUDE_SIZE, header_size + TAG_SIZE)
    try:
        header = AESGCM(stream_key).decrypt(fmt.nonce(prefix, 0, False), sealed, prelude)
    except InvalidTag:
        raise DecryptionError() from None
    plan = fmt.make_plan(*fmt.decode_header(header), chunk_size=chunk_size,
                         header_size=header_size)
    if plan.total != size or plan.num_chunks + 1 > fmt.MAX_CHUNKS:
        raise DecryptionError()
    return Stream(plan, stream_key, prefix)


def _new_tensor(dtype: torch.dtype, shape: tuple[int, ...],
                size: int) -> tuple[torch.Tensor, memoryview | None]:
    """A new tensor to decrypt into and a writable byte view of its memory (None if empty)."""
    if size == 0:
        return torch.empty(shape, dtype=dtype), None
    raw = np.empty(size, dtype=np.uint8)  # (nbytes,), uninitialised: decryption fills it
    return torch.from_numpy(raw).view(dtype).reshape(shape), memoryview(raw)


def _targets(stream: Stream) -> tuple[dict[str, torch.Tensor], list[memoryview | None]]:
    """Allocate the tensors; return them and their byte views."""
    plan = stream.plan
    tensors, views = [], []
    for dtype, shape, nbytes in zip(plan.dtypes, plan.shapes, plan.nbytes):
        tensor, view = _new_tensor(dtype, shape, nbytes)
        tensors.append(tensor)
        views.append(view)
    return dict(zip(plan.names, tensors)), views


def _jobs(stream: Stream, views: list[memoryview | None]) -> Iterator[Job]:
    """``(nonce, destination, offset, length)`` per data chunk."""
    return ((fmt.nonce(stream.prefix, c.index, False), views[c.tensor][c.start:c.start + c.length],
             c.offset, c.length) for c in fmt.iter_chunks(stream.plan))


def _check_final(stream: Stream, tag: bytes | memoryview) -> None:
    try:
        AESGCM(stream.key).decrypt(stream.final_nonce(), tag, b"")
    except InvalidTag:
        raise DecryptionError() from None


def _given_targets(stream: Stream, state_dict: dict[str, torch.Tensor]) -> list[memoryview | None]:
    """Writable byte views of the caller's tensors, in stream order, after checking that they
    have exactly the names, dtypes and shapes of the (authenticated) header; ValueError or
    TypeError naming ``state_dict`` otherwise, before anything is written."""
    plan = stream.plan
    missing = [n for n in plan.names if n not in state_dict]
    known = set(plan.names)
    unexpected = [n for n in state_dict if n not in known]
    if missing or unexpected:
        raise ValueError(f"`state_dict` must have exactly the blob's tensors; missing "
                         f"{missing}, unexpected {unexpected}")
    views: list[memoryview | None] = []
    for name, dtype, shape, nbytes in zip(plan.names, plan.dtypes, plan.shapes, plan.nbytes):
        tensor, where = state_dict[name], f"`state_dict[{name!r}]`"
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ValueError(f"{where} must have dtype {dtype} and shape {list(shape)} as in "
                             f"the blob, got {tensor.dtype} and {list(tensor.shape)}")
        if (tensor.device.type != "cpu" or tensor.layout != torch.strided
                or not tensor.is_contiguous() or tensor.is_neg() or tensor.is_conj()):
            raise ValueError(f"{where} must be a contiguous CPU tensor to decrypt into, got "
                             f"device {tensor.device}, contiguous {tensor.is_contiguous()}")
        if nbytes == 0:
            views.append(None)
        else:  # (nbytes,) uint8, sharing the tensor's memory
            views.append(memoryview(tensor.detach().reshape(-1).view(torch.uint8).numpy()))
    return views


def _decrypt_chunks(view: memoryview, stream: Stream, views: list[memoryview | None]) -> None:
    """Decrypt every data chunk of ``view`` into ``views`` and check the final tag; on any
    failure zero ``views`` (unauthenticated plaintext must not outlive the error)."""

    def work(aead: AESGCM, job: Job) -> None:
        nonce, target, offset, length = job
        try:
            aead.decrypt_into(nonce, view[offset:offset + length + TAG_SIZE], b"", target)
        except InvalidTag:
            raise DecryptionError() from None

    total = stream.plan.total
    jobs = _jobs(stream, views)
    try:
        _parallel.run_jobs(jobs, work, lambda: AESGCM(stream.key),
                           _parallel.default_workers(total))
        _check_final(stream, view[total - TAG_SIZE:])
    except BaseException as exc:
        _parallel.discard(exc, views)
        del views, jobs
        raise


def decrypt_buffer(view: memoryview, key: bytes, associated_data: bytes) -> dict[str, torch.Tensor]:
    """Decrypt a whole stream held in memory into new tensors; any failure -> DecryptionError."""
    stream = open_stream(lambda offset, n: view[offset:offset + n], len(view), key,
                         associated_data)
    result, targets = _targets(stream)
    try:
        _decrypt_chunks(view, stream, targets)
    except BaseException as exc:  # _decrypt_chunks zeroed them; drop every reference
        _parallel.discard(exc, [])
        result.clear()
        del result, targets
        raise
    return result


def decrypt_into(view: memoryview, key: bytes, associated_data: bytes,
                 state_dict: dict[str, torch.Tensor]) -> None:
    """Decrypt a whole stream held in memory into the caller's tensors (checked first)."""
    stream = open_stream(lambda offset, n: view[offset:offset + n], len(view), key,
                         associated_data)
    targets = _given_targets(stream, state_dict)
    try:
        _decrypt_chunks(view, stream, targets)
    except BaseException as exc:
        _parallel.discard(exc, [])
        del targets
        raise


def read_stream(file: Any, key: bytes, associated_data: bytes) -> dict[str, torch.Tensor]:
    """Decrypt a stream from an unbuffered binary file, one chunk buffer per worker."""
    size = os.fstat(file.fileno()).st_size

    def read(offset: int, n: int) -> bytes:
        buffer = bytearray(n)
        read_at(file, memoryview(buffer), offset)
        return bytes(buffer)

    stream = open_stream(read, size, key, associated_data)
    result, targets = _targets(stream)
    jobs = _jobs(stream, targets)
    largest = min(stream.plan.chunk_size, max(stream.plan.nbytes, default=0))

    def work(state: tuple[AESGCM, memoryview], job: Job) -> None:
        aead, buffer = state
        nonce, target, offset, length = job
        sealed = buffer[:length + TAG_SIZE]
        read_at(file, sealed, offset)
        try:
            aead.decrypt_into(nonce, sealed, b"", target)
        except InvalidTag:
            raise DecryptionError() from None

    workers = _parallel.default_workers(size) if _parallel.POSITIONAL_IO else 1
    try:
        _parallel.run_jobs(jobs, work, lambda: (AESGCM(stream.key),
                                                memoryview(bytearray(largest + TAG_SIZE))),
                           workers)
        _check_final(stream, read(size - TAG_SIZE, TAG_SIZE))
        if os.fstat(file.fileno()).st_size != size:  # the file grew or shrank while we read it
            raise DecryptionError()
    except BaseException as exc:  # unauthenticated plaintext must not outlive the error
        _parallel.discard(exc, targets)
        result.clear()
        del result, targets, jobs
        raise
    return result
