"""Headless entry points: ``python -m course_lib <command> ...`` (no Jupyter needed).

Commands
--------
fedavg
    Simulate FedAvg on the digits, print one table row per round (a progress bar goes to
    stderr when it is a terminal, or with ``--progress``) and the final test accuracy;
    ``--plot FILE.png`` saves the accuracy curve (with the centralised baseline) and the
    clients' label counts. Privacy: ``--dp-noise Z`` (with ``--clip S``, ``--delta D``) runs
    DP-FedAvg and prints epsilon per round and at the end; ``--secure-agg`` (with
    ``--secagg-graph``) aggregates with secure aggregation; ``--dropout F`` makes a fraction of
    each round's clients drop out after training.

Each command is a small function registered in :data:`COMMANDS` with its own argument
parser; adding one means writing an ``_add_<name>`` and a ``_run_<name>`` function. Heavy
imports (torch) happen only when a command runs, so ``--help`` answers at once.

Examples
--------
From a shell::

    python -m course_lib fedavg --nodes 10 --rounds 20 --alpha 0.5
    python -m course_lib fedavg --nodes 100 --rounds 50 --partition shards --plot run.png
    python -m course_lib fedavg --nodes 100 --rounds 50 --fraction 0.2 --dp-noise 1 --clip 0.1
    python -m course_lib fedavg --nodes 20 --rounds 10 --secure-agg --dropout 0.2

From Python (what the tests do)::

    >>> from course_lib.cli import main
    >>> main(["fedavg", "--nodes", "5", "--rounds", "2"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "COMMANDS"]

# Shown in --help without importing torch; FedAvgConfig checks the values (a test keeps these
# equal to its own lists).
PARTITIONS = ("iid", "dirichlet", "shards")
ENGINES = ("batched", "sequential")
GRAPHS = ("complete", "sparse")
DEFAULT_CLIP = 0.1  # suits the digits MLP at lr 0.3 (see course_lib.widgets)
DEFAULT_DELTA = 1e-5
# The option of FedAvgConfig / DPConfig each flag sets: their own errors then name the flag.
FLAGS = {"num_clients": "--nodes", "rounds": "--rounds", "epochs": "--epochs",
         "local_epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
         "fraction": "--fraction", "partition": "--partition", "alpha": "--alpha",
         "seed": "--seed", "engine": "--engine", "noise_multiplier": "--dp-noise",
         "max_norm": "--clip", "delta": "--delta", "secure_aggregation": "--secure-agg",
         "secagg_graph": "--secagg-graph", "dropout": "--dropout"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line of error and one line of hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n"
                     f"hint: `{self.prog} --help` lists the options and their ranges\n")


# -- argument types: they only parse; the ranges are FedAvgConfig's --------------------------
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _choices(names: Sequence[str]) -> str:
    return "{" + ",".join(names) + "}"


def _batch_size(text: str) -> int | None:
    return None if text == "all" else _int(text)


# -- fedavg ------------------------------------------------------------------------------------
def _add_fedavg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fedavg", help="simulate FedAvg on the digits and print a per-round table",
        description="Simulate FedAvg (McMahan et al. 2017) on scikit-learn's digits: per-round "
                    "test accuracy, loss, participating clients, bytes sent and time.")
    p.add_argument("--nodes", type=_int, default=10,
                   help="number of clients K, 1 to 10000 (default: %(default)s); the digits "
                        "have 1,347 training images, so beyond that some clients hold none")
    p.add_argument("--rounds", type=_int, default=20,
                   help="communication rounds, 1 to 10000 (default: %(default)s)")
    p.add_argument("--partition", metavar=_choices(PARTITIONS), default=None,
                   help="how the data is split; default: dirichlet if --alpha is given, else iid")
    p.add_argument("--alpha", type=_float, default=None,
                   help="Dirichlet concentration (> 0; small = strong label skew)")
    p.add_argument("--epochs", type=_int, default=1,
                   help="local epochs E (default: %(default)s)")
    p.add_argument("--batch-size", type=_batch_size, default=32,
                   help="local batch size B, or 'all' for one full-batch step per epoch "
                        "(default: %(default)s)")
    p.add_argument("--lr", type=_float, default=0.3,
                   help="local SGD learning rate (default: %(default)s)")
    p.add_argument("--fraction", type=_float, default=1.0,
                   help="fraction C of clients per round, in (0, 1] (default: %(default)s)")
    p.add_argument("--engine", metavar=_choices(ENGINES), default="batched",
                   help="'sequential' is the readable reference, 'batched' (default) the "
                        "fast one; same result")
    p.add_argument("--seed", type=_int, default=0,
                   help="fixes the model, the split and the shuffles (default: %(default)s)")
    p.add_argument("--target", type=_fraction, default=0.9,
                   help="report the first round reaching this test accuracy "
                        "(default: %(default)s)")
    privacy = p.add_argument_group("privacy")
    privacy.add_argument("--dp-noise", type=_float, default=None, metavar="Z",
                         help="DP-FedAvg with noise multiplier Z >= 0 (0: clip only); "
                              "prints epsilon")
    privacy.add_argument("--clip", type=_float, default=None, metavar="S",
                         help=f"DP clipping norm of a client's update (default: {DEFAULT_CLIP})")
    privacy.add_argument("--delta", type=_float, default=None, metavar="D",
                         help=f"DP delta in (0, 1) (default: {DEFAULT_DELTA:g})")
    privacy.add_argument("--secure-agg", action="store_true",
                         help="secure aggregation: the server learns only the sum")
    privacy.add_argument("--secagg-graph", metavar=_choices(GRAPHS), default=None,
                         help="who masks with whom: all pairs or O(log n) neighbours "
                              "(default: complete)")
    privacy.add_argument("--dropout", type=_float, default=0.0, metavar="F",
                         help="fraction in [0, 1) of each round's clients that drop out after "
                              "training (default: %(default)s)")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                   help="save the accuracy curve (with the centralised baseline) and the "
                        "label counts per client")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    p.set_defaults(run=_run_fedavg, command_parser=p)


def _flag_error(err: Exception, parser: argparse.ArgumentParser) -> None:
    """A FedAvgConfig/DPConfig error as an argparse error naming the flag it came from."""
    names = re.findall(r"`(\w+)`", str(err))
    flag = next((FLAGS[name] for name in names if name in FLAGS), None)
    parser.error(f"argument {flag}: {err}" if flag else str(err))


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """The run's FedAvgConfig (with its DPConfig): its own checks, its own messages."""
    from course_lib.dp import DPConfig
    from course_lib.fl.config import FedAvgConfig

    try:
        dp = None if args.dp_noise is None else DPConfig(
            noise_multiplier=args.dp_noise,
            max_norm=DEFAULT_CLIP if args.clip is None else args.clip,
            delta=DEFAULT_DELTA if args.delta is None else args.delta)
        return FedAvgConfig(
            num_clients=args.nodes, rounds=args.rounds, local_epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, fraction=args.fraction,
            partition=args.partition, alpha=args.alpha, seed=args.seed, engine=args.engine,
            dp=dp, secure_aggregation=args.secure_agg,
            secagg_graph=args.secagg_graph or "complete", dropout=args.dropout)
    except (ValueError, TypeError) as err:
        _flag_error(err, parser)


def _check_secagg_dropout(config: Any, parser: argparse.ArgumentParser) -> None:
    """Refuse, before the run, dropouts that leave fewer survivors than the threshold t."""
    if not config.secure_aggregation or not config.dropout:
        return
    from course_lib.secagg import make_params

    m = config.clients_per_round
    params = make_params(m, 1, graph=config.secagg_graph, seed=0)
    holders = params.degree + 1  # a client's shares go to its neighbours and itself
    rate = config.dropout  # one number: the command line sets no per-round rates
    left = holders - round(rate * holders)
    if left < params.threshold:
        where = "of the" if holders == m else "in a typical neighbourhood of"
        parser.error(
            f"argument --dropout: secure aggregation needs at least t = {params.threshold} "
            f"survivors {where} {holders} clients holding each one's key shares, but "
            f"--dropout {rate:g} leaves about {left}; the sum could not be recovered. "
            f"Use --dropout {(holders - params.threshold) / holders:.2f} or less, or drop "
            f"--secure-agg")


def _run_fedavg(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.plot is not None:
        _check_plot_path(args.plot, parser)
    for flag, value in (("--clip", args.clip), ("--delta", args.delta)):
        if value is not None and args.dp_noise is None:
            parser.error(f"argument {flag}: only used with --dp-noise")
    if args.secagg_graph is not None and not args.secure_agg:
        parser.error("argument --secagg-graph: only used with --secure-agg")
    config = _config(args, parser)
    _check_secagg_dropout(config, parser)
    from tqdm.auto import tqdm  # imported here: torch loads only when a command runs

    from course_lib.errors import CourseLibError
    from course_lib.fl.data import load_digits
    from course_lib.fl.simulation import run_centralised, run_fedavg

    data = load_digits(seed=0)  # what run_fedavg uses by default
    images = int(data.y_train.shape[0])
    if config.num_clients > images:
        print(f"warning: {config.num_clients:,} clients share {images:,} training images, so "
              f"at least {config.num_clients - images:,} of them hold no data and train on "
              f"nothing; --nodes {images} or fewer gives every client some", file=sys.stderr)
    dp = config.dp
    columns = [("round", 5), ("accuracy", 8), ("loss", 7), ("clients", 7)]
    columns += [("dropped", 7)] * (config.dropout > 0) + [("epsilon", 8)] * (dp is not None)
    columns += [("sent (KB)", 9), ("time (ms)", 9)]

    def on_round(history) -> None:
        r = history.rows()[-1]
        cells = {"round": f"{r['round']}", "accuracy": f"{r['accuracy']:.4f}",
                 "loss": f"{r['loss']:.4f}", "clients": f"{r['clients']}",
                 "dropped": f"{r.get('dropped', 0)}", "epsilon": f"{r.get('epsilon', 0):.3g}",
                 "sent (KB)": f"{r['bytes'] / 1e3:.1f}", "time (ms)": f"{r['seconds'] * 1e3:.1f}"}
        tqdm.write("  ".join(f"{cells[name]:>{width}}" for name, width in columns),
                   file=sys.stdout)

    extra = "" if dp is None else \
        f", DP z={dp.noise_multiplier:g} S={dp.max_norm:g} delta={dp.delta:g}"
    extra += f", secure aggregation ({config.secagg_graph} graph)" \
        if config.secure_aggregation else ""
    extra += f", dropout={config.dropout:g}" if config.dropout else ""
    alpha = "" if config.alpha is None else f" alpha={config.alpha:g}"
    batch = "all" if config.batch_size is None else config.batch_size
    print(f"FedAvg on digits: {config.num_clients} clients, {config.partition}{alpha}, "
          f"{config.rounds} rounds, E={config.local_epochs}, B={batch}, lr={config.lr:g}, "
          f"C={config.fraction:g}, engine={config.engine}, seed={config.seed}{extra}")
    print("  ".join(f"{name:>{width}}" for name, width in columns))
    try:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        history = run_fedavg(config, data=data, progress=progress, on_round=on_round)
    except ValueError as err:  # combinations only the run can see (e.g. too many shards)
        _flag_error(err, parser)
    except CourseLibError as err:  # valid arguments, but e.g. too many clients dropped out
        print(f"error: {err}", file=sys.stderr)
        return 1
    reached = history.rounds_to_reach(args.target)
    when = f"reached in round {reached}" if reached else "not reached"
    print(f"final test accuracy: {history.final_accuracy:.4f} (target {args.target:g} {when}; "
          f"{history.wall_seconds:.2f} s)")
    if dp is not None:
        print(f"privacy: (epsilon, delta) = ({history.final_epsilon:.4g}, {dp.delta:g}) for a "
              f"client after {len(history.epsilon)} rounds at sampling rate "
              f"q={history.config['sample_rate']:g} (Opacus RDP accountant)")
    if config.secure_aggregation:
        _print_secagg(history)
    if args.plot is not None:
        from matplotlib.figure import Figure

        from course_lib import plots

        baseline = run_centralised(epochs=config.rounds, seed=config.seed, data=data)
        fig = Figure(figsize=(10, 3.4), dpi=plots.DPI, layout="constrained")  # no pyplot: Agg
        plots.run_figure(history, baseline=baseline, target=args.target, fig=fig)
        fig.savefig(args.plot)
        print(f"centralised baseline after {config.rounds} epochs: "
              f"{baseline.final_accuracy:.4f}; figure saved to {args.plot}")
    return 0


def _print_secagg(history) -> None:
    reports = [r for r in history.secagg if r is not None]
    if not reports:
        return
    params = reports[0].params
    cpu = sum(float(r.client_seconds.sum()) + r.server_seconds for r in reports) / len(reports)
    sent = sum(float(r.bytes_sent.mean()) for r in reports) / len(reports)
    print(f"secure aggregation: {params.graph} graph, {params.degree} neighbours and threshold "
          f"{params.threshold} per client (first round); {cpu * 1e3:.0f} ms CPU per round "
          f"(clients + server), {sent / 1e3:.1f} KB sent per client per round")


def _check_plot_path(path: Path, parser: argparse.ArgumentParser) -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in kinds:
        parser.error(f"argument --plot: file type must be one of {', '.join(sorted(kinds))}, "
                     f"got {path.name!r}")
    if not path.parent.is_dir():
        parser.error(f"argument --plot: folder {str(path.parent)!r} does not exist")


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {"fedavg": _add_fedavg}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m course_lib`` parser, one sub-parser per entry of :data:`COMMANDS`."""
    parser = _Parser(
        prog="python -m course_lib",
        description="Headless tools of the privacy course (大模型隐私保护).")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return the exit status.

    A bad argument prints one line naming it (the message of :class:`~course_lib.fl.config.
    FedAvgConfig` where the option is its) and a one-line hint, and raises ``SystemExit(2)``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args, args.command_parser)
