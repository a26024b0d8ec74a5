"""The server's step of a round: FedAvg, DP-FedAvg and secure aggregation, alone or combined.

After local training the chosen clients hold weights ``w_k``; ``d_k = w_k - w`` is client
``k``'s *update* to the global model ``w``. Clients may drop out after training, before they
send (a :class:`~course_lib.secagg.Dropouts` plan per round); ``A`` are the clients whose
updates arrive. Steps 3-4 of FedAvg (chapter 3.3) then compute the next global model:

=============  ====================================  =======================================
\\              the server sees every update          secure aggregation: it sees the sum only
=============  ====================================  =======================================
FedAvg         ``w + sum_A n_k d_k / sum_A n_k``     the same mean, by ``secure_fedavg``
               (:func:`~.aggregate.fedavg`)
DP-FedAvg      ``w + sum_A clip(d_k) / m + noise``   clients clip, ``secure_sum`` adds,
               (:func:`~.privacy.private_mean`)      the server divides by ``m``, adds noise
=============  ====================================  =======================================

``clip`` scales ``d_k`` to L2 norm at most ``S``; ``m`` is the *expected* number of clients
per round (a fixed denominator: dropouts shrink the signal, never the noise), and the noise is
``N(0, (z * S / m)**2)`` per entry, drawn from one ``torch.Generator`` per run (see
:mod:`course_lib.dp`). Each combination is written twice: for a list of state_dicts
(the sequential engine, :meth:`Server.aggregate`) and for stacked tensors whose rows are the
clients (the batched engine, :meth:`Server.aggregate_stacked`); secure aggregation takes one
vector per client, so the batched engine hands it row views (no copies).

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
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from course_lib.dp import (
    DPConfig,
    add_gaussian_noise,
    apply_update,
    clip_stacked,
    clip_update,
    private_mean,
    state_delta,
)
from course_lib.fl.aggregate import fedavg
from course_lib.secagg import (
    DEFAULT_BOUND,
    Dropouts,
    SecAggReport,
    TooManyDropoutsError,
    secure_fedavg,
    secure_sum,
)

__all__ = ["Server", "noise_seed"]

State = Mapping[str, torch.Tensor]
Result = tuple[dict[str, torch.Tensor] | None, SecAggReport | None]  # None: the model stays


def noise_seed(seed: int) -> int:
    """The seed of the DP noise generator: derived from ``seed``, a stream of its own (the
    model's initial weights are drawn with ``seed`` itself)."""
    return int(np.random.SeedSequence([seed, 0xD9]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Server:
    """The aggregation step of every round of one run (it owns the run's noise generator).

    Parameters
    ----------
    expected_clients : int
        ``m``, clients chosen per round (DP's fixed denominator).
    dp : DPConfig or None
    secure_aggregation : bool
    graph : {"complete", "sparse"}
        Secure aggregation's masking graph.
    seed : int
        The run's seed; the noise generator is seeded with :func:`noise_seed` of it.
    """

    def __init__(self, *, expected_clients: int, dp: DPConfig | None,
                 secure_aggregation: bool, graph: str, seed: int) -> None:
        self.m, self.dp = expected_clients, dp
        self.secure, self.graph = secure_aggregation, graph
        self.generator = None if dp is None else torch.Generator().manual_seed(noise_seed(seed))
        self.seconds = 0.0  # wall time of the last aggregation

    def aggregate(self, global_state: State, states: Sequence[State], sizes: Sequence[int],
                  dropouts: Dropouts, *, round_number: int, round_seed: int) -> Result:
        """The reference: ``states`` are the chosen clients' weights, ``sizes`` their ``n_k``."""
        start = time.perf_counter()
        try:
            return self._aggregate(global_state, states, np.asarray(sizes, dtype=np.int64),
                                   dropouts, round_number, round_seed)
        finally:
            self.seconds = time.perf_counter() - start

    def aggregate_stacked(self, global_state: State, updates: dict[str, torch.Tensor],
                          sizes: np.ndarray, order: np.ndarray, dropouts: Dropouts, *,
                          round_number: int, round_seed: int) -> Result:
        """The fast path: ``updates[name]`` is ``(clients, *shape)``, row ``i`` the update of
        chosen client ``order[i]``, with ``sizes[i]`` samples; ``updates`` may be overwritten."""
        start = time.perf_counter()
        try:
            return self._aggregate_stacked(global_state, updates, sizes, order, dropouts,
                                           round_number, round_seed)
        finally:
            self.seconds = time.perf_counter() - start

    def _aggregate(self, global_state: State, states: Sequence[State], sizes: np.ndarray,
                   dropouts: Dropouts, round_number: int, round_seed: int) -> Result:
        n = len(states)
        arrived = list(dropouts.in_sum(n))
        if self.secure:
            updates = [state_delta(s, global_state) for s in states]
            if self.dp is not None:
                updates = [clip_update(u, self.dp.max_norm) for u in updates]  # by each client
            return self._secure(global_state, updates, sizes, dropouts, round_number, round_seed)
        if self.dp is None:
            if sizes[arrived].sum() == 0:
                return None, None
            return fedavg([states[i] for i in arrived], sizes[arrived].tolist()), None
        updates = [state_delta(states[i], global_state) for i in arrived]
        if not updates:  # nobody arrived: the noise alone
            return self._noisy(global_state, {k: torch.zeros_like(t)
                                              for k, t in global_state.items()}), None
        noisy_mean = private_mean(updates, max_norm=self.dp.max_norm,
                                  noise_multiplier=self.dp.noise_multiplier,
                                  num_clients=self.m, generator=self.generator)
        return apply_update(global_state, noisy_mean), None

    def _aggregate_stacked(self, global_state: State, updates: dict[str, torch.Tensor],
                           sizes: np.ndarray, order: np.ndarray, dropouts: Dropouts,
                           round_number: int, round_seed: int) -> Result:
        n = len(order)
        row_of = np.argsort(order)  # (clients,) row holding chosen client j
        arrived = np.sort(row_of[list(dropouts.in_sum(n))])  # (arrived,) rows
        if self.secure:
            if self.dp is not None:
                updates = clip_stacked(updates, self.dp.max_norm)  # each client clips its own row
            per_client = [{k: v[row] for k, v in updates.items()} for row in row_of]  # views
            return self._secure(global_state, per_client, sizes[row_of], dropouts,
                                round_number, round_seed)
        dtype = next(iter(updates.values())).dtype
        if self.dp is None:
            weight = np.zeros(n)
            weight[arrived] = sizes[arrived]
            if weight.sum() == 0:
                return None, None
            share = torch.from_numpy(weight / weight.sum()).to(dtype)  # (clients,) n_k / n
            # sum_k (n_k/n) w_k = w + sum_k (n_k/n)(w_k - w): summing the small updates, not
            # the weights, keeps float32 rounding ~100x smaller at 1,000 clients.
            return {k: global_state[k] + (share @ u.reshape(n, -1)).reshape(u.shape[1:])
                    for k, u in updates.items()}, None
        rows = torch.from_numpy(arrived)
        kept = {k: u.index_select(0, rows) for k, u in updates.items()}  # (arrived, *shape)
        clipped = clip_stacked(kept, self.dp.max_norm) if len(rows) else kept
        mean = {k: c.double().sum(dim=0).div(self.m).to(dtype) for k, c in clipped.items()}
        return self._noisy(global_state, mean), None

    def _secure(self, global_state: State, updates: list[State], sizes: np.ndarray,
                dropouts: Dropouts, round_number: int, round_seed: int) -> Result:
        """Secure aggregation of the chosen clients' ``updates`` (already clipped under DP)."""
        options = dict(dropouts=dropouts, graph=self.graph, seed=round_seed)
        try:
            if self.dp is None:
                if sizes[list(dropouts.in_sum(len(updates)))].sum() == 0:
                    return None, None  # no samples arrive: the weighted mean does not exist
                mean, report = secure_fedavg(updates, sizes.tolist(), **options)
                return apply_update(global_state, mean), report
            total, report = secure_sum(updates, bound=max(DEFAULT_BOUND, self.dp.max_norm),
                                       **options)
        except TooManyDropoutsError as err:
            raise TooManyDropoutsError(
                f"round {round_number}: secure aggregation cannot recover the sum ({err}); "
                f"lower `dropout` or choose more clients per round") from err
        mean = {k: t.double().div(self.m).to(t.dtype) for k, t in total.items()}
        return self._noisy(global_state, mean), report

    def _noisy(self, global_state: State, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        noisy = add_gaussian_noise(mean, noise_multiplier=self.dp.noise_multiplier,
                                   max_norm=self.dp.max_norm, num_clients=self.m,
                                   generator=self.generator)
        return apply_update(global_state, noisy)
