"""Model-parameter encryption throughput, measured side by side in one run.

For a ~25M-parameter model and a GPT-2-small-shaped state_dict (124M float32 parameters,
random weights from a seeded generator, built locally), it times, interleaved:

- ours, in memory:  course_lib.crypto.model.encrypt_state_dict / decrypt_state_dict, which
                    return new memory (a zero-filled bytearray; new tensors)
- ours, into preallocated: encrypt_state_dict_into a preallocated, already-touched buffer /
                    decrypt_state_dict_into preallocated, already-touched tensors
- ours, file:       save_encrypted / load_encrypted (temp dir; save includes fsync + rename)
- naive:            torch.save to BytesIO + Fernet; Fernet + torch.load(weights_only=True)
- memory copy:      every tensor's bytes copied once into preallocated, already-touched memory
                    (and back): the floor, no serialiser can do less work. The goals use it.
- copy into fresh memory: the same copy into newly allocated arrays (np.copy), so including
                    the page faults that any function returning new memory pays (context)
- file floor:       the same bytes written with write() + fsync / read with readinto() into
                    preallocated memory (context for the file rows)
- bare AES-GCM:     pyca/cryptography's AESGCM.encrypt_into / decrypt_into alone, the same
                    4 MiB chunks on the same number of threads as ours, into preallocated,
                    already-touched memory: what encryption costs with nothing around it.
                    Goal: ours into preallocated >= 0.9x of it, both ways (like for like).
                    A second row does the same into memory allocated inside the timing
                    (np.empty, never touched), which is what any function that returns new
                    memory pays on top (page faults); ours in memory is compared with that.

Throughput is parameter bytes per second (the same numerator for every row). Each case runs
one warm-up round and then --repeats timed rounds (default 3) back to back, one case after
the other; the median is reported and used for the ratios (best in parentheses). Goals: ours
in memory >= 15x naive and >= 0.7x the memory copy, in both directions, and ours into
preallocated memory >= 0.9x bare AES-GCM into preallocated memory. The load average is
printed because other processes on the machine slow the two-thread paths the most.

Measured on the 2-core test machine (2 worker threads, medians of 3, two runs), GPT-2
small: ours into preallocated memory 0.89x and 0.93x bare AES-GCM encrypting (8.9 and 5.6
GB/s; the second run shared the machine), 1.10x and 1.05x decrypting. Allocating:
encrypt_state_dict 1.8-1.9 GB/s, bound by Python's one-thread zero-fill of the bytearray
(2.5 GB/s alone; see course_lib/crypto/_parallel.py); decrypt_state_dict 0.97x bare
decrypt_into into fresh memory in one run, 0.32x in the other (fresh-memory rows vary most).

Usage:  python benchmarks/bench_crypto.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cryptography
import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from course_lib.crypto import _parallel, model, naive, symmetric
from course_lib.llm.model import gpt2_state_dict

GB = 1e9
FLOOR = "plain memory copy (floor)"
BARE = "bare AES-GCM, preallocated"
INTO = "ours, into preallocated"
CHUNK = 4 * 2**20  # the chunk size course_lib.crypto.model writes
TAG = 16


MODELS = {  # name -> shape; "gpt2-small" is exactly GPT-2 small's 124,439,808 parameters
    "25M (GPT-2 shape, d=512, 6 layers)": dict(vocab=12000, context=512, width=512, layers=6),
    "gpt2-small (124M)": dict(vocab=50257, context=1024, width=768, layers=12),
}
QUICK = {"tiny (quick)": dict(vocab=1000, context=128, width=64, layers=2)}


def _flat_bytes(t: torch.Tensor) -> np.ndarray:
    return t.reshape(-1).view(torch.uint8).numpy()  # (nbytes,), shares memory


def machine_report() -> str:
    thp = "n/a"
    if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":")[1].split()) for line in f
                          if line.startswith("flags")), set())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    aes = [f for f in ("aes", "vaes", "vpclmulqdq", "avx512f") if f in flags]
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    return "\n".join([
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"cryptography {cryptography.__version__}, numpy {np.__version__}, {platform.machine()}",
        f"cores usable: {cores} (os.cpu_count {os.cpu_count()}); torch intra-op threads "
        f"{torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}; "
        f"thread env: {env or 'unset'}",
        f"course_lib.crypto.model worker threads for large models: "
        f"{_parallel.default_workers(2**40)} (one per core, at most 4; AES-GCM releases "
        "the GIL)",
        f"CPU AES flags: {', '.join(aes) or 'unknown'}; "
        f"transparent huge pages: {thp}",
    ])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_model(name: str, state: dict[str, torch.Tensor], repeats: int, workdir: str) -> dict:
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    params = sum(t.numel() for t in state.values())
    print(f"\n== {name}: {params:,} parameters, {nbytes / 1e6:.1f} MB float32, "
          f"{len(state)} tensors; load average {load()}")
    key, fkey = symmetric.generate_key(), naive.generate_key()
    path, plain_path = os.path.join(workdir, "model.enc"), os.path.join(workdir, "plain.bin")
    sources = [_flat_bytes(t) for t in state.values()]
    flat = np.empty(nbytes, dtype=np.uint8)
    flat[:] = 1  # touch it: the floor copies into memory that is already mapped
    targets = [_flat_bytes(torch.empty_like(t)) for t in state.values()]
    for target in targets:
        target[:] = 1

    def copy_in() -> None:
        offset = 0
        for src in sources:
            np.copyto(flat[offset:offset + src.size], src)
            offset += src.size

    def copy_out() -> None:
        offset = 0
        for dst in targets:
            np.copyto(dst, flat[offset:offset + dst.size])
            offset += dst.size

    def file_write() -> None:
        with open(plain_path, "wb", buffering=0) as f:
            for src in sources:
                f.write(src)
            os.fsync(f.fileno())

    def file_read() -> None:
        with open(plain_path, "rb", buffering=0) as f:
            for dst in targets:
                f.readinto(dst)

    def fresh_copy_in() -> list[np.ndarray]:
        return [src.copy() for src in sources]  # new memory, page faults included

    def fresh_copy_out() -> list[np.ndarray]:
        return [flat[o - s.size:o].copy() for o, s in zip(ends, sources)]

    ends = np.cumsum([src.size for src in sources]).tolist()
    bare_encrypt, bare_decrypt, bare_fresh_encrypt, bare_fresh_decrypt = bare_aes_gcm(
        sources, key, _parallel.default_workers(nbytes))
    sealed = np.ones(model.encrypted_size(state), np.uint8)  # preallocated and touched
    restored = {name: torch.ones_like(t) for name, t in state.items()}  # the same

    def into_encrypt() -> memoryview:
        return memoryview(sealed)[:model.encrypt_state_dict_into(state, key, sealed)]

    def into_decrypt() -> dict[str, torch.Tensor]:
        model.decrypt_state_dict_into(inputs[INTO], key, restored)
        return restored

    inputs: dict[str, object] = {}
    cases = {  # label -> (encrypt, decrypt)
        "ours, in memory": (lambda: model.encrypt_state_dict(state, key),
                            lambda: model.decrypt_state_dict(inputs["ours, in memory"], key)),
        INTO: (into_encrypt, into_decrypt),
        "ours, file (save incl. fsync)": (lambda: model.save_encrypted(state, path, key),
                                          lambda: model.load_encrypted(path, key)),
        "naive torch.save + Fernet": (lambda: naive.encrypt_state_dict(state, fkey),
                                      lambda: naive.decrypt_state_dict(
                                          inputs["naive torch.save + Fernet"], fkey)),
        FLOOR: (copy_in, copy_out),
        "copy into fresh memory": (fresh_copy_in, fresh_copy_out),
        "plain file write+fsync/read": (file_write, file_read),
        BARE: (bare_encrypt, bare_decrypt),
        "bare AES-GCM, fresh memory": (bare_fresh_encrypt, bare_fresh_decrypt),
    }
    times: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in cases}
    for label, (encrypt, decrypt) in cases.items():
        for rep in range(1 + repeats):  # each case: one warm-up round, then the timed rounds
            t_enc, out = timed(encrypt)
            inputs[label] = out
            del out
            t_dec, back = timed(decrypt)
            if rep == 0 and label.startswith(("ours", "naive")):
                check(state, back, label)
            del back
            inputs.clear()
            if rep:
                times[label][0].append(t_enc)
                times[label][1].append(t_dec)
    rates = {c: tuple(nbytes / statistics.median(ts) / GB for ts in pair)
             for c, pair in times.items()}
    bests = {c: tuple(nbytes / min(ts) / GB for ts in pair) for c, pair in times.items()}
    naive_rate, copy_rate = rates["naive torch.save + Fernet"], rates[FLOOR]
    print(f"{'':32s}{'encrypt GB/s':>14s}{'decrypt GB/s':>14s}{'x naive (enc/dec)':>20s}"
          f"{'/ copy (enc/dec)':>18s}")
    for label in cases:
        (enc, dec), (best_enc, best_dec) = rates[label], bests[label]
        print(f"{label:32s}{enc:8.2f} ({best_enc:5.2f}){dec:8.2f} ({best_dec:5.2f})"
              f"{enc / naive_rate[0]:11.0f}x /{dec / naive_rate[1]:5.0f}x"
              f"{enc / copy_rate[0]:10.2f} /{dec / copy_rate[1]:5.2f}")
    print("(median of", repeats, "runs; best in parentheses)")
    for stat, table in (("median", rates), ("best", bests)):
        ours, naive_r, copy_r = (table["ours, in memory"], table["naive torch.save + Fernet"],
                                 table[FLOOR])
        fresh = table["copy into fresh memory"]
        for i, direction in enumerate(("encrypt", "decrypt")):
            vs_naive, vs_copy = ours[i] / naive_r[i], ours[i] / copy_r[i]
            print(f"goal {direction} ({stat} of {repeats}): ours in memory {vs_naive:.0f}x "
                  f"naive (>= 15x: {'met' if vs_naive >= 15 else 'MISSED'}), {vs_copy:.2f}x "
                  f"memory copy (>= 0.7x: {'met' if vs_copy >= 0.7 else 'MISSED'}); "
                  f"{ours[i] / fresh[i]:.2f}x copy into fresh memory")
        bare, bare_fresh = table[BARE], table["bare AES-GCM, fresh memory"]
        into = table[INTO]
        workers = _parallel.default_workers(nbytes)
        for i, direction in enumerate(("encrypt", "decrypt")):
            vs_bare = into[i] / bare[i]
            print(f"goal {direction} ({stat} of {repeats}): ours into preallocated memory "
                  f"{vs_bare:.2f}x bare AES-GCM {direction}_into into preallocated memory, both "
                  f"on {workers} thread(s) (>= 0.9x: {'met' if vs_bare >= 0.9 else 'MISSED'})")
            print(f"     {direction} allocating ({stat} of {repeats}): ours in memory "
                  f"{ours[i] / bare_fresh[i]:.2f}x bare AES-GCM into fresh memory "
                  f"(np.empty), {ours[i] / bare[i]:.2f}x bare into preallocated")
    print(f"load average now {load()}")
    return {"nbytes": nbytes, "rates": rates, "bests": bests}


def bare_aes_gcm(sources: list[np.ndarray], key: bytes, workers: int):
    """AESGCM.encrypt_into / decrypt_into alone over the same chunks as ours, on ``workers``
    threads: into preallocated, touched memory, and into memory allocated in the timing."""
    aead = AESGCM(key)
    jobs = []  # (source piece, offset of its sealed chunk in the output)
    offset = 0
    for src in sources:
        for start in range(0, src.size, CHUNK):
            piece = memoryview(src)[start:start + CHUNK]
            jobs.append((piece, offset))
            offset += piece.nbytes + TAG
    total = offset
    sealed = np.ones(total, np.uint8)  # preallocated and touched
    plain = [np.ones(src.size, np.uint8) for src in sources]
    targets = [memoryview(p)[start:start + CHUNK] for p in plain
               for start in range(0, p.size, CHUNK)]
    nonce = b"\0" * 12  # a benchmark only: never reuse a nonce for real data

    def run(fn, items) -> None:
        if workers <= 1:
            for item in items:
                fn(item)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fn, items))

    def encrypt_into(out: memoryview) -> None:
        run(lambda job: aead.encrypt_into(nonce, job[0], b"",
                                          out[job[1]:job[1] + job[0].nbytes + TAG]), jobs)

    def decrypt_into(dests: list[memoryview]) -> None:
        view = memoryview(sealed)
        run(lambda item: aead.decrypt_into(
            nonce, view[item[0][1]:item[0][1] + item[0][0].nbytes + TAG], b"", item[1]),
            list(zip(jobs, dests)))

    def fresh_targets() -> list[memoryview]:
        fresh = [np.empty(src.size, np.uint8) for src in sources]
        return [memoryview(p)[start:start + CHUNK] for p in fresh
                for start in range(0, p.size, CHUNK)]

    encrypt_into(memoryview(sealed))  # so that decryption has valid ciphertext
    return (lambda: encrypt_into(memoryview(sealed)),
            lambda: decrypt_into(targets),
            lambda: encrypt_into(memoryview(np.empty(total, np.uint8))),
            lambda: decrypt_into(fresh_targets()))


def check(state: dict[str, torch.Tensor], back: dict[str, torch.Tensor], label: str) -> None:
    if list(back) != list(state) or not all(torch.equal(back[k], v) for k, v in state.items()):
        raise SystemExit(f"{label}: round trip is not exact")


def diagnostics(nbytes: int) -> None:
    """What bounds encryption into fresh memory: AES-GCM alone, and first-touch page faults."""
    chunk = CHUNK
    n = max(chunk, nbytes // chunk * chunk)
    src, dst = np.ones(n, np.uint8), np.ones(n + 16 * (n // chunk), np.uint8)
    aead, nonce, out = AESGCM(symmetric.generate_key()), b"\0" * 12, memoryview(dst)
    view = memoryview(src)

    def aes() -> None:
        for i, start in enumerate(range(0, n, chunk)):
            aead.encrypt_into(nonce, view[start:start + chunk], b"",
                              out[start + 16 * i:start + 16 * i + chunk + 16])

    def first_touch() -> None:
        np.empty(n, np.uint8)[::4096] = 1  # one write per 4 KiB page of fresh memory

    def zero_filled() -> None:
        bytearray(n)  # what encrypt_state_dict returns: Python zero-fills it

    for label, fn in [("AES-GCM encrypt_into, 4 MiB chunks, warm output, 1 thread", aes),
                      ("fresh memory, first touch page by page (np.empty)", first_touch),
                      ("fresh memory, bytearray(n) zero-filled (as ours returns)", zero_filled)]:
        fn()
        best = min(timed(fn)[0] for _ in range(3))
        print(f"  {label:64s} {n / best / GB:6.2f} GB/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    args = parser.parse_args(argv)
    print(__doc__.splitlines()[0])
    print(machine_report())
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, shape in (QUICK if args.quick else MODELS).items():
            state = gpt2_state_dict(**shape, seed=0)
            results[name] = bench_model(name, state, args.repeats, workdir)
            del state
    if args.quick:
        print("\n(--quick is a smoke run: fixed per-call costs dominate a tiny model; the goals "
              "are about the 25M and 124M models)")
        return 0
    print("\nWhere the time goes (same machine, same run):")
    diagnostics(max(r["nbytes"] for r in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
