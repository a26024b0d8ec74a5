"""Secure aggregation cost against the number of clients, complete vs sparse graph, in one run,
for the protocol secure against a cheating server ("active") and, side by side on the same
inputs, the honest-but-curious teaching variant ("semi-honest", ``unsafe_semi_honest=True``).

    python benchmarks/bench_privacy.py           # n = 10, 100, 1,000: ~12 min of CPU, 8.5 of
                                                 # them the active complete graph at 1,000
    python benchmarks/bench_privacy.py --quick   # n = 10, 100; well under a minute

The job: ``n`` clients each hold 10,000 floats in [-1, 1] (a model update); 10% of them,
drawn with a fixed seed, drop out after sharing their keys and before sending their masked
input, so the server must rebuild their masking keys (the expensive case). Both graphs run
on the same inputs and the same dropouts (course_lib.secagg):

- complete (Bonawitz et al. 2017): every client masks with, and shares its seeds among, all
  ``n - 1`` others, threshold ``t = n // 2 + 1``;
- sparse (SecAgg+, Bell et al. 2020): ``k = 2 * ceil(6 * log2 n)`` random neighbours,
  ``t = (k + 1) // 2 + 1`` (a majority of the holders: the smallest threshold a cheating
  server alone cannot defeat, see course_lib.secagg.setup).

The active protocol adds to each client: a signature of its keys (round 0), checking its
neighbours' key signatures, a signed list of the peers it masked with (round 2), a signed
survivor set and checking ``t`` of its holders' signatures on it (round 3), and checking the
signed peer list of every survivor whose self-mask share it reveals. The last lines print
what that costs, active / semi-honest, from the same run.

Columns: ``k`` neighbours and threshold ``t``; per-client compute time (mean over the clients
that take part in every round: key generation, Shamir sharing, share encryption and
decryption, key agreements, PRG masks, unmasking answers); per-client bytes sent (all
rounds) and the part of it that is not the 8-byte-per-value masked vector; server time
(routing, adding, rebuilding seeds and keys, removing masks); the same server time as a
multiple of a plain float64 sum of the ``n`` vectors; the whole simulated round (every
client and the server, one after another in this process); the largest error of the sum
against the plain sum of the surviving clients. Plain FedAvg would send the same 8 bytes per
value (float64) and nothing else. All times are CPU seconds (``time.process_time``), so
that other jobs on a shared machine do not inflate them.

Per-client cost of the complete graph grows like ``n`` (its Shamir sharing even like
``n * t ~ n**2 / 2``); the sparse graph's like ``k ~ log n``. The last lines print those
growth factors from the measured numbers. Timings on a shared 2-core machine are noisy;
the ratios come from the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

import cryptography
import numpy as np

from course_lib.crypto.insecure import InsecureWarning
from course_lib.crypto.secret_sharing import decode_ring
from course_lib.secagg import encode, make_params, plan_dropouts, simulate_round

SEED = 0


def plain_sum_seconds(x: np.ndarray, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        x.sum(axis=0)
        times.append(time.process_time() - start)
    return min(times)


def run(n: int, graph: str, x: np.ndarray, dropout: float, semi_honest: bool = False) -> dict:
    params = make_params(n, x.shape[1], graph=graph, seed=SEED)
    plan = plan_dropouts(n, dropout, seed=SEED)
    start = time.process_time()
    encoded = encode(x)  # (n, dim) uint64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureWarning)  # measured on purpose, side by side
        total, report = simulate_round(encoded, params, plan, unsafe_semi_honest=semi_honest)
    cpu = time.process_time() - start
    full = [u for u in range(n) if u not in plan.all()]  # in every round
    expected = x[list(report.survivors)].sum(axis=0)
    error = float(np.abs(decode_ring(total, frac_bits=params.frac_bits) - expected).max())
    bytes_sent = float(report.bytes_sent[full].mean())
    return dict(n=n, graph=graph, model="semi-honest" if semi_honest else "active",
                k=params.degree, t=params.threshold,
                client_s=float(report.client_seconds[full].mean()), bytes=bytes_sent,
                overhead=bytes_sent - 8 * x.shape[1], server_s=report.server_seconds,
                plain_s=plain_sum_seconds(x), round_s=cpu, error=error,
                dropped=len(plan.all()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 clients only")
    parser.add_argument("--dim", type=int, default=10_000, help="values per client")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="fraction of clients that drop before the masked-input round")
    args = parser.parse_args(argv)
    sizes = (10, 100) if args.quick else (10, 100, 1000)
    print(f"python {platform.python_version()}, numpy {np.__version__}, cryptography "
          f"{cryptography.__version__}, {os.cpu_count()} cores, {platform.machine()}")
    print(f"job: n clients x {args.dim:,} floats in [-1, 1], {args.dropout:.0%} drop before "
          f"sending their masked input; fixed point 2^-32 in Z_2^64\n")
    head = (f"{'graph':<9}{'model':<12}{'n':>6}{'k':>5}{'t':>5}{'client ms':>11}"
            f"{'bytes/client':>14}"
            f"{'of which keys':>15}{'server s':>10}{'x plain sum':>13}{'round s':>9}"
            f"{'max error':>11}")
    print(head)
    print("-" * len(head))
    run(10, "sparse", np.zeros((10, args.dim)), args.dropout)  # warm-up: imports, caches
    rows = []
    for n in sizes:
        x = np.random.default_rng(n).uniform(-1, 1, size=(n, args.dim))  # (clients, dim)
        for graph, semi in [(g, m) for g in ("complete", "sparse") for m in (False, True)]:
            r = run(n, graph, x, args.dropout, semi)
            rows.append(r)
            print(f"{graph:<9}{r['model']:<12}{n:>6}{r['k']:>5}{r['t']:>5}"
                  f"{1e3 * r['client_s']:>11.2f}"
                  f"{r['bytes']:>14,.0f}{r['overhead']:>15,.0f}{r['server_s']:>10.3f}"
                  f"{r['server_s'] / r['plain_s']:>13,.0f}{r['round_s']:>9.2f}"
                  f"{r['error']:>11.1e}", flush=True)
    print()
    small, large = sizes[-2], sizes[-1]
    by = {(r["graph"], r["n"]): r for r in rows if r["model"] == "active"}
    semi = {(r["graph"], r["n"]): r for r in rows if r["model"] == "semi-honest"}
    for graph in ("complete", "sparse"):
        a, b = by[graph, small], by[graph, large]
        print(f"{graph:<9} {small} -> {large} clients: per-client time x"
              f"{b['client_s'] / a['client_s']:.1f}, per-client key bytes x"
              f"{b['overhead'] / a['overhead']:.1f} (neighbours {a['k']} -> {b['k']}, "
              f"x{b['k'] / a['k']:.2f}; n x{large / small:.0f}, log2 n "
              f"x{math.log2(large) / math.log2(small):.2f})")
    a, b = by["complete", large], by["sparse", large]
    print(f"RATIO at {large} clients, complete / sparse (active): per-client time "
          f"x{a['client_s'] / b['client_s']:.1f}, server time "
          f"x{a['server_s'] / b['server_s']:.1f}, whole round x{a['round_s'] / b['round_s']:.1f}")
    for graph in ("complete", "sparse"):
        for n in sizes:
            a, b = by[graph, n], semi[graph, n]
            print(f"RATIO active / semi-honest, {graph:<8} n={n:<5}: per-client time "
                  f"x{a['client_s'] / b['client_s']:.2f}, bytes/client "
                  f"x{a['bytes'] / b['bytes']:.3f} (+{a['bytes'] - b['bytes']:,.0f} B), "
                  f"server time x{a['server_s'] / b['server_s']:.2f}")


if __name__ == "__main__":
    main()
