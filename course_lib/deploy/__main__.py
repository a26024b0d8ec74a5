"""``python -m course_lib.deploy``: FedAvg on a real local Flower federation, headless.

Starts a TLS-protected SuperLink and ``--nodes`` SuperNodes on 127.0.0.1, runs FedAvg with the
given settings, prints the ServerApp's round table as it arrives and the timings, then stops
every process. ``--compare`` also runs the simulation with the same settings and prints
whether the deployed model equals it.

Examples
--------
::

    python -m course_lib.deploy --nodes 3 --rounds 5 --compare
    python -m course_lib.deploy --nodes 4 --rounds 10 --alpha 0.5 --fraction 0.5

To wire it into ``python -m course_lib`` as a subcommand ``flower``, register
:func:`add_arguments` on a sub-parser and call :func:`run` with the parsed namespace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (shared with a ``python -m course_lib flower`` subcommand)."""
    parser.add_argument("--nodes", type=int, default=3, help="SuperNodes (clients), 1-16 "
                        "(default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: %(default)s)")
    parser.add_argument("--partition", choices=("iid", "dirichlet", "shards"), default=None,
                        help="split; default: dirichlet if --alpha is given, else iid")
    parser.add_argument("--alpha", type=float, default=None, help="Dirichlet concentration")
    parser.add_argument("--epochs", type=int, default=1, help="local epochs E (default: 1)")
    parser.add_argument("--batch-size", default="32",
                        help="local batch size B, or 'all' (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=None, help="local SGD step size "
                        "(default: run_fedavg's)")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="fraction C of clients per round (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed for start-up and for the run (default: "
                             "%(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also run the simulation (run_fedavg) and compare")
    parser.add_argument("--verbose", action="store_true", help="print Flower's own log lines")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the deployment described by ``args``; return the exit status."""
    from course_lib.deploy.apps import require_flwr

    try:
        require_flwr()
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from course_lib.deploy import DeploymentError, deploy_fedavg
    from course_lib.fl.client import DEFAULT_LR

    try:
        batch_size = None if args.batch_size == "all" else int(args.batch_size)
    except ValueError:
        parser.error(f"argument --batch-size: must be an integer or 'all', got "
                     f"{args.batch_size!r}")
    settings = dict(rounds=args.rounds, local_epochs=args.epochs, batch_size=batch_size,
                    lr=DEFAULT_LR if args.lr is None else args.lr, fraction=args.fraction,
                    partition=args.partition, alpha=args.alpha, seed=args.seed)

    def show(line: str) -> None:
        flower_line = line.startswith(("INFO", "WARNING", "DEBUG"))
        if line.strip() and (args.verbose or not flower_line or "ERROR" in line):
            print(line, flush=True)

    print(f"Flower deployment on 127.0.0.1 (TLS): 1 SuperLink + {args.nodes} SuperNodes",
          flush=True)
    try:
        result = deploy_fedavg(num_nodes=args.nodes, **settings, timeout=args.timeout,
                               on_line=show)
    except ValueError as err:
        parser.error(str(err))
    except DeploymentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    s = result.seconds
    print(f"processes {', '.join(f'{k}={v}' for k, v in result.pids.items())}: all stopped")
    print(f"time: start-up {s['startup']:.1f} s, run {s['run']:.1f} s (first round "
          f"{result.history.round_seconds[0]:.1f} s), stop {s['stop']:.1f} s, "
          f"total {s['total']:.1f} s")
    if args.compare:
        from course_lib.fl.simulation import run_fedavg

        for engine in ("sequential", "batched"):
            sim = run_fedavg(num_clients=args.nodes, **settings, engine=engine)
            deployed = result.history.model.state_dict()
            gap = max(float((sim.model.state_dict()[k] - v).abs().max())
                      for k, v in deployed.items())
            print(f"simulation ({engine:>10}): final accuracy {sim.final_accuracy:.4f} vs "
                  f"deployed {result.history.final_accuracy:.4f}; largest weight "
                  f"difference {gap:.1e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.deploy",
        description="FedAvg on a real Flower federation on 127.0.0.1: one SuperLink and N "
                    "SuperNodes as separate processes, TLS with a throwaway CA.")
    add_arguments(parser)
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
