"""Every protection's cost relative to plain FedAvg, side by side in one run (chapter 5's table).

    python benchmarks/bench_costs.py           # 100 clients, 30 rounds; about a minute
    python benchmarks/bench_costs.py --quick   # the notebook's settings: 50 clients, seconds

A thin wrapper of :func:`course_lib.costs.measure_costs` (read its docstring for what each row
measures): it prints the machine, the table, and optionally saves the figure. The full mode
measures packed Paillier on all 100 clients and per-scalar Paillier on 10 values of every
client (then scales to the whole update); the quick mode measures 2 clients and scales.
Times are CPU seconds of this process, so other jobs on a shared machine inflate them less
than wall time; the ratios still move by tens of percent from run to run on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import platform

import cryptography
import torch

from course_lib import costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the notebook's quick settings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", help="also save the figure to this file")
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"python {platform.python_version()}, torch {torch.__version__}, cryptography "
          f"{cryptography.__version__}, {os.cpu_count()} cores, load average {load}")
    table = costs.measure_costs(quick=args.quick, seed=args.seed)
    print(table)
    if args.plot:
        costs.plot_costs(table).savefig(args.plot)
        print(f"figure saved to {args.plot}")


if __name__ == "__main__":
    main()
