"""``python -m course_lib.deploy``: FedAvg on a real local Flower federation, headless.

Starts a TLS-protected SuperLink and ``--nodes`` SuperNodes on 127.0.0.1, runs FedAvg with the
given settings (Flower's own FedAvg strategy, or Flower's SecAgg+ with ``--secure-agg``),
prints the ServerApp's round table as it arrives and the timings, then stops every process.
``--compare`` also runs the simulation with the same settings and prints how far the deployed
model is from it. Flower's own log lines are shown with ``--verbose`` only.

Examples
--------
::

    python -m course_lib.deploy --nodes 3 --rounds 5 --compare
    python -m course_lib.deploy --nodes 4 --rounds 10 --alpha 0.5 --fraction 0.5
    python -m course_lib.deploy --nodes 3 --rounds 1 --secure-agg --compare

To wire it into ``python -m course_lib`` as a subcommand ``flower``, register
:func:`add_arguments` on a sub-parser and call :func:`run` with the parsed namespace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from course_lib.deploy.protocol import MAX_NODES

__all__ = ["main", "add_arguments", "run"]

# -- argument types: argparse turns their ArgumentTypeError into "argument --x: ..." -------------
def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {value}")
        return value
    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _batch_size(text: str) -> int | None:
    return None if text == "all" else _int_in(1, 100_000)(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (shared with a ``python -m course_lib flower`` subcommand)."""
    parser.add_argument("--nodes", type=_int_in(1, MAX_NODES), default=3,
                        help=f"SuperNodes (clients), 1-{MAX_NODES} (default: %(default)s)")
    parser.add_argument("--rounds", type=_int_in(1, 10_000), default=5,
                        help="rounds (default: %(default)s)")
    parser.add_argument("--partition", choices=("iid", "dirichlet", "shards"), default=None,
                        help="split; default: dirichlet if --alpha is given, else iid")
    parser.add_argument("--alpha", type=_positive, default=None, help="Dirichlet concentration")
    parser.add_argument("--epochs", type=_int_in(1, 1_000), default=1,
                        help="local epochs E (default: 1)")
    parser.add_argument("--batch-size", type=_batch_size, default=32,
                        help="local batch size B, or 'all' (default: %(default)s)")
    parser.add_argument("--lr", type=_positive, default=None, help="local SGD step size "
                        "(default: run_fedavg's)")
    parser.add_argument("--fraction", type=_fraction, default=1.0,
                        help="fraction C of clients per round (default: %(default)s)")
    parser.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=0,
                        help="seed (default: %(default)s)")
    parser.add_argument("--secure-agg", action="store_true",
                        help="Flower's SecAgg+: the server sees only the sum (needs --nodes >= 2, "
                             "--fraction 1)")
    parser.add_argument("--timeout", type=_positive, default=300.0,
                        help="seconds allowed for start-up and for the run (default: "
                             "%(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also run the simulation (run_fedavg) and compare")
    parser.add_argument("--verbose", action="store_true", help="print Flower's own log lines")


def _config(args: argparse.Namespace) -> object:
    from course_lib.fl.config import FedAvgConfig

    options = dict(num_clients=args.nodes, rounds=args.rounds, local_epochs=args.epochs,
                   batch_size=args.batch_size, fraction=args.fraction,
                   partition=args.partition, alpha=args.alpha, seed=args.seed,
                   secure_aggregation=args.secure_agg)
    if args.lr is not None:
        options["lr"] = args.lr
    return FedAvgConfig(**options)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the deployment described by ``args``; return the exit status."""
    from course_lib.deploy.protocol import check_deployable, require_flwr

    try:
        require_flwr()
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from course_lib.deploy import DeploymentError, deploy_fedavg, estimate_seconds, is_flower_line

    try:
        config = check_deployable(_config(args))
    except ValueError as err:  # e.g. --partition dirichlet without --alpha
        parser.error(_as_flags(str(err)))

    def show(line: str) -> None:
        if line.strip() and (args.verbose or not is_flower_line(line)):
            print(line, flush=True)

    kind = "Flower's SecAgg+" if config.secure_aggregation else "Flower's FedAvg strategy"
    print(f"Flower deployment on 127.0.0.1 (TLS): 1 SuperLink + {config.num_clients} "
          f"SuperNodes, {config.rounds} round{'s' * (config.rounds > 1)}, {kind}.\n"
          f"Expect about {estimate_seconds(config):.0f} s (several times that on a busy "
          f"machine): every message starts a ClientApp process that imports Flower and "
          f"PyTorch, every link is TLS, and nodes poll for work every 3 s; a simulated round "
          f"takes milliseconds.", flush=True)
    try:
        result = deploy_fedavg(config, timeout=args.timeout, on_line=show)
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

        plain = config.replace(secure_aggregation=False)
        for engine in ("sequential", "batched"):
            sim = run_fedavg(plain, engine=engine)
            deployed = result.history.model.state_dict()
            gap = max(float((sim.model.state_dict()[k] - v).abs().max())
                      for k, v in deployed.items())
            print(f"simulation ({engine:>10}): final accuracy {sim.final_accuracy:.4f} vs "
                  f"deployed {result.history.final_accuracy:.4f}; largest weight "
                  f"difference {gap:.1e}")
    return 0


_FLAGS = {"num_clients": "--nodes", "rounds": "--rounds", "local_epochs": "--epochs",
          "batch_size": "--batch-size", "fraction": "--fraction", "partition": "--partition",
          "alpha": "--alpha", "seed": "--seed", "lr": "--lr",
          "secure_aggregation": "--secure-agg"}


def _as_flags(message: str) -> str:
    """A library message names parameters (`num_clients`); the command line names flags."""
    for name, flag in _FLAGS.items():
        message = message.replace(f"`{name}`", flag)
    return message


class _Parser(argparse.ArgumentParser):
    """Prints a bad argument's one-line error and where to find help, not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; return the exit status."""
    parser = _Parser(
        prog="python -m course_lib.deploy",
        description="FedAvg on a real Flower federation on 127.0.0.1: one SuperLink and N "
                    "SuperNodes as separate processes, TLS with a throwaway CA.")
    add_arguments(parser)
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
