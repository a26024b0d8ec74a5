"""Simulated federated training: FedAvg, FedSGD and the centralised baseline, in one process.

:func:`run_fedavg` follows FedAvg's five steps (McMahan et al. 2017), numbered as in the
course's chapter 3.3:

1. the server initialises the global model and sends it to the clients picked this round
   (a fraction ``fraction`` of them);
2. each trains a copy on its own data (``local_epochs`` passes of SGD, batches of
   ``batch_size``);
3. each sends back its weights and sample count ``n_k``;
4. the server aggregates: ``w = sum_k (n_k / n) * w_k``;
5. the new global model goes out again, and the next round starts.

Two engines run steps 2-4 and give the same global model to float rounding:

- ``"sequential"``: the reference, a plain loop: :func:`~course_lib.fl.client.train_local`
  per client, then :func:`~course_lib.fl.aggregate.fedavg`. Read this one first.
- ``"batched"`` (default): all clients train at once on stacked weights
  (:mod:`course_lib.fl._batched`), which makes 1,000 clients a matter of milliseconds.

Privacy options of :func:`run_fedavg`: ``dp=DPConfig(...)`` (DP-FedAvg: clipping, Gaussian
noise, epsilon per round), ``secure_aggregation=True`` (the server sees only the sum) and
``dropout`` (clients lost after training); :mod:`course_lib.fl._server` shows the four ways
the server aggregates.

FedSGD (:func:`run_fedsgd`) is FedAvg with one full-batch gradient step per client per round;
:func:`run_centralised` trains the same model on all the data, one epoch per "round".

Examples
--------
>>> from course_lib.fl.simulation import run_fedavg
>>> history = run_fedavg(num_clients=10, rounds=20, seed=0)
>>> history.final_accuracy > 0.9
True
>>> run_fedavg(num_clients=10, rounds=3, alpha=0.1).config["partition"]
'dirichlet'
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.fl import partition as partitions
from course_lib.fl._batched import BatchedTrainer
from course_lib.fl._history import History
from course_lib.fl._order import derive_seeds
from course_lib.fl._server import Server, check_privacy_options, epsilon_after
from course_lib.fl.aggregate import fedavg
from course_lib.fl.client import (
    DEFAULT_LR,
    NUM_THREADS,
    check_training_args,
    evaluate,
    train_local,
)
from course_lib.fl.data import Dataset, load_digits
from course_lib.fl.models import MLP, make_mlp, state_nbytes
from course_lib.fl.privacy import DPConfig
from course_lib.fl.secure_agg import plan_dropouts

__all__ = ["History", "run_fedavg", "run_fedsgd", "run_centralised", "ENGINES", "FEDSGD_LR"]

ENGINES = ("sequential", "batched")
FEDSGD_LR = 0.5  # one full-batch step per round tolerates a larger step than mini-batch SGD
MAX_CLIENTS = 10_000
MAX_ROUNDS = 10_000
T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def _default_data() -> Dataset:
    return load_digits(seed=0)  # the tensors are shared between runs: never modified


def run_fedavg(*, num_clients: int, rounds: int, local_epochs: int = 1,
               batch_size: int | None = 32, lr: float = DEFAULT_LR, fraction: float = 1.0,
               partition: str | None = None, alpha: float | None = None, seed: int = 0,
               engine: str = "batched", progress: bool = False, data: Dataset | None = None,
               model: nn.Module | None = None, shards_per_client: int = 2, min_size: int = 0,
               on_round: Callable[[History], bool | None] | None = None,
               dp: DPConfig | None = None, secure_aggregation: bool = False,
               secagg_graph: str = "complete", dropout: float | Sequence[float] = 0.0
               ) -> History:
    """Simulate FedAvg on the digits (or ``data``) and return the per-round :class:`History`.

    Parameters
    ----------
    num_clients : int
        Clients ``K`` sharing the training set, 1 to 10,000 (more clients than samples
        leaves some empty; they take part with weight 0).
    rounds : int
        Communication rounds, 1 to 10,000.
    local_epochs : int
        Local passes over each client's data per round (``E``).
    batch_size : int or None
        Local mini-batch size (``B``); ``None`` means the client's whole data set.
    lr : float
        Local SGD step size.
    fraction : float
        Fraction ``C`` of clients selected per round, in (0, 1]; ``m = max(1, round(C * K))``
        clients are drawn without replacement.
    partition : {"iid", "dirichlet", "shards"} or None
        How the training set is split; ``None`` means ``"dirichlet"`` if ``alpha`` is given,
        else ``"iid"``.
    alpha : float or None
        Dirichlet concentration (> 0); only with ``partition="dirichlet"``.
    seed : int
        Seeds the initial model, the split, the client selection, every client's shuffle,
        the dropouts and the DP noise (each its own stream; nothing is seeded globally).
    engine : {"batched", "sequential"}
        ``"batched"`` needs an :class:`~course_lib.fl.models.MLP` model.
    progress : bool
        Show a progress bar (``tqdm.auto``: a widget in Jupyter, text in a terminal).
    data : Dataset or None
        Defaults to ``load_digits(seed=0)``.
    model : nn.Module or None
        The initial global model (copied, not modified); defaults to ``make_mlp(seed=seed)``.
    shards_per_client, min_size : int
        Options of :func:`~course_lib.fl.partition.shards` and
        :func:`~course_lib.fl.partition.dirichlet`.
    on_round : callable or None
        Called with the history after every round (for live plots); if it returns ``True``
        the run stops early (e.g. once a target accuracy is reached), and the history then
        holds fewer than ``rounds`` rounds.
    dp : DPConfig or None
        Client-level DP-FedAvg (:mod:`course_lib.fl.privacy`): every update ``w_k - w`` is
        clipped to L2 norm ``S = dp.max_norm``, the updates are averaged with equal weights
        over the fixed ``m``, and the server adds Gaussian noise of std ``z S / m``
        (``z = dp.noise_multiplier``; 0 clips only) drawn from a generator seeded by ``seed``.
        ``history.epsilon`` holds the epsilon spent after each round for ``dp.delta``
        (Opacus's RDP accountant, sampling rate ``q = m / K``: ``config["sample_rate"]``).
    secure_aggregation : bool
        The server learns only the sum of a round's updates (Bonawitz et al. 2017,
        :mod:`course_lib.fl.secure_agg`); the model is the same as without, to fixed-point
        precision. Needs ``m >= 2``. Per-round reports in ``history.secagg``. With ``dp``,
        clients clip, the protocol sums, the server adds the noise (:mod:`course_lib.fl._server`
        explains what this "central" noise trusts the server with).
    secagg_graph : {"complete", "sparse"}
        Masking pairs: all (Bonawitz et al.), or ``O(log m)`` neighbours each (SecAgg+).
    dropout : float or sequence of float
        Fraction in ``[0, 1)`` of each round's clients that train but never send (or one
        fraction per round). ``round(dropout * m)`` clients drop, drawn from ``seed`` and the
        round, the same with or without secure aggregation; ids in ``history.dropped``.
        Secure aggregation survives up to just under half (complete graph, threshold
        ``m // 2 + 1``) or about a third (sparse graph); beyond that it raises
        :class:`~course_lib.fl.secure_agg.TooManyDropoutsError` naming the round, never a
        wrong sum.

    Raises
    ------
    ValueError, TypeError
        A bad argument, naming the parameter and the value.
    TooManyDropoutsError
        Secure aggregation lost too many clients in a round (a ``CourseLibError``).

    Examples
    --------
    >>> from course_lib.fl.privacy import DPConfig
    >>> h = run_fedavg(num_clients=20, rounds=5, fraction=0.5,
    ...                dp=DPConfig(noise_multiplier=1.0, max_norm=0.1, delta=1e-5))
    >>> round(h.epsilon[-1], 2)
    8.23
    >>> h = run_fedavg(num_clients=5, rounds=2, secure_aggregation=True, dropout=0.2)
    >>> [len(d) for d in h.dropped], h.secagg[0].survivors
    ([1, 1], (0, 1, 2, 3))
    """
    return _run_federated(
        "fedavg", num_clients=num_clients, rounds=rounds, local_epochs=local_epochs,
        batch_size=batch_size, lr=lr, fraction=fraction, partition=partition, alpha=alpha,
        seed=seed, engine=engine, progress=progress, data=data, model=model,
        shards_per_client=shards_per_client, min_size=min_size, on_round=on_round, dp=dp,
        secure_aggregation=secure_aggregation, secagg_graph=secagg_graph, dropout=dropout)


def run_fedsgd(*, num_clients: int, rounds: int, lr: float = FEDSGD_LR, fraction: float = 1.0,
               partition: str | None = None, alpha: float | None = None, seed: int = 0,
               engine: str = "batched", progress: bool = False, data: Dataset | None = None,
               model: nn.Module | None = None, shards_per_client: int = 2, min_size: int = 0,
               on_round: Callable[[History], bool | None] | None = None) -> History:
    """FedSGD: every selected client takes one gradient step on all its data per round.

    This is :func:`run_fedavg` with ``local_epochs=1, batch_size=None``; averaging the
    clients' weights after one step equals one step along their ``n_k``-weighted mean
    gradient, i.e. large-batch SGD on the union of the selected clients' data.
    """
    return _run_federated(
        "fedsgd", num_clients=num_clients, rounds=rounds, local_epochs=1, batch_size=None,
        lr=lr, fraction=fraction, partition=partition, alpha=alpha, seed=seed, engine=engine,
        progress=progress, data=data, model=model, shards_per_client=shards_per_client,
        min_size=min_size, on_round=on_round)


def run_centralised(*, epochs: int, batch_size: int | None = 32, lr: float = DEFAULT_LR,
                    seed: int = 0, progress: bool = False, data: Dataset | None = None,
                    model: nn.Module | None = None,
                    on_round: Callable[[History], bool | None] | None = None) -> History:
    """The baseline without federation: all data in one place, one "round" per epoch."""
    check_training_args(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    require_int("epochs", epochs, minimum=1, maximum=MAX_ROUNDS)
    start = time.perf_counter()
    data = _default_data() if data is None else data
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes, seed=seed) \
        if model is None else copy.deepcopy(model)
    counts = partitions.label_counts(data.y_train, [np.arange(len(data.y_train))],
                                     num_classes=data.num_classes)
    history = History("centralised", dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
                      counts, model, *evaluate(model, data.X_test, data.y_test))
    raw_bytes = state_nbytes({"X": data.X_train, "y": data.y_train})
    epoch_seeds = derive_seeds(seed, 0, np.arange(epochs))
    bar = tqdm(range(epochs), disable=not progress, desc="centralised", unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        state, _ = train_local(model, data.X_train, data.y_train, epochs=1,
                               batch_size=batch_size, lr=lr, seed=int(epoch_seeds[epoch]))
        model.load_state_dict(state)
        if _record(history, t0, model, data, np.array([], dtype=np.int64),
                   raw_bytes if epoch == 0 else 0, on_round):
            break
    bar.close()  # a loop left early does not close its bar
    history.wall_seconds = time.perf_counter() - start
    return history


def check_run_args(*, num_clients: int, rounds: int, local_epochs: int,
                   batch_size: int | None, lr: float, seed: int, fraction: float) -> None:
    """Validate the arguments a federated run shares with a Flower deployment of it."""
    require_int("num_clients", num_clients, minimum=1, maximum=MAX_CLIENTS)
    require_int("rounds", rounds, minimum=1, maximum=MAX_ROUNDS)
    check_training_args(epochs=local_epochs, batch_size=batch_size, lr=lr, seed=seed)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be a number in (0, 1], got {fraction!r}")


def _run_federated(algorithm: str, *, num_clients: int, rounds: int, local_epochs: int,
                   batch_size: int | None, lr: float, fraction: float, partition: str | None,
                   alpha: float | None, seed: int, engine: str, progress: bool,
                   data: Dataset | None, model: nn.Module | None, shards_per_client: int,
                   min_size: int, on_round: Callable[[History], bool | None] | None,
                   dp: DPConfig | None = None, secure_aggregation: bool = False,
                   secagg_graph: str = "complete", dropout: float | Sequence[float] = 0.0
                   ) -> History:
    start = time.perf_counter()
    check_run_args(num_clients=num_clients, rounds=rounds, local_epochs=local_epochs,
                   batch_size=batch_size, lr=lr, seed=seed, fraction=fraction)
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}, got {engine!r}")
    per_round = max(1, round(fraction * num_clients))
    drop_rates = check_privacy_options(dp, secure_aggregation, secagg_graph, dropout,
                                       rounds=rounds, per_round=per_round)
    partition = _resolve_partition(partition, alpha)
    data = _default_data() if data is None else data
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes, seed=seed) \
        if model is None else copy.deepcopy(model)
    if engine == "batched" and not isinstance(model, MLP):
        raise ValueError(f"`engine`='batched' trains course_lib MLP models only, got a "
                         f"{type(model).__name__}; use engine='sequential'")
    parts = _split(partition, data.y_train, num_clients=num_clients, alpha=alpha, seed=seed,
                   shards_per_client=shards_per_client, min_size=min_size)
    sizes = np.array([len(p) for p in parts])  # (num_clients,)
    config = dict(num_clients=num_clients, rounds=rounds, local_epochs=local_epochs,
                  batch_size=batch_size, lr=lr, fraction=fraction, partition=partition,
                  alpha=alpha, seed=seed, engine=engine, dp=dp,
                  secure_aggregation=secure_aggregation, secagg_graph=secagg_graph,
                  dropout=dropout if isinstance(dropout, (int, float)) else drop_rates,
                  sample_rate=per_round / num_clients)
    history = History(algorithm, config,
                      partitions.label_counts(data.y_train, parts, num_classes=data.num_classes),
                      model, *evaluate(model, data.X_test, data.y_test))
    select_rng = np.random.default_rng([seed, 1])  # its own stream, independent of the split
    model_bytes = state_nbytes(model)
    server = Server(expected_clients=per_round, dp=dp, secure_aggregation=secure_aggregation,
                    graph=secagg_graph, seed=seed)
    batched = BatchedTrainer() if engine == "batched" else None
    if dp is not None:  # load Opacus and the one-round RDP now, not on round 1's clock
        epsilon_after(dp, sample_rate=per_round / num_clients, steps=1)
    bar = tqdm(range(1, rounds + 1), disable=not progress, desc=algorithm, unit="round")
    with torch_threads(NUM_THREADS):  # for the whole run: see course_lib.fl.client
        for r in bar:
            t0 = time.perf_counter()
            chosen = np.arange(num_clients) if per_round == num_clients else \
                np.sort(select_rng.choice(num_clients, size=per_round, replace=False))
            round_seed = int(derive_seeds(seed, r, np.array([-1]))[0])  # not a client's seed
            plan = plan_dropouts(len(chosen), drop_rates[r - 1], seed=round_seed)
            arrived = chosen[list(plan.in_sum(len(chosen)))]
            report, server.seconds = None, 0.0
            # Nobody with data arrives: the model stays (but DP adds its noise regardless).
            if dp is not None or sizes[arrived].sum() > 0:
                where = dict(dropouts=plan, round_number=r, round_seed=round_seed)
                clients = (model, data.X_train, data.y_train, [parts[k] for k in chosen],
                           derive_seeds(seed, r, chosen))
                training = dict(epochs=local_epochs, batch_size=batch_size, lr=lr)
                if batched is None:  # the server's step runs once the clients have trained
                    step = functools.partial(server.aggregate, model.state_dict(), **where)
                    state, report = _round_sequential(*clients, **training, aggregate=step)
                else:
                    state, report = server.aggregate_stacked(
                        model.state_dict(), *batched(*clients, **training), **where)
                if state is not None:
                    model.load_state_dict(state)
            # Bytes: everyone chosen downloads the model; those who arrive upload theirs, or
            # with secure aggregation, what the protocol made them send (masked input included).
            up = int(report.bytes_sent.sum()) if report is not None else model_bytes * len(arrived)
            history.dropped.append(np.setdiff1d(chosen, arrived))
            if secure_aggregation:
                history.secagg.append(report)
                history.secagg_seconds.append(server.seconds)
            if dp is not None:
                history.epsilon.append(epsilon_after(dp, sample_rate=per_round / num_clients,
                                                     steps=r))
            stop = _record(history, t0, model, data, chosen, model_bytes * len(chosen) + up,
                           on_round)
            bar.set_postfix(accuracy=f"{history.test_accuracy[-1]:.3f}", refresh=False)
            if stop:
                break
    bar.close()
    history.wall_seconds = time.perf_counter() - start
    return history


def _round_sequential(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                      client_parts: list[np.ndarray], seeds: np.ndarray, *, epochs: int,
                      batch_size: int | None, lr: float,
                      aggregate: Callable[[list[dict], list[int]], T] = fedavg) -> T:
    """The reference engine: train each client in turn from the global model, then average.

    ``aggregate(states, sizes)`` is FedAvg's weighted mean; with DP, secure aggregation or
    dropouts the run passes the server's step of :mod:`course_lib.fl._server` instead.
    """
    states, sizes = [], []
    for indices, client_seed in zip(client_parts, seeds):
        ix = torch.from_numpy(indices)
        state, n = train_local(model, X[ix], y[ix], epochs=epochs, batch_size=batch_size,
                               lr=lr, seed=int(client_seed))
        states.append(state)
        sizes.append(n)
    return aggregate(states, sizes)


def _resolve_partition(partition: str | None, alpha: float | None) -> str:
    if partition is None:
        partition = "iid" if alpha is None else "dirichlet"
    if partition not in partitions.PARTITIONS:
        raise ValueError(f"`partition` must be one of {partitions.PARTITIONS}, got {partition!r}")
    if partition == "dirichlet":
        if alpha is None:
            raise ValueError("`alpha` is required when partition='dirichlet', got None")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
                or not 0 < alpha < math.inf:
            raise ValueError(f"`alpha` must be a positive finite number, got {alpha!r}")
    elif alpha is not None:
        raise ValueError(f"`alpha` is only used with partition='dirichlet', got alpha={alpha!r} "
                         f"with partition={partition!r}")
    return partition


def _split(partition: str, labels: torch.Tensor, *, num_clients: int, alpha: float | None,
           seed: int, shards_per_client: int, min_size: int) -> list[np.ndarray]:
    if partition == "iid":
        return partitions.iid(labels, num_clients=num_clients, seed=seed)
    if partition == "dirichlet":
        return partitions.dirichlet(labels, num_clients=num_clients, alpha=alpha,
                                    min_size=min_size, seed=seed)
    return partitions.shards(labels, num_clients=num_clients,
                             shards_per_client=shards_per_client, seed=seed)


def _record(history: History, t0: float, model: nn.Module, data: Dataset, chosen: np.ndarray,
            nbytes: int, on_round: Callable[[History], bool | None] | None) -> bool:
    history.round_seconds.append(time.perf_counter() - t0)
    accuracy, loss = evaluate(model, data.X_test, data.y_test)
    history.test_accuracy.append(accuracy)
    history.test_loss.append(loss)
    history.participants.append(chosen)
    history.bytes_transferred.append(nbytes)
    return on_round is not None and on_round(history) is True
