"""Helpers for :mod:`course_lib.crypto.model`: output buffers, worker threads, positional I/O.

Why threads can help: pyca/cryptography releases the GIL inside ``AESGCM.encrypt_into`` and
``decrypt_into``, so several threads run AES-GCM on several cores at once. The work is
memory-bound (AES-GCM with VAES runs close to a plain memory copy), yet on the 2-core test
machine two threads still encrypt warm memory at about 10 GB/s against 5.5-6 GB/s for one,
and the first-touch page faults of fresh output memory are paid on several cores.
:func:`default_workers` says when that is worth it; :func:`run_jobs` runs its workers on a
standard :class:`concurrent.futures.ThreadPoolExecutor`.

Buffers come only from supported APIs: ciphertext goes into a ``bytearray`` (the type
:func:`~course_lib.crypto.model.encrypt_state_dict` returns; Python fills it with zeros, so
it never holds stale memory), plaintext into tensors made by ``numpy.empty`` (numpy asks the
kernel for huge pages on large arrays, so their first-touch faults stay cheap).

The price of the bytearray, measured on the 2-core test machine for GPT-2 small (498 MB):
Python zero-fills it on one thread, in 4 KiB pages (no huge-page advice reaches it), at about
2.4 GB/s, while AES-GCM runs at about 6 GB/s per thread; so the allocating
:func:`~course_lib.crypto.model.encrypt_state_dict` is bound by that fill. The fill cannot be
split into chunks that worker threads zero just before encrypting them: ``bytearray(n)``
zero-fills the whole buffer inside the constructor, holding the GIL, before any chunk can be
written, and Python has no supported way to make a bytearray without filling it. (Building
it instead by appending sealed chunks while workers encrypt the next ones is no faster: the
append copies into fresh pages just as the fill does.) Callers
who encrypt repeatedly use :func:`~course_lib.crypto.model.encrypt_state_dict_into` with a
buffer they keep, which runs at the speed of AES-GCM itself.

When encryption or decryption fails part way, a half-written buffer must not stay reachable:
a traceback keeps the local variables of every frame it passes through, and so would keep
the output (partly decrypted, unauthenticated plaintext, or memory that was never written).
:func:`discard` zeroes such buffers and clears the finished frames of the exception before
it is re-raised; tests/crypto/test_model.py checks both.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from course_lib.errors import DecryptionError

__all__ = ["new_bytearray", "zero", "discard", "run_jobs", "default_workers", "read_at",
           "write_at", "POSITIONAL_IO"]

MAX_WORKERS = 4  # beyond this, memory bandwidth is the limit anyway
PARALLEL_MIN_BYTES = 16 * 2**20  # below this, starting threads costs more than it saves


def default_workers(nbytes: int) -> int:
    """Threads for ``nbytes`` of payload: 1 when small, else one per usable core, at most 4.

    Why every core: AES-GCM releases the GIL, so each thread runs on its own core. Measured
    on the 2-core test machine for 498 MB into preallocated memory (best of 3): one thread
    5.4-6.2 GB/s, two threads 9.9-10.1 GB/s idle, and 7.7-7.8 GB/s while another process
    kept one core busy at the same priority.
    """
    if nbytes < PARALLEL_MIN_BYTES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, cores or 1))


def new_bytearray(size: int) -> bytearray:
    """A zero-filled bytearray of ``size`` bytes for the ciphertext (a test seam too)."""
    return bytearray(size)


def zero(buffer: Any) -> None:
    """Overwrite every byte of a writable buffer (bytearray, numpy array, memoryview) with 0."""
    with memoryview(buffer) as view:
        if view.nbytes:
            np.frombuffer(view.cast("B"), dtype=np.uint8).fill(0)  # a view: no copy


def discard(exc: BaseException, buffers: Iterable[Any]) -> None:
    """Zero ``buffers`` and clear the local variables of the finished frames behind ``exc``.

    Call it in an ``except`` block before re-raising. Frames still running (the caller's)
    are left alone: the caller deletes its own references. Chained exceptions (``__cause__``,
    ``__context__``) are cleared too, since each holds a traceback of its own.
    """
    for buffer in buffers:
        if buffer is not None:
            zero(buffer)
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames that are still running
        pending += [current.__cause__, current.__context__]


def run_jobs(jobs: Iterable[Any], work: Callable[[Any, Any], None],
             make_state: Callable[[], Any], workers: int) -> None:
    """Call ``work(state, job)`` for every job, on ``workers`` threads with one state each.

    Each worker thread takes its next job from ``jobs`` itself (under a lock), so no
    dispatching thread has to wake and take the GIL between chunks, and at most ``workers``
    jobs are in flight: a job source that allocates (a non-contiguous tensor made
    contiguous) stays bounded. The first exception raised by any job stops the others after
    their current job and is re-raised here, only after every worker has stopped, so no
    thread still writes into a buffer the caller is about to zero.
    """
    if workers <= 1:
        state = make_state()
        for job in jobs:
            work(state, job)
        return
    source, lock, failed = iter(jobs), threading.Lock(), threading.Event()

    def loop() -> None:
        state = make_state()
        while not failed.is_set():
            with lock:  # a generator must not run in two threads at once
                job = next(source, _DONE)
            if job is _DONE:
                return
            try:
                work(state, job)
            except BaseException:
                failed.set()
                raise

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="course_lib.crypto")
    try:
        futures = [pool.submit(loop) for _ in range(workers)]
        wait(futures)
    except BaseException:  # e.g. KeyboardInterrupt here: stop the workers before leaving
        failed.set()
        raise
    finally:
        pool.shutdown(wait=True)
    for future in futures:
        if future.exception() is not None:
            raise future.exception()


_DONE = object()


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
