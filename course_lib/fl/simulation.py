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

Every round is :mod:`course_lib.fl.round`'s, the one implementation (the cost table,
federated fine-tuning and the Flower deployment use it too): the server plans the round
(selection, seeds, dropouts), a trainer runs step 2 and returns the updates ``w_k - w``, the
server protects and averages them and moves the model. The data flows one way: dataset ->
partition -> client training -> (protections) -> aggregate -> :class:`History`. Two trainers
(the ``engine``) give the same global model to float rounding:

- ``"sequential"``: the reference, :func:`~course_lib.fl.round.train_sequential`, a plain
  loop of :func:`~course_lib.fl.client.train_local` per client. Read this one first.
- ``"batched"`` (default): all clients train at once on stacked weights
  (:mod:`course_lib.fl.batched`), which makes 1,000 clients a matter of milliseconds. It
  replaces step 2 only; the rest of the round is the same code.

Privacy options of :func:`run_fedavg`: ``dp=DPConfig(...)`` (DP-FedAvg: clipping, Gaussian
noise, epsilon per round), ``secure_aggregation=True`` (the server sees only the sum) and
``dropout`` (clients lost after training); :mod:`course_lib.fl.round` shows the four ways
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
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.fl import partition as partitions
from course_lib.fl.batched import BatchedTrainer
from course_lib.fl.client import (
    DEFAULT_LR,
    NUM_THREADS,
    _train,
    check_training_args,
    evaluate,
)
from course_lib.fl.config import ENGINES, MAX_ROUNDS, FedAvgConfig
from course_lib.fl.data import Dataset, load_digits
from course_lib.fl.history import History
from course_lib.fl.models import MLP, make_mlp, state_nbytes
from course_lib.fl.round import RoundPlan, Server, Updates, train_sequential
from course_lib.fl.seeds import derive_seeds

__all__ = ["History", "run_fedavg", "run_fedsgd", "run_centralised", "ENGINES", "FEDSGD_LR"]

FEDSGD_LR = 0.5  # one full-batch step per round tolerates a larger step than mini-batch SGD


@functools.lru_cache(maxsize=1)
def _default_data() -> Dataset:
    return load_digits(seed=0)  # the tensors are shared between runs: never modified


def run_fedavg(config: FedAvgConfig | None = None, /, *, data: Dataset | None = None,
               model: nn.Module | None = None, progress: bool = False,
               on_round: Callable[[History], bool | None] | None = None,
               **options: Any) -> History:
    """Simulate FedAvg on the digits (or ``data``) and return the per-round :class:`History`.

    Parameters
    ----------
    config : FedAvgConfig or None
        The run's options (:class:`~course_lib.fl.config.FedAvgConfig`: clients, rounds,
        local training, split, seed, engine and the protections ``dp``,
        ``secure_aggregation``, ``secagg_graph``, ``dropout``). Keyword ``options`` build one,
        or change the given one: ``run_fedavg(num_clients=10, rounds=20)`` and
        ``run_fedavg(config, rounds=5)`` both work.
    data : Dataset or None
        Defaults to ``load_digits(seed=0)``.
    model : nn.Module or None
        The initial global model (copied, not modified); defaults to ``make_mlp(seed=seed)``.
    progress : bool
        Show a progress bar (``tqdm.auto``: a widget in Jupyter, text in a terminal).
    on_round : callable or None
        Called with the history after every round (for live plots); if it returns ``True``
        the run stops early (e.g. once a target accuracy is reached), and the history then
        holds fewer than ``rounds`` rounds.

    With ``dp``, every update ``w_k - w`` is clipped to L2 norm ``S = dp.max_norm``, the
    updates are averaged with equal weights over the fixed ``m``, and the server adds Gaussian
    noise of std ``z S / m``; ``history.epsilon`` holds the epsilon spent after each round
    (Opacus's RDP accountant, sampling rate ``q = m / K``: ``config["sample_rate"]``). With
    ``secure_aggregation`` the server learns only the sum (:mod:`course_lib.secagg`), the
    model is the same to fixed-point precision, and per-round reports are in
    ``history.secagg``. ``dropout`` clients train but never send; secure aggregation survives
    up to just under half (complete graph) or about a third (sparse graph) of them, beyond
    that it raises :class:`~course_lib.errors.TooManyDropoutsError`, never a wrong sum.

    Raises
    ------
    ValueError, TypeError
        A bad argument, naming the parameter and the value.
    TooManyDropoutsError
        Secure aggregation lost too many clients in a round (a ``CourseLibError``).

    Examples
    --------
    >>> from course_lib.dp import DPConfig
    >>> h = run_fedavg(num_clients=20, rounds=5, fraction=0.5,
    ...                dp=DPConfig(noise_multiplier=1.0, max_norm=0.1, delta=1e-5))
    >>> round(h.epsilon[-1], 2)
    8.23
    >>> h = run_fedavg(num_clients=5, rounds=2, secure_aggregation=True, dropout=0.2)
    >>> [len(d) for d in h.dropped], h.secagg[0].survivors
    ([1, 1], (0, 1, 2, 3))
    """
    if config is None:
        config = FedAvgConfig(**options)
    elif not isinstance(config, FedAvgConfig):
        raise TypeError(f"`config` must be a FedAvgConfig or None, got {type(config).__name__}")
    elif options:
        config = config.replace(**options)
    return _run_federated("fedavg", config, data=data, model=model, progress=progress,
                          on_round=on_round)


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
    config = FedAvgConfig(num_clients=num_clients, rounds=rounds, local_epochs=1, batch_size=None,
                          lr=lr, fraction=fraction, partition=partition, alpha=alpha, seed=seed,
                          engine=engine, shards_per_client=shards_per_client, min_size=min_size)
    return _run_federated("fedsgd", config, data=data, model=model, progress=progress,
                          on_round=on_round)


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
        state, _ = _train(model, data.X_train, data.y_train, epochs=1, batch_size=batch_size,
                          lr=lr, seed=int(epoch_seeds[epoch]))  # options checked above
        model.load_state_dict(state)
        if _record(history, t0, model, data, np.array([], dtype=np.int64),
                   raw_bytes if epoch == 0 else 0, on_round):
            break
    bar.close()  # a loop left early does not close its bar
    history.wall_seconds = time.perf_counter() - start
    return history


def _run_federated(algorithm: str, config: FedAvgConfig, *, data: Dataset | None,
                   model: nn.Module | None, progress: bool,
                   on_round: Callable[[History], bool | None] | None) -> History:
    """dataset -> partition -> (per round: the server's round with a trainer) -> history."""
    start = time.perf_counter()
    data = _default_data() if data is None else data
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes,
                     seed=config.seed) if model is None else copy.deepcopy(model)
    if config.engine == "batched" and not isinstance(model, MLP):
        raise ValueError(f"`engine`='batched' trains course_lib MLP models only, got a "
                         f"{type(model).__name__}; use engine='sequential'")
    parts = config.split(data.y_train)
    record = config.as_dict() | dict(dropout=[config.dropout_of(r) for r in range(
        1, config.rounds + 1)] if isinstance(config.dropout, tuple) else config.dropout,
                                     sample_rate=config.sample_rate)
    history = History(algorithm, record,
                      partitions.label_counts(data.y_train, parts, num_classes=data.num_classes),
                      model, *evaluate(model, data.X_test, data.y_test))
    server = Server(config)
    engine = BatchedTrainer() if config.engine == "batched" else train_sequential

    def train(plan: RoundPlan) -> Updates:  # step 2: the chosen clients train on their data
        return engine(model, data.X_train, data.y_train, [parts[k] for k in plan.clients],
                      plan.seeds, epochs=config.local_epochs, batch_size=config.batch_size,
                      lr=config.lr)

    bar = tqdm(range(1, config.rounds + 1), disable=not progress, desc=algorithm, unit="round")
    with torch_threads(NUM_THREADS):  # for the whole run: see course_lib.fl.client
        for _ in bar:
            t0 = time.perf_counter()
            result = server.run_round(model.state_dict(), train)
            if result.state is not None:
                model.load_state_dict(result.state)
            stop = _record(history, t0, model, data, result.plan.clients,
                           result.bytes_transferred, on_round, dropped=result.plan.dropped,
                           epsilon=result.epsilon, secagg=result.report,
                           secagg_seconds=result.aggregate_seconds
                           if config.secure_aggregation else None)
            bar.set_postfix(accuracy=f"{history.test_accuracy[-1]:.3f}", refresh=False)
            if stop:
                break
    bar.close()
    history.wall_seconds = time.perf_counter() - start
    return history




def _record(history: History, t0: float, model: nn.Module, data: Dataset, chosen: np.ndarray,
            nbytes: int, on_round: Callable[[History], bool | None] | None,
            **private: Any) -> bool:
    """Evaluate the global model, add the round to ``history``; ``True``: stop the run."""
    seconds = time.perf_counter() - t0
    accuracy, loss = evaluate(model, data.X_test, data.y_test)
    history.add_round(accuracy=accuracy, loss=loss, participants=chosen,
                      bytes_transferred=nbytes, seconds=seconds, **private)
    return on_round is not None and on_round(history) is True
