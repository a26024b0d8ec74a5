"""Experiments behind the chapter's tables: how many rounds FedSGD and FedAvg need.

McMahan et al. (2017, Table 2) count the communication rounds each method needs to reach a
target test accuracy, for FedSGD (one full-batch gradient step per client per round) and for
FedAvg with ``E`` local epochs of mini-batches of ``B``, on IID and on pathological non-IID
data. :func:`rounds_to_target_table` repeats that count on the digits:

- every (method, partition) cell tries each learning rate of a small grid, as the paper did,
  and keeps the one that needs the fewest rounds (the median over ``seeds``);
- a run stops as soon as it reaches the target (or diverges), through the ``on_round`` hook of
  :func:`~course_lib.fl.simulation.run_fedavg`, so a whole table takes a few seconds;
- the speed-up of a cell is FedSGD's rounds divided by its own, on the same partition.

Examples
--------
>>> from course_lib.fl.experiments import rounds_to_target
>>> rounds_to_target(target=0.9, seeds=(0,), max_rounds=50, num_clients=10, lr=0.5,
...                  local_epochs=1, batch_size=10)
(2,)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from course_lib._validation import require_int
from course_lib.fl.data import Dataset
from course_lib.fl.simulation import History, run_fedavg, run_fedsgd

__all__ = ["TargetRow", "RoundsTable", "rounds_to_target", "rounds_to_target_table"]

DIVERGED = 10.0  # a run whose test loss exceeds 10x its initial loss has diverged: stop it


def _median(values: Sequence[int | None]) -> int | None:
    """Upper median, where ``None`` (target never reached) counts as infinitely many rounds."""
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    return ordered[len(ordered) // 2]


def rounds_to_target(*, target: float, seeds: Sequence[int] = (0, 1, 2), max_rounds: int = 200,
                     algorithm: str = "fedavg", **run_kwargs) -> tuple[int | None, ...]:
    """Rounds each seed needs to reach ``target`` test accuracy (``None``: not within budget).

    Parameters
    ----------
    target : float
        Test accuracy to reach, in (0, 1].
    seeds : sequence of int
        One run per seed (the seed fixes the initial model, the split and the shuffles).
    max_rounds : int
        Round budget of every run.
    algorithm : {"fedavg", "fedsgd"}
        :func:`~course_lib.fl.simulation.run_fedavg` or
        :func:`~course_lib.fl.simulation.run_fedsgd`.
    **run_kwargs
        Passed on (``num_clients``, ``lr``, ``partition``, ``local_epochs``, ...).
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ValueError(f"`target` must be a number in (0, 1], got {target!r}")
    require_int("max_rounds", max_rounds, minimum=1)
    runners = {"fedavg": run_fedavg, "fedsgd": run_fedsgd}
    if algorithm not in runners:
        raise ValueError(f"`algorithm` must be one of {tuple(runners)}, got {algorithm!r}")
    if not seeds:
        raise ValueError("`seeds` must name at least one seed, got an empty sequence")

    def stop(history: History) -> bool:  # reached, or diverged (NaN or exploding loss)
        loss = history.test_loss[-1]
        return history.test_accuracy[-1] >= target or not loss < DIVERGED * history.initial_loss

    return tuple(runners[algorithm](rounds=max_rounds, seed=seed, on_round=stop,
                                    **run_kwargs).rounds_to_reach(target) for seed in seeds)


@dataclass(frozen=True)
class TargetRow:
    """One cell of the table: a method on one partition, at its best learning rate.

    Attributes
    ----------
    method : str
        ``"FedSGD"`` or ``"FedAvg"``.
    local_epochs : int
        ``E``.
    batch_size : int or None
        ``B``; ``None`` is all of a client's data in one step (the paper's ``B = inf``).
    partition : str
        ``"iid"``, ``"shards"`` or ``"dirichlet"``.
    lr : float
        The learning rate that needed the fewest rounds.
    rounds : int or None
        Median rounds over the seeds at that rate (``None``: most seeds never got there).
    per_seed : tuple of int or None
        The rounds of each seed at that rate.
    by_lr : dict of float to int or None
        Median rounds at every rate tried.
    speedup : float or None
        FedSGD's rounds on the same partition divided by ``rounds``.
    """

    method: str
    local_epochs: int
    batch_size: int | None
    partition: str
    lr: float
    rounds: int | None
    per_seed: tuple[int | None, ...]
    by_lr: dict[float, int | None] = field(default_factory=dict)
    speedup: float | None = None

    @property
    def label(self) -> str:
        """``"FedAvg E=5 B=10"`` style name of the method."""
        b = "inf" if self.batch_size is None else self.batch_size
        return f"{self.method} E={self.local_epochs} B={b}"


@dataclass(frozen=True)
class RoundsTable:
    """The result of :func:`rounds_to_target_table`; ``print`` it for the paper-style table."""

    target: float
    num_clients: int
    fraction: float
    max_rounds: int
    seeds: tuple[int, ...]
    rows: tuple[TargetRow, ...]

    def row(self, label: str, partition: str) -> TargetRow:
        """The cell for ``label`` (e.g. ``"FedAvg E=5 B=10"``) on ``partition``."""
        for r in self.rows:
            if r.label == label and r.partition == partition:
                return r
        raise KeyError(f"no row {label!r} on partition {partition!r}")

    def _cells(self) -> tuple[list[str], list[str]]:
        labels = list(dict.fromkeys(r.label for r in self.rows))
        return labels, list(dict.fromkeys(r.partition for r in self.rows))

    def __str__(self) -> str:
        labels, parts = self._cells()
        head = f"{'':<17}" + "".join(f"| {p:<24}" for p in parts)
        sub = f"{'method':<17}" + "| rounds  speed-up  lr    " * len(parts)
        lines = [f"Rounds to reach {self.target:.0%} test accuracy: {self.num_clients} clients, "
                 f"C={self.fraction:g}, median of {len(self.seeds)} seeds, best lr per cell",
                 head, sub, "-" * len(sub)]
        for label in labels:
            line = f"{label:<17}"
            for p in parts:
                r = self.row(label, p)
                rounds = f">{self.max_rounds}" if r.rounds is None else str(r.rounds)
                speed = "-" if r.speedup is None else f"{r.speedup:.1f}x"
                line += f"| {rounds:>6}  {speed:>8}  {r.lr:<6g}"
            lines.append(line)
        return "\n".join(lines)

    def grid(self) -> str:
        """Every learning rate tried and its median rounds, to show what the tuning found."""
        lines = []
        for r in self.rows:
            tried = "  ".join(f"lr {lr:g}: {'-' if n is None else n}" for lr, n in r.by_lr.items())
            lines.append(f"{r.label:<17} {r.partition:<7} {tried}")
        return "\n".join(lines)


def rounds_to_target_table(*, target: float = 0.95, num_clients: int = 10, fraction: float = 1.0,
                           partitions: Sequence[str] = ("iid", "shards"),
                           fedavg_epochs: Sequence[int] = (1, 5), batch_size: int = 10,
                           fedsgd_lrs: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
                           fedavg_lrs: Sequence[float] = (0.1, 0.3, 0.5, 1.0),
                           seeds: Sequence[int] = (0, 1, 2), max_rounds: int = 200,
                           data: Dataset | None = None) -> RoundsTable:
    """Rounds to reach ``target`` for FedSGD and FedAvg (each ``E`` in ``fedavg_epochs``).

    For every method and partition, each learning rate of its grid is run with every seed;
    the cell reports the rate with the lowest median (ties: fewer rounds in total, then the
    smaller rate). Runs stop at the target or when they diverge.

    Parameters
    ----------
    target : float
        Test accuracy to reach.
    num_clients, fraction : int, float
        ``K`` clients, of which a fraction ``C`` takes part in each round.
    partitions : sequence of str
        Splits to compare (``"shards"`` is McMahan's pathological non-IID).
    fedavg_epochs : sequence of int
        The ``E`` values of the FedAvg rows; all use mini-batches of ``batch_size``.
    fedsgd_lrs, fedavg_lrs : sequence of float
        Learning-rate grids (FedSGD's full-batch step tolerates larger rates).
    seeds : sequence of int
    max_rounds : int
        Budget per run; cells that need more show ``None``.
    data : Dataset or None
        Defaults to the digits.
    """
    settings = [("FedSGD", "fedsgd", 1, None, fedsgd_lrs)]
    settings += [("FedAvg", "fedavg", e, batch_size, fedavg_lrs) for e in fedavg_epochs]
    rows = []
    for method, algorithm, epochs, batch, grid in settings:
        for partition in partitions:
            options = dict(num_clients=num_clients, fraction=fraction, partition=partition,
                           data=data)
            if algorithm == "fedavg":
                options.update(local_epochs=epochs, batch_size=batch)
            if partition == "dirichlet":
                raise ValueError("`partitions` may hold 'iid' and 'shards' (the paper's two "
                                 "splits); got 'dirichlet'")
            runs = {lr: rounds_to_target(target=target, seeds=seeds, max_rounds=max_rounds,
                                         algorithm=algorithm, lr=lr, **options) for lr in grid}

            def cost(lr: float, runs: dict = runs) -> tuple[float, float, float]:
                median = _median(runs[lr])
                total = sum(max_rounds + 1 if n is None else n for n in runs[lr])
                return (math.inf if median is None else median, total, lr)

            best = min(grid, key=cost)
            rows.append(TargetRow(method, epochs, batch, partition, float(best),
                                  _median(runs[best]), runs[best],
                                  {float(lr): _median(n) for lr, n in runs.items()}))
    baseline = {r.partition: r.rounds for r in rows if r.method == "FedSGD"}
    rows = [TargetRow(**{**r.__dict__, "speedup": None if r.rounds is None
                         or baseline[r.partition] is None else baseline[r.partition] / r.rounds})
            for r in rows]
    return RoundsTable(float(target), num_clients, float(fraction), max_rounds, tuple(seeds),
                       tuple(rows))
