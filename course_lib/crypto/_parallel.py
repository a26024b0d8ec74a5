"""Speed helpers for :mod:`course_lib.crypto.model`: worker threads, a fast buffer, positional I/O.

Why threads can help: pyca/cryptography releases the GIL inside ``AESGCM.encrypt_into`` and
``decrypt_into``, so several threads run AES-GCM on several cores at once. The work is
memory-bound (AES-GCM with VAES runs at ~17 GB/s per core, close to a plain memory copy), so
the main gain is that the first-touch page faults of fresh output memory are paid on several
cores. :func:`default_workers` says when that is worth it.

Why a special buffer: ``bytearray(n)`` zero-fills with ``memset`` on one thread and 4 KiB
pages (measured ~2.7 GB/s here), which alone would cost several times the encryption.
:func:`new_bytearray` asks CPython for an uninitialised bytearray (the documented C API
``PyByteArray_FromStringAndSize(NULL, n)``) and the kernel to map it at once, with huge pages
(:func:`prepare_for_writing`, also used on the tensors that decryption writes into).
Callers must overwrite every byte, and :mod:`course_lib.crypto.model` does: its regions
(prelude, header chunk, data chunks, final tag) tile the buffer by construction, and a test
encrypts twice with the same salt into buffers pre-filled with different garbage and gets
identical bytes. Besides, glibc serves buffers this large (32 MiB and more) with a fresh
``mmap``, which the kernel zero-fills, so they never hold stale data even before writing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from course_lib.errors import DecryptionError

__all__ = ["new_bytearray", "prepare_for_writing", "run_jobs", "default_workers", "read_at",
           "write_at", "POSITIONAL_IO"]

MAX_WORKERS = 4  # beyond this, memory bandwidth is the limit anyway
PARALLEL_MIN_BYTES = 16 * 2**20  # below this, starting threads costs more than it saves
_FAST_ALLOC_MIN = 32 * 2**20  # glibc always serves this size with a fresh mmap
_PAGE = mmap.PAGESIZE


def default_workers(nbytes: int) -> int:
    """Threads for ``nbytes`` of payload: 1 when small, else one per core but one, at most 4.

    One core is left for everything else on purpose. Measured on a 2-core machine while
    another process kept one core busy, two threads were 2-4x *slower* than one (each
    thread in turn waits for the GIL while the operating system runs the other process);
    on that machine idle, two threads were 1.5x faster.
    """
    if nbytes < PARALLEL_MIN_BYTES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, (cores or 1) - 1))


_ADVISE_MIN = 2**20
_MADV_POPULATE_WRITE = 23  # Linux 5.14+: map a range now, as if every page had been written


def _load_c_functions() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """CPython's ``PyByteArray_FromStringAndSize`` and libc's ``madvise``, or None."""
    if not (sys.platform.startswith("linux") and sys.implementation.name == "cpython"
            and hasattr(mmap, "MADV_HUGEPAGE")):
        return None
    try:
        from_string = ctypes.pythonapi.PyByteArray_FromStringAndSize
        from_string.restype = ctypes.py_object  # ctypes takes over the new reference
        from_string.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.restype = ctypes.c_int
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (AttributeError, OSError):  # pragma: no cover - exotic libc
        return None
    return from_string, madvise


_C = _load_c_functions()


def prepare_for_writing(buffer: Any) -> None:
    """Advise the kernel that all of ``buffer`` (writable, contiguous) is about to be written.

    Two ``madvise`` calls on the pages that lie wholly inside the buffer: ``MADV_HUGEPAGE``
    (back it with 2 MiB pages where possible) and ``MADV_POPULATE_WRITE`` (map every page
    now, in one system call). Without them, each 4 KiB page costs a page fault on the first
    write, and on the 2-core test machine fresh memory then arrived at 3-5 GB/s, against
    6-40 GB/s populated in one call (the spread is the virtual machine's own memory
    management), while AES-GCM itself runs at ~17 GB/s. Already-mapped memory is left as it
    is (the call then costs ~40 GB/s, a page-table walk). Content is unchanged. Buffers under
    1 MiB, other systems and old kernels are left alone.
    """
    if _C is None:
        return
    view = memoryview(buffer)
    if view.nbytes < _ADVISE_MIN:  # small buffers fault little; and each madvise may split
        return                     # the process's memory map, which has a size limit
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    start = -(-address // _PAGE) * _PAGE  # madvise needs page-aligned bounds
    stop = (address + view.nbytes) // _PAGE * _PAGE
    if stop > start:
        for advice in (mmap.MADV_HUGEPAGE, _MADV_POPULATE_WRITE):
            _C[1](start, stop - start, advice)  # advice only: failures are ignored


def new_bytearray(size: int) -> bytearray:
    """A bytearray of ``size`` bytes whose contents the caller must overwrite completely."""
    if _C is None or size < _FAST_ALLOC_MIN:
        return bytearray(size)
    buffer = _C[0](None, size)  # uninitialised (see the module docstring)
    prepare_for_writing(buffer)
    return buffer


_STOP = object()


def run_jobs(jobs: Iterable[Any], work: Callable[[Any, Any], None],
             make_state: Callable[[], Any], workers: int) -> None:
    """Call ``work(state, job)`` for every job, on ``workers`` threads with one state each.

    Jobs are produced lazily by the calling thread into a short queue, so a job source that
    allocates (a non-contiguous tensor made contiguous) stays bounded. The first exception
    raised by any worker is re-raised here after all threads have stopped.
    """
    if workers <= 1:
        state = make_state()
        for job in jobs:
            work(state, job)
        return
    pending: queue.Queue = queue.Queue(maxsize=2 * workers)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            state = make_state()
        except BaseException as exc:  # pragma: no cover - allocation failure
            errors.append(exc)
            state = None
        while (job := pending.get()) is not _STOP:
            if errors:
                continue  # drain the queue so the producer never blocks
            try:
                work(state, job)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for job in jobs:
            if errors:
                break
            pending.put(job)
    finally:
        for _ in threads:
            pending.put(_STOP)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


# Positional reads and writes let several threads share one file without sharing a file
# position. Where the OS lacks them (Windows), the model module runs one worker and these
# fall back to seek + read/write, which is then safe.
POSITIONAL_IO = hasattr(os, "pwrite") and hasattr(os, "preadv")


def write_at(file: Any, data: memoryview | bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of an unbuffered binary ``file``."""
    view = memoryview(data)
    if not POSITIONAL_IO:
        file.seek(offset)
    while view:
        if POSITIONAL_IO:
            written = os.pwrite(file.fileno(), view, offset)
        else:
            written = file.write(view)
        view, offset = view[written:], offset + written


def read_at(file: Any, buffer: memoryview, offset: int) -> None:
    """Fill ``buffer`` from ``offset`` of an unbuffered binary ``file``.

    Raises :class:`DecryptionError` if the file ends first: for us a short file is a
    truncated ciphertext.
    """
    if not POSITIONAL_IO:
        file.seek(offset)
    while buffer:
        if POSITIONAL_IO:
            got = os.preadv(file.fileno(), [buffer], offset)
        else:
            got = file.readinto(buffer)
        if not got:
            raise DecryptionError()
        buffer, offset = buffer[got:], offset + got
