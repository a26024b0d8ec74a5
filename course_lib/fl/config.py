"""One federated run's options, validated once: :class:`FedAvgConfig`.

Every face of the course that starts a run takes this one object: :func:`~course_lib.fl.
simulation.run_fedavg`, the command line, the widget lab, the Flower deployment and the
chapter-5 cost table. What a run *is* (clients, rounds, training, split, protections, seed)
lives here; what it runs *on* (the data set, the initial model) and how it is watched
(progress bar, per-round callback) are arguments of the run itself.

Examples
--------
>>> from course_lib.fl.config import FedAvgConfig
>>> config = FedAvgConfig(num_clients=10, rounds=20, alpha=0.5)
>>> config.partition, config.clients_per_round
('dirichlet', 10)
>>> config.replace(fraction=0.3).clients_per_round
3
>>> FedAvgConfig(num_clients=0, rounds=1)
Traceback (most recent call last):
...
ValueError: `num_clients` must be an int in [1, 10000], got 0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from course_lib._validation import require_choice, require_int, require_real
from course_lib.dp import DPConfig
from course_lib.fl.client import DEFAULT_LR, check_training_args
from course_lib.fl.partition import _split, resolve_partition
from course_lib.secagg import GRAPHS

__all__ = ["FedAvgConfig", "ENGINES", "MAX_CLIENTS", "MAX_ROUNDS"]

ENGINES = ("batched", "sequential")
MAX_CLIENTS = 10_000
MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class FedAvgConfig:
    """The options of one FedAvg run (McMahan et al. 2017), checked when it is made.

    Attributes
    ----------
    num_clients : int
        Clients ``K`` sharing the training set, 1 to 10,000.
    rounds : int
        Communication rounds, 1 to 10,000.
    local_epochs : int
        Local passes ``E`` over each client's data per round.
    batch_size : int or None
        Local mini-batch size ``B``; ``None`` means the client's whole data set.
    lr : float
        Local SGD step size.
    fraction : float
        Fraction ``C`` of clients selected per round, in (0, 1];
        ``m = max(1, round(C * K))`` (:attr:`clients_per_round`).
    partition : {"iid", "dirichlet", "shards"} or None
        ``None`` becomes ``"dirichlet"`` when ``alpha`` is given, else ``"iid"``.
    alpha : float or None
        Dirichlet concentration (> 0), with ``partition="dirichlet"`` only.
    shards_per_client, min_size : int
        Options of the shard and Dirichlet splits.
    seed : int
        Seeds the model, the split, the selection, every client's shuffle, the dropouts and
        the DP noise (each its own stream; nothing is seeded globally).
    engine : {"batched", "sequential"}
        The fast path (every client trained at once) or the plain reference loop.
    dp : DPConfig or None
        Client-level DP-FedAvg (clip, average over ``m``, Gaussian noise).
    secure_aggregation : bool
        The server learns only the sum of a round's updates (needs ``m >= 2``).
    secagg_graph : {"complete", "sparse"}
        Masking pairs: all (Bonawitz et al.) or ``O(log m)`` neighbours (SecAgg+).
    dropout : float or tuple of float
        Fraction in ``[0, 1)`` of each round's clients that train but never send, or one
        fraction per round (a tuple of ``rounds`` numbers).
    """

    num_clients: int
    rounds: int
    local_epochs: int = 1
    batch_size: int | None = 32
    lr: float = DEFAULT_LR
    fraction: float = 1.0
    partition: str | None = None
    alpha: float | None = None
    shards_per_client: int = 2
    min_size: int = 0
    seed: int = 0
    engine: str = "batched"
    dp: DPConfig | None = None
    secure_aggregation: bool = False
    secagg_graph: str = "complete"
    dropout: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        require_int("num_clients", self.num_clients, minimum=1, maximum=MAX_CLIENTS)
        require_int("rounds", self.rounds, minimum=1, maximum=MAX_ROUNDS)
        check_training_args(epochs=self.local_epochs, batch_size=self.batch_size, lr=self.lr,
                            seed=self.seed)
        require_real("fraction", self.fraction, minimum=0.0, maximum=1.0, allow_minimum=False)
        object.__setattr__(self, "partition", resolve_partition(self.partition, self.alpha))
        require_int("shards_per_client", self.shards_per_client, minimum=1)
        require_int("min_size", self.min_size, minimum=0)
        require_choice("engine", self.engine, ENGINES)
        if self.dp is not None and not isinstance(self.dp, DPConfig):
            raise TypeError(f"`dp` must be a course_lib.dp.DPConfig or None, "
                            f"got {type(self.dp).__name__}")
        if not isinstance(self.secure_aggregation, bool):
            raise TypeError(f"`secure_aggregation` must be True or False, "
                            f"got {type(self.secure_aggregation).__name__}")
        require_choice("secagg_graph", self.secagg_graph, GRAPHS)
        if self.secure_aggregation and self.clients_per_round < 2:
            raise ValueError(f"`secure_aggregation` needs at least 2 clients per round, got "
                             f"round(fraction * num_clients) = {self.clients_per_round}")
        object.__setattr__(self, "dropout", _check_dropout(self.dropout, self.rounds))

    @property
    def clients_per_round(self) -> int:
        """``m = max(1, round(fraction * num_clients))``: the clients chosen each round."""
        return max(1, round(self.fraction * self.num_clients))

    @property
    def sample_rate(self) -> float:
        """``q = m / K``: the chance that a given client takes part in a round."""
        return self.clients_per_round / self.num_clients

    def dropout_of(self, round_number: int) -> float:
        """The dropout fraction of round ``round_number`` (1-based)."""
        if isinstance(self.dropout, tuple):
            return self.dropout[round_number - 1]
        return self.dropout

    def split(self, labels: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        """Each client's sample indices: this run's partition of the training ``labels``."""
        return _split(self.partition, labels, self.num_clients, self.alpha, self.seed,
                      self.shards_per_client, self.min_size)

    def replace(self, **changes: Any) -> FedAvgConfig:
        """A copy with some options changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict (``dp`` stays a :class:`DPConfig`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _check_dropout(dropout: object, rounds: int) -> float | tuple[float, ...]:
    """One fraction in [0, 1), or one per round; a sequence comes back as a tuple."""
    single = not isinstance(dropout, (str, bytes)) and (
        isinstance(dropout, (int, float, np.floating)) and not isinstance(dropout, bool))
    rates = [dropout] if single else dropout
    if not single and (isinstance(dropout, (str, bytes)) or
                       not isinstance(rates, (Sequence, np.ndarray)) or len(rates) != rounds):
        raise ValueError(f"`dropout` must be a number in [0, 1) or a sequence of {rounds} "
                         f"such numbers (one per round), got {dropout!r}")
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
                or not 0 <= rate < 1:
            raise ValueError(f"`dropout` must be a fraction in [0, 1) of the clients of a round, "
                             f"got {rate!r}")
    return float(dropout) if single else tuple(float(rate) for rate in rates)
