"""Secure aggregation costs, side by side in one run: 10 clients x 10,000 floats.

The job: each client holds a vector of floats in [-1, 1] (a model update); the server must
learn only the element-wise sum. Every encrypted method uses the same precision, fixed point
with 2**-16 resolution (phe: ``precision=2**-16``, i.e. base-16 exponent -4), and the same
2048-bit Paillier key (phe's keys are built from our (n, p, q)). Rows:

- clear:               the server adds the float64 vectors (no privacy; the floor)
- pairwise masking:    each client adds AES-CTR masks that cancel in the sum (secret_sharing)
- Paillier per-scalar: one ciphertext per float, ours and phe's. Too slow to run in full, so
                       a subset of values is MEASURED and the time EXTRAPOLATED linearly
                       (encryption, addition and decryption are all per value); marked "extrap."
- Paillier packed:     values quantised to 16 fractional bits and packed into 21-bit slots
                       (10 clients * 2**16 needs 20 bits, +1 sign bit), 97 per ciphertext;
                       measured in full for every client
- CKKS (TenSEAL):      if the optional 'he' extra is installed; degree 8192, scale 2**40

Columns: client time (encode + encrypt one vector), server time (aggregate all 10), decrypt
time (the key holder, once), bytes one client sends, and the largest error of the sum.
The headline ratio is per-scalar phe over packed Paillier, client time (goal >= 50x).

Usage:  python benchmarks/bench_he.py [--quick] [--subset N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import gmpy2
import numpy as np
import phe

from course_lib.crypto import ckks, paillier
from course_lib.crypto import secret_sharing as ss

FRAC_BITS = 16


@dataclass
class Row:
    name: str
    client_s: float  # encode + encrypt one client's vector
    server_s: float  # aggregate all clients
    decrypt_s: float  # decrypt / decode the sum
    bytes_per_client: int
    max_error: float
    note: str = "measured"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_clear(clients: np.ndarray) -> Row:
    dt, total = timed(lambda: clients.sum(axis=0))
    return Row("clear (float64 sum)", 0.0, dt, 0.0, clients[0].nbytes, 0.0)


def bench_masking(clients: np.ndarray) -> Row:
    k = len(clients)
    keys = {(i, j): os.urandom(32) for i in range(k) for j in range(i + 1, k)}
    masked, times = [], []
    for i, x in enumerate(clients):
        pair_keys = {j: keys[min(i, j), max(i, j)] for j in range(k) if j != i}
        dt, out = timed(lambda x=x, i=i, pk=pair_keys:
                        ss.pairwise_mask(ss.encode_ring(x, frac_bits=FRAC_BITS), client=i,
                                         pair_keys=pk))
        masked.append(out)
        times.append(dt)
    dt_server, total = timed(lambda: np.sum(masked, axis=0, dtype=np.uint64))
    dt_dec, decoded = timed(lambda: ss.decode_ring(total, frac_bits=FRAC_BITS))
    err = float(np.abs(decoded - clients.sum(axis=0)).max())
    return Row("pairwise masking (AES-CTR)", float(np.mean(times)), dt_server, dt_dec,
               masked[0].nbytes, err)


def bench_per_scalar(name: str, clients: np.ndarray, subset: int,
                     encrypt: Callable[[float], object], add: Callable[[object, object], object],
                     decrypt: Callable[[object], float], ct_bytes: int) -> Row:
    """Measure `subset` values per client, extrapolate to the full length."""
    k, length = clients.shape
    scale = length / subset
    cts, enc_time = [], 0.0
    for x in clients:
        dt, out = timed(lambda x=x: [encrypt(float(v)) for v in x[:subset]])
        cts.append(out)
        enc_time += dt

    def aggregate() -> list:
        acc = cts[0]
        for other in cts[1:]:
            acc = [add(a, b) for a, b in zip(acc, other)]
        return acc

    dt_server, total = timed(aggregate)
    dt_dec, decoded = timed(lambda: [decrypt(c) for c in total])
    err = float(np.abs(np.array(decoded) - clients[:, :subset].sum(axis=0)).max())
    return Row(name, enc_time / k * scale, dt_server * scale, dt_dec * scale,
               length * ct_bytes, err, f"extrap. from {subset} of {length}")


def bench_packed(clients: np.ndarray, public_key, private_key) -> tuple[Row, object]:
    scheme = paillier.PackingScheme(public_key, frac_bits=FRAC_BITS, bound=1.0,
                                    max_summands=len(clients))
    packed, times = [], []
    for x in clients:
        dt, out = timed(lambda x=x: scheme.encrypt(x))
        packed.append(out)
        times.append(dt)
    dt_server, total = timed(lambda: sum(packed))
    dt_dec, decoded = timed(lambda: scheme.decrypt(private_key, total))
    err = float(np.abs(decoded - clients.sum(axis=0)).max())
    row = Row("Paillier packed (ours)", float(np.mean(times)), dt_server, dt_dec,
              packed[0].nbytes, err)
    return row, scheme


def bench_ckks(clients: np.ndarray) -> Row | None:
    if not ckks.is_available():
        return None
    context = ckks.make_context()
    public = ckks.public_context(context)
    encrypted, times = [], []
    for x in clients:
        dt, out = timed(lambda x=x: ckks.encrypt(public, x))
        encrypted.append(out)
        times.append(dt)
    dt_server, total = timed(lambda: sum(encrypted))
    dt_dec, decoded = timed(lambda: total.decrypt(context.secret_key()))
    err = float(np.abs(decoded - clients.sum(axis=0)).max())
    return Row("CKKS (TenSEAL)", float(np.mean(times)), dt_server, dt_dec,
               encrypted[0].nbytes, err)


def fmt_seconds(s: float) -> str:
    if s == 0:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_bytes(b: int) -> str:
    return f"{b / 1e6:.2f} MB" if b >= 1e6 else f"{b / 1e3:.1f} kB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000 floats per client and a 10-value subset (smoke test)")
    parser.add_argument("--subset", type=int, default=None,
                        help="values per client measured for per-scalar Paillier (default 100)")
    args = parser.parse_args(argv)
    num_clients, length = 10, (1_000 if args.quick else 10_000)
    subset = args.subset or (10 if args.quick else 100)
    clients = np.random.default_rng(0).uniform(-1, 1, size=(num_clients, length))

    print(f"python {platform.python_version()}, gmpy2 {gmpy2.version()}, phe {phe.__version__}, "
          f"{os.cpu_count()} cores, {platform.machine()}")
    print(f"job: {num_clients} clients x {length:,} floats in [-1, 1]; precision 2^-{FRAC_BITS} "
          "fixed point for every encrypted method")
    public_key, private_key = paillier.generate_keypair()  # 2048 bits
    n, p, q = private_key.export()
    phe_public = phe.PaillierPublicKey(n)
    phe_private = phe.PaillierPrivateKey(phe_public, p, q)
    ct_bytes = 2 * public_key.bits // 8  # a ciphertext is an integer below n^2

    rows = [bench_clear(clients), bench_masking(clients)]
    rows.append(bench_per_scalar(
        "Paillier per-scalar (ours)", clients, subset, public_key.encrypt,
        lambda a, b: a + b, private_key.decrypt, ct_bytes))
    rows.append(bench_per_scalar(
        "Paillier per-scalar (phe)", clients, subset,
        lambda v: phe_public.encrypt(v, precision=2.0**-FRAC_BITS),
        lambda a, b: a + b, phe_private.decrypt, ct_bytes))
    packed_row, scheme = bench_packed(clients, public_key, private_key)
    rows.append(packed_row)
    ckks_row = bench_ckks(clients)
    if ckks_row is not None:
        rows.append(ckks_row)

    print(f"packing: {scheme.slot_bits}-bit slots, {scheme.slots_per_ciphertext} per 2048-bit "
          f"plaintext, {scheme.num_ciphertexts(length)} ciphertexts per client; stated error "
          f"bound for the sum {scheme.max_abs_error():.2e}")
    head = f"{'method':<29}{'client/vec':>12}{'server agg':>12}{'decrypt':>11}" \
           f"{'bytes/client':>14}{'max error':>11}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.name:<29}{fmt_seconds(r.client_s):>12}{fmt_seconds(r.server_s):>12}"
              f"{fmt_seconds(r.decrypt_s):>11}{fmt_bytes(r.bytes_per_client):>14}"
              f"{r.max_error:>11.1e}  {r.note}")
    if ckks_row is None:
        print("CKKS: skipped (TenSEAL not installed; pip install 'model-privacy-course[he]')")

    by_name = {r.name: r for r in rows}
    phe_row, ours_row = by_name["Paillier per-scalar (phe)"], by_name["Paillier per-scalar (ours)"]

    def total(r: Row) -> float:
        return r.client_s * num_clients + r.server_s + r.decrypt_s

    print()
    print(f"RATIO packed Paillier vs per-scalar phe, client encryption time: "
          f"{phe_row.client_s / packed_row.client_s:.0f}x (goal >= 50x; per-scalar extrapolated)")
    print(f"      whole job (10 clients + aggregation + decryption): "
          f"{total(phe_row) / total(packed_row):.0f}x; bytes per client: "
          f"{phe_row.bytes_per_client / packed_row.bytes_per_client:.0f}x fewer")
    print(f"      packed vs per-scalar ours: {ours_row.client_s / packed_row.client_s:.0f}x; "
          f"our per-scalar vs phe per-scalar: {phe_row.client_s / ours_row.client_s:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
