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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "COMMANDS"]

PARTITIONS = ("iid", "dirichlet", "shards")
ENGINES = ("batched", "sequential")
GRAPHS = ("complete", "sparse")
DEFAULT_CLIP = 0.1  # suits the digits MLP at lr 0.3 (see course_lib.widgets)
DEFAULT_DELTA = 1e-5


# -- argument types: argparse turns their ArgumentTypeError into "argument --x: ..." -------------
def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {value}")
        return value
    return parse


def _float_in(lo: float, hi: float, *, lo_open: bool = True,
              hi_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        ok = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
        if not ok:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{lo:g}, {hi:g}{right}, "
                                             f"got {text}")
        return value
    return parse


def _batch_size(text: str) -> int | None:
    return None if text == "all" else _int_in(1, 100_000)(text)


# -- fedavg ------------------------------------------------------------------------------------
def _add_fedavg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fedavg", help="simulate FedAvg on the digits and print a per-round table",
        description="Simulate FedAvg (McMahan et al. 2017) on scikit-learn's digits: per-round "
                    "test accuracy, loss, participating clients, bytes sent and time.")
    p.add_argument("--nodes", type=_int_in(1, 10_000), default=10,
                   help="number of clients K (default: %(default)s)")
    p.add_argument("--rounds", type=_int_in(1, 10_000), default=20,
                   help="communication rounds (default: %(default)s)")
    p.add_argument("--partition", choices=PARTITIONS, default=None,
                   help="how the data is split; default: dirichlet if --alpha is given, else iid")
    p.add_argument("--alpha", type=_float_in(0, float("inf")), default=None,
                   help="Dirichlet concentration (> 0; small = strong label skew)")
    p.add_argument("--epochs", type=_int_in(1, 1_000), default=1,
                   help="local epochs E (default: %(default)s)")
    p.add_argument("--batch-size", type=_batch_size, default=32,
                   help="local batch size B, or 'all' for one full-batch step per epoch "
                        "(default: %(default)s)")
    p.add_argument("--lr", type=_float_in(0, 100), default=0.3,
                   help="local SGD learning rate (default: %(default)s)")
    p.add_argument("--fraction", type=_float_in(0, 1), default=1.0,
                   help="fraction C of clients per round, in (0, 1] (default: %(default)s)")
    p.add_argument("--engine", choices=ENGINES, default="batched",
                   help="'sequential' is the readable reference, 'batched' (default) the "
                        "fast one; same result")
    p.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=0,
                   help="fixes the model, the split and the shuffles (default: %(default)s)")
    p.add_argument("--target", type=_float_in(0, 1), default=0.9,
                   help="report the first round reaching this test accuracy "
                        "(default: %(default)s)")
    privacy = p.add_argument_group("privacy")
    privacy.add_argument("--dp-noise", type=_float_in(0, 1e6, lo_open=False), default=None,
                         metavar="Z", help="DP-FedAvg with noise multiplier Z (0: clip only); "
                                           "prints epsilon")
    privacy.add_argument("--clip", type=_float_in(0, 1e6), default=None, metavar="S",
                         help=f"DP clipping norm of a client's update (default: {DEFAULT_CLIP})")
    privacy.add_argument("--delta", type=_float_in(0, 1, hi_open=True), default=None,
                         metavar="D", help=f"DP delta (default: {DEFAULT_DELTA:g})")
    privacy.add_argument("--secure-agg", action="store_true",
                         help="secure aggregation: the server learns only the sum")
    privacy.add_argument("--secagg-graph", choices=GRAPHS, default=None,
                         help="who masks with whom: all pairs or O(log n) neighbours "
                              "(default: complete)")
    privacy.add_argument("--dropout", type=_float_in(0, 1, lo_open=False, hi_open=True),
                         default=0.0, metavar="F",
                         help="fraction of each round's clients that drop out after training "
                              "(default: %(default)s)")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                   help="save the accuracy curve (with the centralised baseline) and the "
                        "label counts per client")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    p.set_defaults(run=_run_fedavg, command_parser=p)


def _run_fedavg(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.plot is not None:
        _check_plot_path(args.plot, parser)
    for flag, value in (("--clip", args.clip), ("--delta", args.delta)):
        if value is not None and args.dp_noise is None:
            parser.error(f"argument {flag}: only used with --dp-noise")
    if args.secagg_graph is not None and not args.secure_agg:
        parser.error("argument --secagg-graph: only used with --secure-agg")
    from tqdm.auto import tqdm  # imported here: torch loads only when a command runs

    from course_lib.dp import DPConfig
    from course_lib.errors import CourseLibError
    from course_lib.fl.simulation import run_centralised, run_fedavg

    dp = None if args.dp_noise is None else DPConfig(
        noise_multiplier=args.dp_noise, max_norm=args.clip or DEFAULT_CLIP,
        delta=args.delta or DEFAULT_DELTA)
    graph = args.secagg_graph or "complete"
    columns = [("round", 5), ("accuracy", 8), ("loss", 7), ("clients", 7)]
    columns += [("dropped", 7)] * (args.dropout > 0) + [("epsilon", 8)] * (dp is not None)
    columns += [("sent (KB)", 9), ("time (ms)", 9)]

    def on_round(history) -> None:
        r = history.rows()[-1]
        cells = {"round": f"{r['round']}", "accuracy": f"{r['accuracy']:.4f}",
                 "loss": f"{r['loss']:.4f}", "clients": f"{r['clients']}",
                 "dropped": f"{r.get('dropped', 0)}", "epsilon": f"{r.get('epsilon', 0):.3g}",
                 "sent (KB)": f"{r['bytes'] / 1e3:.1f}", "time (ms)": f"{r['seconds'] * 1e3:.1f}"}
        tqdm.write("  ".join(f"{cells[name]:>{width}}" for name, width in columns),
                   file=sys.stdout)

    options = dict(num_clients=args.nodes, rounds=args.rounds, local_epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, fraction=args.fraction,
                   partition=args.partition, alpha=args.alpha, seed=args.seed,
                   engine=args.engine, dp=dp, secure_aggregation=args.secure_agg,
                   secagg_graph=graph, dropout=args.dropout)
    split = args.partition or ("iid" if args.alpha is None else "dirichlet")
    extra = "" if dp is None else \
        f", DP z={dp.noise_multiplier:g} S={dp.max_norm:g} delta={dp.delta:g}"
    extra += f", secure aggregation ({graph} graph)" if args.secure_agg else ""
    extra += f", dropout={args.dropout:g}" if args.dropout else ""
    print(f"FedAvg on digits: {args.nodes} clients, {split}"
          f"{'' if args.alpha is None else f' alpha={args.alpha:g}'}, {args.rounds} rounds, "
          f"E={args.epochs}, B={'all' if args.batch_size is None else args.batch_size}, "
          f"lr={args.lr:g}, C={args.fraction:g}, engine={args.engine}, seed={args.seed}{extra}")
    print("  ".join(f"{name:>{width}}" for name, width in columns))
    try:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        history = run_fedavg(**options, progress=progress, on_round=on_round)
    except ValueError as err:  # combinations argparse cannot see (e.g. too many shards)
        parser.error(str(err))
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
    if args.secure_agg:
        _print_secagg(history)
    if args.plot is not None:
        from matplotlib.figure import Figure

        from course_lib import plots

        baseline = run_centralised(epochs=args.rounds, seed=args.seed)
        fig = Figure(figsize=(10, 3.4), dpi=plots.DPI, layout="constrained")  # no pyplot: Agg
        plots.run_figure(history, baseline=baseline, target=args.target, fig=fig)
        fig.savefig(args.plot)
        print(f"centralised baseline after {args.rounds} epochs: "
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
    parser = argparse.ArgumentParser(
        prog="python -m course_lib",
        description="Headless tools of the privacy course (大模型隐私保护).")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return the exit status.

    Bad arguments print a usage message and raise ``SystemExit(2)``, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args, args.command_parser)
