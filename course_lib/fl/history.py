"""The record of one simulated training run (returned by every ``run_*`` function)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

__all__ = ["History"]


@dataclass(eq=False, repr=False)
class History:
    """What happened in each round of a federated (or centralised) training run.

    Round ``r`` (1-based) is entry ``r - 1`` of every per-round list. For the centralised
    baseline a "round" is one epoch over all the training data.

    Attributes
    ----------
    algorithm : str
        ``"fedavg"``, ``"fedsgd"`` or ``"centralised"``.
    config : dict
        The arguments of the run (after defaults were resolved), for tables and plots.
    test_accuracy, test_loss : list of float
        The global model's test accuracy and mean cross-entropy after each round.
    initial_accuracy, initial_loss : float
        The same for the initial model ("round 0").
    participants : list of int arrays
        The ids of the clients selected in each round.
    bytes_transferred : list of int
        Bytes that would travel in each round: every participant downloads the global model
        and uploads its own (raw float32 tensors, no protocol overhead). For the centralised
        baseline, the raw training data travels once, in round 1.
    round_seconds : list of float
        Wall time of each round's training and aggregation (evaluation excluded; secure
        aggregation and DP accounting included).
    dropped : list of int arrays
        The ids of the selected clients whose updates did not arrive in each round
        (``dropout``); empty arrays when nobody dropped.
    epsilon : list of float
        With differential privacy (``dp=``): the ``epsilon`` spent after each round, for
        ``config["dp"].delta`` (Opacus's RDP accountant); empty without DP.
    secagg : list of SecAggReport or None
        With secure aggregation: each round's protocol report (who survived, bytes, CPU
        seconds), ``None`` for a round whose clients had no data; empty without it.
    secagg_seconds : list of float
        With secure aggregation: wall time of each round's aggregation step, the protocol
        (all clients' and the server's parts, run in this process) included; part of
        ``round_seconds``.
    wall_seconds : float
        Wall time of the whole run: set-up, training, aggregation and evaluation.
    label_counts : np.ndarray, shape (clients, classes)
        Training samples of each class per client (one row for the centralised baseline).
    model : nn.Module
        The final global model.
    """

    algorithm: str
    config: dict[str, Any]
    label_counts: np.ndarray
    model: nn.Module
    initial_accuracy: float
    initial_loss: float
    test_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    participants: list[np.ndarray] = field(default_factory=list)
    bytes_transferred: list[int] = field(default_factory=list)
    round_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    dropped: list[np.ndarray] = field(default_factory=list)
    epsilon: list[float] = field(default_factory=list)
    secagg: list[Any] = field(default_factory=list)
    secagg_seconds: list[float] = field(default_factory=list)

    @property
    def rounds(self) -> np.ndarray:
        """Round numbers ``1 .. R`` completed so far (x axis of the per-round lists)."""
        return np.arange(1, len(self.test_accuracy) + 1)

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last completed round (the initial one if none ran)."""
        return self.test_accuracy[-1] if self.test_accuracy else self.initial_accuracy

    @property
    def final_epsilon(self) -> float | None:
        """``epsilon`` after the last completed round; ``None`` without DP (or before round 1)."""
        return self.epsilon[-1] if self.epsilon else None

    def rounds_to_reach(self, target: float) -> int | None:
        """First round whose test accuracy is at least ``target``; ``None`` if never reached."""
        for r, accuracy in zip(self.rounds, self.test_accuracy):
            if accuracy >= target:
                return int(r)
        return None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per round (round, accuracy, loss, clients, bytes, seconds) for tables;
        with ``dropped`` when clients dropped out and ``epsilon`` under DP."""
        rows = [{"round": int(r), "accuracy": acc, "loss": loss, "clients": len(p),
                 "bytes": b, "seconds": s}
                for r, acc, loss, p, b, s in zip(self.rounds, self.test_accuracy, self.test_loss,
                                                 self.participants, self.bytes_transferred,
                                                 self.round_seconds)]
        for row, dropped in zip(rows, self.dropped):
            if any(len(d) for d in self.dropped):
                row["dropped"] = len(dropped)
        for row, eps in zip(rows, self.epsilon):
            row["epsilon"] = eps
        return rows

    def __repr__(self) -> str:
        clients = self.label_counts.shape[0]
        eps = "" if self.final_epsilon is None else f", epsilon {self.final_epsilon:.3g}"
        return (f"History({self.algorithm}, {clients} client{'s' * (clients != 1)}, "
                f"{len(self.test_accuracy)} rounds, final accuracy {self.final_accuracy:.3f}"
                f"{eps})")
