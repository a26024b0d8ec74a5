"""The stream engine behind :mod:`course_lib.crypto.model`: encrypt and decrypt, memory or file.

Four loops over the same chunk plan (format in :mod:`course_lib.crypto.model`):

- :func:`encrypt_to_buffer`  tensors -> one new bytearray (``encrypt_into`` each chunk in place)
- :func:`decrypt_buffer`     bytes-like -> new tensors (``decrypt_into`` straight into them)
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

def begin(entries: Entries, key: bytes, associated_data: bytes, *,
          chunk_size: int) -> tuple[Stream, bytes]:
    """Plan a new stream; return it with its first bytes (prelude + sealed header)."""
    if not fmt.MIN_CHUNK_SIZE <= chunk_size <= fmt.MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be in [{fmt.MIN_CHUNK_SIZE}, {fmt.MAX_CHUNK_SIZE}], "
                         f"got {chunk_size}")
    header = fmt.encode_header(entries)
    plan = fmt.make_plan([n for n, _ in entries], [t.dtype for _, t in entries],
                         [tuple(t.shape) for _, t in entries],
                         chunk_size=chunk_size, header_size=len(header))
    if plan.num_chunks + 1 > fmt.MAX_CHUNKS:
        raise ValueError(f"`state_dict` needs {plan.num_chunks} chunks, more than the format's "
                         f"{fmt.MAX_CHUNKS - 1}")
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


def encrypt_to_buffer(entries: Entries, key: bytes, associated_data: bytes, *,
                      chunk_size: int, reserve: int = 0) -> bytearray:
    """The whole stream in a new bytearray, after ``reserve`` bytes left for the caller.

    The regions written (prelude + header chunk, data chunks, final tag) tile
    ``[reserve, reserve + total)`` exactly: each chunk starts where the previous one ended.
    """
    stream, head = begin(entries, key, associated_data, chunk_size=chunk_size)
    total = stream.plan.total
    out = _parallel.new_bytearray(reserve + total)
    view = memoryview(out)[reserve:]

    def work(aead: AESGCM, job: Job) -> None:
        nonce, piece, offset, length = job
        aead.encrypt_into(nonce, piece, b"", view[offset:offset + length + TAG_SIZE])

    try:
        view[:len(head)] = head
        _parallel.run_jobs(_sources(stream, entries), work, lambda: AESGCM(stream.key),
                           _parallel.default_workers(total))
        AESGCM(stream.key).encrypt_into(stream.final_nonce(), b"", b"", view[total - TAG_SIZE:])
    except BaseException as exc:  # a half-written stream must not outlive the error
        _parallel.discard(exc, [out])
        del out, view
        raise
    view.release()
    return out


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


def _targets(stream: Stream) -> tuple[dict[str, torch.Tensor], list[memoryview | None],
                                      Iterator[Job]]:
    """Allocate the tensors; return them, their byte views and
    ``(nonce, destination, offset, length)`` jobs."""
    plan = stream.plan
    tensors, views = [], []
    for dtype, shape, nbytes in zip(plan.dtypes, plan.shapes, plan.nbytes):
        tensor, view = _new_tensor(dtype, shape, nbytes)
        tensors.append(tensor)
        views.append(view)
    jobs = ((fmt.nonce(stream.prefix, c.index, False), views[c.tensor][c.start:c.start + c.length],
             c.offset, c.length) for c in fmt.iter_chunks(plan))
    return dict(zip(plan.names, tensors)), views, jobs


def _check_final(stream: Stream, tag: bytes | memoryview) -> None:
    try:
        AESGCM(stream.key).decrypt(stream.final_nonce(), tag, b"")
    except InvalidTag:
        raise DecryptionError() from None


def decrypt_buffer(view: memoryview, key: bytes, associated_data: bytes) -> dict[str, torch.Tensor]:
    """Decrypt a whole stream held in memory; any failure raises DecryptionError."""
    stream = open_stream(lambda offset, n: view[offset:offset + n], len(view), key,
                         associated_data)
    result, targets, jobs = _targets(stream)

    def work(aead: AESGCM, job: Job) -> None:
        nonce, target, offset, length = job
        try:
            aead.decrypt_into(nonce, view[offset:offset + length + TAG_SIZE], b"", target)
        except InvalidTag:
            raise DecryptionError() from None

    total = stream.plan.total
    try:
        _parallel.run_jobs(jobs, work, lambda: AESGCM(stream.key),
                           _parallel.default_workers(total))
        _check_final(stream, view[total - TAG_SIZE:])
    except BaseException as exc:  # unauthenticated plaintext must not outlive the error
        _parallel.discard(exc, targets)
        result.clear()
        del result, targets, jobs
        raise
    return result


def read_stream(file: Any, key: bytes, associated_data: bytes) -> dict[str, torch.Tensor]:
    """Decrypt a stream from an unbuffered binary file, one chunk buffer per worker."""
    size = os.fstat(file.fileno()).st_size

    def read(offset: int, n: int) -> bytes:
        buffer = bytearray(n)
        read_at(file, memoryview(buffer), offset)
        return bytes(buffer)

    stream = open_stream(read, size, key, associated_data)
    result, targets, jobs = _targets(stream)
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
