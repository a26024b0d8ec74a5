"""What each protection in the course costs, relative to plain FedAvg, measured in one run.

Chapter 5 of the source says privacy must be weighed against performance; this module does
the weighing. One call, :func:`measure_costs`, trains one round of ``K`` clients on the digits
and applies every protection of the course to *the same* client updates:

======================  ===============================================================
group                   rows
======================  ===============================================================
``symmetric``           AES-256-GCM (:mod:`course_lib.crypto.model`) vs torch.save + Fernet
                        (:mod:`course_lib.crypto.naive`): each client encrypts its update
                        under a shared key, the server decrypts it
``public_key``          RSA-3072-OAEP hybrid (:mod:`course_lib.crypto.asymmetric`) vs HPKE
                        ML-KEM-768 + X25519 (:mod:`course_lib.crypto.transport`): each
                        client encrypts its update for the server's public key
``homomorphic``         Paillier, one ciphertext per value vs packed (BatchCrypt), and CKKS
                        if TenSEAL is installed: the clients encrypt, the server adds the
                        ciphertexts, the key holder decrypts the sum once
``secure_aggregation``  pairwise masks (:mod:`course_lib.secagg`): complete graph
                        without and with dropouts, sparse graph with dropouts
``dp``                  DP-FedAvg (:mod:`course_lib.dp`) at several noise
                        multipliers: its cost is *accuracy*, at the epsilon shown
======================  ===============================================================

The yardstick is one plain FedAvg round: the ``K`` clients' local training (one epoch each,
one client after another, as each spends its own CPU) and the server's weighted mean; and the
raw float32 update a client uploads. A row's ``extra_seconds`` is the compute the protection
*adds* to a round, summed over all parties (clients and server, run one after another here);
:meth:`CostTable.time_ratio` is ``(round + extra) / round``. Times are CPU seconds of this
process (``time.process_time``, every operation on one thread), medians of ``repeats`` calls
for the fast operations, so that other jobs on a shared machine inflate them less than wall
time would. Key generation happens once per deployment, not per round: the notes give it.
The DP rows' accuracy and epsilon come from ``run_fedavg(dp=...)`` over ``rounds`` rounds.

Two rows are **extrapolated**, and marked so: Paillier with one ciphertext per value is
measured on ``per_scalar_values`` values of ``paillier_clients`` clients and scaled linearly
to the whole update and all ``K`` clients (every value costs the same encryption, addition
and decryption); packed Paillier is measured on ``paillier_clients`` clients and scaled to
``K`` (every client does the same work) unless ``paillier_clients == K``. Every other row is
measured in full. The implementation is in :mod:`course_lib.costs.measures`.

Examples
--------
>>> from course_lib.costs import measure_costs
>>> table = measure_costs(quick=True, groups=("symmetric",))
>>> [row.method for row in table.rows]
['AES-256-GCM', 'Fernet (torch.save)']
>>> table.time_ratio("AES-256-GCM") < table.time_ratio("Fernet (torch.save)")
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.costs.measures import MEASURE, CostRow, one_round
from course_lib.costs.settings import FULL, GROUPS, QUICK, CostSettings
from course_lib.fl.models import state_nbytes
from course_lib.fl.simulation import run_fedavg
from course_lib.plots import DPI

__all__ = ["GROUPS", "CostSettings", "QUICK", "FULL", "CostRow", "CostTable", "measure_costs",
           "plot_costs"]



@dataclass(frozen=True, repr=False)
class CostTable:
    """The rows of one :func:`measure_costs` run and the plain-FedAvg yardstick.

    Attributes
    ----------
    rows : tuple of CostRow
        In the order of :data:`GROUPS`.
    baseline_seconds : float
        CPU seconds of one plain FedAvg round (``K`` local trainings + the weighted mean).
    baseline_bytes : int
        One client's raw float32 update, what plain FedAvg uploads.
    baseline_accuracy : float
        Test accuracy of plain FedAvg after ``settings.rounds`` rounds.
    skipped : tuple of str
        Rows that could not be measured, and why (CKKS without TenSEAL).
    seconds : float
        Wall time of the whole measurement.
    """

    rows: tuple[CostRow, ...]
    baseline_seconds: float
    baseline_bytes: int
    baseline_accuracy: float
    num_parameters: int
    settings: CostSettings
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0

    def row(self, method: str) -> CostRow:
        """The row named ``method`` (``KeyError`` listing the names if there is none)."""
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(f"no row {method!r}; rows: {[r.method for r in self.rows]}")

    def time_ratio(self, row: CostRow | str) -> float:
        """``(plain round + extra) / plain round``: how much longer a protected round takes."""
        row = self.row(row) if isinstance(row, str) else row
        return (self.baseline_seconds + row.extra_seconds) / self.baseline_seconds

    def bytes_ratio(self, row: CostRow | str) -> float:
        """A client's upload, protected over plain."""
        row = self.row(row) if isinstance(row, str) else row
        return row.bytes_per_client / self.baseline_bytes

    def to_rows(self) -> list[dict]:
        """One dict per row, the plain baseline first, with both ratios (for a DataFrame)."""
        plain = CostRow("baseline", "plain FedAvg", 0.0, self.baseline_bytes, 0.0,
                        self.baseline_accuracy, math.inf,
                        note=f"one round: {1e3 * self.baseline_seconds:.1f} ms")
        return [asdict(r) | {"time_ratio": self.time_ratio(r), "bytes_ratio": self.bytes_ratio(r)}
                for r in (plain, *self.rows)]

    def __repr__(self) -> str:
        s = self.settings
        lines = [f"Cost of each protection relative to plain FedAvg: {s.num_clients} clients, "
                 f"digits MLP ({self.num_parameters:,} parameters, {self.baseline_bytes:,} bytes "
                 f"per update)",
                 f"plain round {1e3 * self.baseline_seconds:.1f} ms (local training + weighted "
                 f"mean); accuracy {self.baseline_accuracy:.3f} after {s.rounds} rounds",
                 f"{'protection':<27}{'extra/round':>12}{'x time':>9}{'bytes/client':>14}"
                 f"{'x bytes':>9}{'max error':>10}{'accuracy':>9}{'epsilon':>8}  note"]
        lines.append("-" * len(lines[-1]))
        for r in self.rows:
            err = "-" if r.max_error is None else f"{r.max_error:.0e}" if r.max_error else "0"
            acc = "-" if r.accuracy is None else f"{r.accuracy:.3f}"
            eps = "-" if r.epsilon is None else f"{r.epsilon:.3g}"
            lines.append(f"{r.method:<27}{_fmt_seconds(r.extra_seconds):>12}"
                         f"{_fmt_ratio(self.time_ratio(r)):>9}{r.bytes_per_client:>14,}"
                         f"{self.bytes_ratio(r):>9.2f}{err:>10}{acc:>9}{eps:>8}  "
                         f"{'EXTRAPOLATED ' * r.extrapolated}{r.note}")
        lines += [f"skipped: {reason}" for reason in self.skipped]
        lines.append(f"(measured in {self.seconds:.1f} s)")
        return "\n".join(lines)


def _fmt_seconds(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:,.1f} s"


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:,.0f}"


def measure_costs(*, quick: bool = False, settings: CostSettings | None = None,
                  groups: Collection[str] | None = None, seed: int = 0) -> CostTable:
    """Measure every protection's cost relative to plain FedAvg, in one run.

    Parameters
    ----------
    quick : bool
        Use :data:`QUICK` (50 clients, a few seconds) instead of :data:`FULL` (100 clients,
        about a minute).
    settings : CostSettings or None
        Your own sizes instead (not together with ``quick=True``).
    groups : collection of str or None
        A subset of :data:`GROUPS` to measure (the plain baseline is always measured).
    seed : int
        Seeds the data split, the model, the client training, the sparse graph, the dropouts
        and the DP noise. Keys always come from the OS CSPRNG.
    """
    if settings is not None and quick:
        raise ValueError("pass either `quick=True` or `settings`, not both")
    settings = (QUICK if quick else FULL) if settings is None else settings
    if not isinstance(settings, CostSettings):
        raise TypeError(f"`settings` must be a CostSettings, got {type(settings).__name__}")
    chosen = GROUPS if groups is None else tuple(groups)
    if isinstance(groups, str) or not chosen or any(g not in GROUPS for g in chosen):
        raise ValueError(f"`groups` must be a non-empty collection of {GROUPS}, got {groups!r}")
    require_int("seed", seed, minimum=0, maximum=2**31 - 1)
    start = time.perf_counter()
    with torch_threads(1):
        r = one_round(settings, seed)
        plain = run_fedavg(r.config, data=r.data)
        rows: list[CostRow] = []
        skipped: list[str] = []
        for group in GROUPS:
            if group in chosen:
                rows += MEASURE[group](r, skipped)
    return CostTable(tuple(rows), r.seconds,
                     state_nbytes(r.global_state), plain.final_accuracy,
                     sum(t.numel() for t in r.global_state.values()), settings, tuple(skipped),
                     time.perf_counter() - start)


_COLOURS = {"symmetric": "C0", "public_key": "C1", "homomorphic": "C3",
            "secure_aggregation": "C2", "dp": "C4"}
_LABELS = {"symmetric": "shared-key encryption", "public_key": "public-key encryption",
           "homomorphic": "homomorphic encryption", "secure_aggregation": "secure aggregation"}


def plot_costs(table: CostTable, *, fig: Figure | None = None) -> Figure:
    """Left: each protection's round time as a multiple of plain FedAvg's (log scale; hatched
    bars are extrapolated), with its upload size. Right: DP-FedAvg's test accuracy against
    epsilon, plain FedAvg dashed."""
    if not isinstance(table, CostTable):
        raise TypeError(f"`table` must be a CostTable, got {type(table).__name__}")
    if fig is None:
        fig = plt.figure(figsize=(10, 4.2), dpi=DPI, layout="constrained")
        plt.close(fig)  # shown once as a cell's value, not kept by pyplot
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(1.7, 1)))
    timed = [r for r in table.rows if r.group != "dp"]
    ratios = [table.time_ratio(r) for r in timed]
    left.barh(np.arange(len(timed)), [x - 1 for x in ratios], left=1,
              color=[_COLOURS[r.group] for r in timed],
              hatch=["//" if r.extrapolated else "" for r in timed], edgecolor="white")
    for y, (row, x) in enumerate(zip(timed, ratios)):
        left.text(x * 1.2, y, f"x{_fmt_ratio(x)} time, x{_fmt_ratio(table.bytes_ratio(row))} "
                  "bytes", va="center", fontsize=9)
    left.set_xscale("log")
    left.set_xlim(0.9, max([10.0, *ratios]) * 100)
    left.set_yticks(np.arange(len(timed)), [r.method for r in timed], fontsize=9)
    left.invert_yaxis()
    left.axvline(1, color="0.3", linewidth=1)
    left.set_xlabel(f"round time / plain FedAvg round ({1e3 * table.baseline_seconds:.0f} ms "
                    "CPU), log scale")
    left.set_title(f"Time and upload per round, {table.settings.num_clients} clients "
                   "(hatched: extrapolated)", fontsize="medium")
    left.grid(axis="x", alpha=0.3)
    groups = list(dict.fromkeys(r.group for r in timed))
    left.legend([Patch(color=_COLOURS[g]) for g in groups], [_LABELS[g] for g in groups],
                loc="lower right", fontsize=9)
    private = [r for r in table.rows if r.group == "dp"]
    if private:
        eps = [r.epsilon for r in private]
        right.plot(eps, [r.accuracy for r in private], marker="o", color=_COLOURS["dp"],
                   label=f"DP-FedAvg, S={table.settings.max_norm:g}")
        for r in private:
            right.annotate(r.method.removeprefix("DP-FedAvg "), (r.epsilon, r.accuracy),
                           textcoords="offset points", xytext=(0, -13), ha="center",
                           fontsize=9)
        right.set_xscale("log")
        right.set_xticks(eps, [f"{e:.2g}" if e < 100 else f"{e:.0f}" for e in eps],
                         fontsize=9)
        right.minorticks_off()
        right.margins(x=0.1)
        right.invert_xaxis()  # more private to the right
    right.axhline(table.baseline_accuracy, color="0.45", linestyle="--", label="plain FedAvg")
    right.set(xlabel=f"epsilon at delta={table.settings.delta:g} (more private ->)",
              ylabel="test accuracy", ylim=(0, 1.02))
    right.set_title(f"DP: the cost is accuracy ({table.settings.rounds} rounds)",
                    fontsize="medium")
    right.grid(alpha=0.3)
    right.legend(loc="lower left", fontsize=9)
    return fig
