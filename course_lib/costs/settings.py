"""What the chapter-5 cost table measures: :class:`CostSettings`, :data:`QUICK` and :data:`FULL`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from course_lib._validation import require_int
from course_lib.dp import DPConfig
from course_lib.fl.config import FedAvgConfig

__all__ = ["GROUPS", "CostSettings", "QUICK", "FULL"]

GROUPS = ("symmetric", "public_key", "homomorphic", "secure_aggregation", "dp")


@dataclass(frozen=True)
class CostSettings:
    """How much to measure. :data:`QUICK` fits a notebook; :data:`FULL` is the benchmark's.

    Attributes
    ----------
    num_clients, rounds : int
        ``K`` clients (all take part in every round) and rounds of the FedAvg runs.
    dropout : float
        Fraction of clients that drop out before sending their masked input (secure
        aggregation rows), in ``[0, 1/3]``.
    noise_multipliers : tuple of float
        DP-FedAvg's ``z`` values, one row each.
    max_norm, delta : float
        DP-FedAvg's clipping norm ``S`` and target ``delta``. ``S = 0.3`` is about the
        largest update norm of the first round (0.22-0.35 for 50 clients): clipping far
        below the norms biases the mean, far above them lets the noise swamp the signal.
    paillier_clients : int
        Clients whose Paillier encryption is measured (scaled to ``num_clients``).
    per_scalar_values : int
        Values per client measured for one-ciphertext-per-value Paillier.
    repeats : int
        Repeats of each fast operation (medians are reported).
    """

    num_clients: int = 100
    rounds: int = 30
    dropout: float = 0.1
    noise_multipliers: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    max_norm: float = 0.3
    delta: float = 1e-5
    paillier_clients: int = 100
    per_scalar_values: int = 10
    repeats: int = 50

    def __post_init__(self) -> None:
        require_int("num_clients", self.num_clients, minimum=2, maximum=1000)
        require_int("rounds", self.rounds, minimum=1, maximum=1000)
        require_int("paillier_clients", self.paillier_clients, minimum=2,
                    maximum=self.num_clients)
        require_int("per_scalar_values", self.per_scalar_values, minimum=1)
        require_int("repeats", self.repeats, minimum=1, maximum=10_000)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0 <= self.dropout <= 1 / 3:
            raise ValueError(f"`dropout` must be a number in [0, 1/3], got {self.dropout!r}")
        if not self.noise_multipliers or any(
                isinstance(z, bool) or not isinstance(z, (int, float)) or not 0 < z < math.inf
                for z in self.noise_multipliers):
            raise ValueError(f"`noise_multipliers` must be a non-empty tuple of positive "
                             f"numbers, got {self.noise_multipliers!r}")
        DPConfig(self.noise_multipliers[0], self.max_norm, delta=self.delta)  # checks S, delta

    def fedavg_config(self, seed: int) -> FedAvgConfig:
        """The plain FedAvg run every row is measured against: ``num_clients`` IID clients,
        all in every round, for ``rounds`` rounds."""
        return FedAvgConfig(num_clients=self.num_clients, rounds=self.rounds, seed=seed)

    def dp_config(self, noise_multiplier: float) -> DPConfig:
        """DP-FedAvg's options for the row of ``noise_multiplier``."""
        return DPConfig(noise_multiplier, self.max_norm, delta=self.delta)


FULL = CostSettings()
QUICK = CostSettings(num_clients=50, rounds=20, paillier_clients=2, repeats=15,
                     noise_multipliers=(0.5, 1.0, 2.0, 4.0, 8.0))
