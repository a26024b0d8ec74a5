"""One federated round, written once: select -> train locally -> protect -> aggregate -> apply.

Every caller runs its rounds through a :class:`Server` (one per run, built from a
:class:`~course_lib.fl.config.FedAvgConfig`): both simulation engines, the chapter-5 cost table,
federated fine-tuning of a language model, and the Flower deployment, which takes its plans.

1. :meth:`Server.plan` picks the round's clients, their training seeds and who drops out
   (a :class:`RoundPlan`);
2. a *trainer* (any function ``plan -> Updates``) trains the chosen clients from the global
   model ``w`` and returns their updates ``d_k = w_k - w``, stacked into one tensor per name
   (:class:`Updates`). :func:`train_sequential` is the reference, one client after the other;
   :class:`~course_lib.fl.batched.BatchedTrainer` is the fast path for the MLP; fine-tuning
   trains LoRA adapters;
3. :meth:`Server.aggregate` protects and averages the updates that arrive (``A``):

=============  ====================================  =======================================
\\              the server sees every update          secure aggregation: it sees the sum only
=============  ====================================  =======================================
FedAvg         ``sum_A n_k d_k / sum_A n_k``         the same mean, by ``secure_fedavg``
               (:func:`~.aggregate.fedavg_stacked`)
DP-FedAvg      ``sum_A clip(d_k) / m + noise``       clients clip, ``secure_sum`` adds,
                                                     the server divides by ``m``, adds noise
=============  ====================================  =======================================

4. :func:`apply` moves the global model: ``w + mean``. :meth:`Server.run_round` is the four steps.

``clip`` scales ``d_k`` to L2 norm at most ``S``; ``m`` is the *expected* number of clients per
round (a fixed denominator: dropouts shrink the signal, never the noise), and the noise is
``N(0, (z * S / m)**2)`` per entry, drawn from one ``torch.Generator`` per run (see
:mod:`course_lib.dp`). A round in which no sample arrives leaves the model as it is (with DP,
the noise still moves it).

Where the noise is added when DP and secure aggregation are combined. Here the server adds it
after unmasking the sum ("central" noise). The released models are then ``(epsilon, delta)``-DP
exactly as the accountant computes, and no single update reaches the server; but the server
does see the noise-free *sum* of a round and is trusted to add the noise. Deployments that do
not trust the server let every client add part of the noise before masking ("distributed DP",
Kairouz et al. 2021): that needs integer noise (discrete Gaussian or Skellam), since masking
works on integers modulo ``2**64``, extra noise so that dropouts do not leave the sum
under-noised, and its own accounting. The course keeps the central version and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from course_lib.dp import add_gaussian_noise, clip_stacked
from course_lib.dp.accounting import epsilon_after
from course_lib.fl.aggregate import fedavg_stacked
from course_lib.fl.client import _train
from course_lib.fl.config import FedAvgConfig
from course_lib.fl.models import state_nbytes
from course_lib.fl.seeds import derive_seeds, noise_seed
from course_lib.secagg import (
    DEFAULT_BOUND,
    Dropouts,
    SecAggReport,
    TooManyDropoutsError,
    plan_dropouts,
    secure_fedavg,
    secure_sum,
)

__all__ = ["RoundPlan", "Updates", "RoundResult", "Server", "train_sequential", "apply",
           "noise_seed"]

State = Mapping[str, torch.Tensor]


@dataclass(frozen=True, repr=False)
class RoundPlan:
    """What the server decides before round ``number`` starts (step 1).

    ``clients`` are the chosen ids, sorted; ``seeds[i]`` is client ``clients[i]``'s training
    seed; ``dropouts`` says who of them drops (ids are positions ``i``); ``arrived`` are the
    positions whose updates reach the server; ``seed`` is the round's own seed (the dropout
    draw and secure aggregation's public choices).
    """

    number: int
    clients: np.ndarray  # (m,) int64
    seeds: np.ndarray  # (m,) int64
    dropouts: Dropouts
    arrived: np.ndarray  # (arrived,) positions into clients
    seed: int

    @property
    def dropped(self) -> np.ndarray:
        """Ids of the chosen clients whose updates do not arrive (sorted)."""
        return np.setdiff1d(self.clients, self.clients[self.arrived])

    def __repr__(self) -> str:
        return (f"RoundPlan(round {self.number}, {len(self.clients)} clients, "
                f"{len(self.clients) - len(self.arrived)} dropping)")


@dataclass(repr=False)
class Updates:
    """What local training returns (step 2): the chosen clients' updates, stacked.

    ``tensors[name]`` is ``(rows, *shape)``; row ``j`` is ``d_k = w_k - w`` of the client at
    position ``position[j]`` of the plan, trained on ``sizes[j]`` samples. Rows may come in
    any order (the batched engine sorts them by size).
    """

    tensors: dict[str, torch.Tensor]
    sizes: np.ndarray  # (rows,) n_k
    position: np.ndarray  # (rows,) index into RoundPlan.clients

    def per_client(self) -> tuple[list[dict[str, torch.Tensor]], np.ndarray]:
        """Each client's update (views, no copies) and size, in the plan's order."""
        rows = np.argsort(self.position)  # (rows,) the row holding position 0, 1, ...
        return [{k: t[j] for k, t in self.tensors.items()} for j in rows], self.sizes[rows]

    def __repr__(self) -> str:
        return f"Updates({len(self.sizes)} clients, {int(self.sizes.sum())} samples)"


@dataclass(frozen=True, repr=False)
class RoundResult:
    """A finished round: its plan, the new global state (``None``: unchanged), the secure
    aggregation report, the aggregation's wall time, the bytes that travelled (everyone chosen
    downloads the model; the arrived upload theirs, or what the protocol made them send) and,
    under DP, epsilon so far."""

    plan: RoundPlan
    state: dict[str, torch.Tensor] | None
    report: SecAggReport | None
    aggregate_seconds: float
    bytes_transferred: int
    epsilon: float | None

    def __repr__(self) -> str:
        moved = "unchanged" if self.state is None else "updated"
        return f"RoundResult(round {self.plan.number}, model {moved})"


def train_sequential(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                     indices: list[np.ndarray], seeds: np.ndarray, *, epochs: int,
                     batch_size: int | None, lr: float) -> Updates:
    """The reference trainer: each chosen client in turn trains a copy of the global model on
    ``X[indices[i]]`` (:func:`~course_lib.fl.client.train_local`) and sends ``w_k - w``."""
    start = model.state_dict()
    states, sizes = [], []
    for ix, client_seed in zip(indices, seeds):
        ix = torch.from_numpy(ix)
        state, n = _train(model, X[ix], y[ix], epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=int(client_seed))
        states.append(state)
        sizes.append(n)
    tensors = {k: torch.stack([s[k] for s in states]) - w for k, w in start.items()}
    return Updates(tensors, np.array(sizes, dtype=np.int64), np.arange(len(states)))


def apply(state: State, mean: State) -> dict[str, torch.Tensor]:
    """Step 4: the next global model ``w + mean``, name by name (new tensors)."""
    return {k: w + mean[k].to(w.dtype) for k, w in state.items()}


class Server:
    """The server's side of every round of one run: plan, protect and aggregate, apply.

    It owns the run's random streams: the client selection (``default_rng([seed, 1])``) and
    the DP noise (seeded with :func:`~course_lib.fl.seeds.noise_seed`); plans must therefore be
    made in order, one per round.
    """

    def __init__(self, config: FedAvgConfig) -> None:
        if not isinstance(config, FedAvgConfig):
            raise TypeError(f"`config` must be a FedAvgConfig, got {type(config).__name__}")
        self.config = config
        self.m = config.clients_per_round
        self.rounds_planned = 0
        self._select = np.random.default_rng([config.seed, 1])  # not the split's stream
        dp = config.dp
        self.generator = None if dp is None else \
            torch.Generator().manual_seed(noise_seed(config.seed))
        if dp is not None:  # load Opacus and the one-round RDP now, not on round 1's clock
            epsilon_after(dp, sample_rate=config.sample_rate, steps=1)

    def plan(self) -> RoundPlan:
        """Step 1 of the next round: who trains, with which seeds, and who drops out."""
        c, r = self.config, self.rounds_planned + 1
        if r > c.rounds:
            raise ValueError(f"the run has {c.rounds} rounds; round {r} cannot be planned")
        chosen = np.arange(c.num_clients) if self.m == c.num_clients else \
            np.sort(self._select.choice(c.num_clients, size=self.m, replace=False))
        round_seed = int(derive_seeds(c.seed, r, np.array([-1]))[0])  # not a client's seed
        dropouts = plan_dropouts(len(chosen), c.dropout_of(r), seed=round_seed)
        arrived = np.array(dropouts.in_sum(len(chosen)), dtype=np.int64)
        self.rounds_planned = r
        return RoundPlan(r, chosen, derive_seeds(c.seed, r, chosen), dropouts, arrived,
                         round_seed)

    def aggregate(self, updates: Updates, plan: RoundPlan
                  ) -> tuple[dict[str, torch.Tensor] | None, SecAggReport | None]:
        """Step 3: the protected mean update of those who arrived (``None``: keep the model).

        ``updates.tensors`` may be overwritten.
        """
        dp = self.config.dp
        arrived = np.isin(updates.position, plan.arrived)  # (rows,) True: the update arrives
        if dp is None and not updates.sizes[arrived].sum() > 0:
            return None, None  # no sample arrives: the weighted mean does not exist
        if self.config.secure_aggregation:
            return self._secure(updates, plan)
        if dp is None:
            return fedavg_stacked(updates.tensors, np.where(arrived, updates.sizes, 0)), None
        rows = torch.from_numpy(np.flatnonzero(arrived))
        kept = {k: u.index_select(0, rows) for k, u in updates.tensors.items()}  # (arrived, ...)
        clipped = clip_stacked(kept, dp.max_norm) if len(rows) else kept
        return self._noisy({k: c.double().sum(dim=0).div(self.m).to(c.dtype)
                            for k, c in clipped.items()}), None

    def run_round(self, global_state: State, train: Callable[[RoundPlan], Updates]
                  ) -> RoundResult:
        """One whole round: plan, ``train(plan)``, aggregate, apply."""
        plan = self.plan()
        updates = train(plan)
        start = time.perf_counter()
        mean, report = self.aggregate(updates, plan)
        seconds = time.perf_counter() - start
        model_bytes = state_nbytes(global_state)
        up = int(report.bytes_sent.sum()) if report is not None else \
            model_bytes * len(plan.arrived)
        dp = self.config.dp
        eps = None if dp is None else \
            epsilon_after(dp, sample_rate=self.config.sample_rate, steps=plan.number)
        return RoundResult(plan, None if mean is None else apply(global_state, mean), report,
                           seconds, model_bytes * len(plan.clients) + up, eps)

    def _secure(self, updates: Updates, plan: RoundPlan
                ) -> tuple[dict[str, torch.Tensor], SecAggReport]:
        """Secure aggregation of the chosen clients' updates (each clips its own under DP)."""
        dp = self.config.dp
        if dp is not None:
            updates = Updates(clip_stacked(updates.tensors, dp.max_norm), updates.sizes,
                              updates.position)
        per_client, sizes = updates.per_client()
        options = dict(dropouts=plan.dropouts, graph=self.config.secagg_graph, seed=plan.seed)
        try:
            if dp is None:
                return secure_fedavg(per_client, sizes.tolist(), **options)
            total, report = secure_sum(per_client, bound=max(DEFAULT_BOUND, dp.max_norm),
                                       **options)
        except TooManyDropoutsError as err:
            raise TooManyDropoutsError(
                f"round {plan.number}: secure aggregation cannot recover the sum ({err}); "
                f"lower `dropout` or choose more clients per round") from err
        return self._noisy({k: t.double().div(self.m).to(t.dtype)
                            for k, t in total.items()}), report

    def _noisy(self, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dp = self.config.dp
        return add_gaussian_noise(mean, noise_multiplier=dp.noise_multiplier,
                                  max_norm=dp.max_norm, num_clients=self.m,
                                  generator=self.generator)

    def __repr__(self) -> str:
        c = self.config
        protections = [name for name, on in (("dp", c.dp is not None),
                                              ("secure aggregation", c.secure_aggregation),
                                              ("dropouts", c.dropout != 0.0)) if on]
        return (f"Server({self.m} of {c.num_clients} clients per round, "
                f"{self.rounds_planned}/{c.rounds} rounds planned"
                f"{', ' + ', '.join(protections) if protections else ''})")
