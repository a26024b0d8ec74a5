"""Split a dataset among clients: IID, Dirichlet label skew, and McMahan's pathological shards.

Each function takes the training labels and returns one array of sample indices per client
(sorted, int64; a client may be empty). Every split owns its random generator, seeded by
``seed`` (``np.random.default_rng``), so it never touches global random state.

- :func:`iid`: shuffle, then deal out equal parts (sizes differ by at most one).
- :func:`dirichlet`: for every class, draw the share each client gets from
  ``Dirichlet(alpha, ..., alpha)``. Large ``alpha`` (100) is close to IID; small ``alpha``
  (0.1) gives most clients only one or two classes (Hsu et al. 2019, the split Flower's
  ``DirichletPartitioner`` implements).
- :func:`shards`: sort by label, cut into ``num_clients * shards_per_client`` equal shards and
  give each client ``shards_per_client`` of them at random (McMahan et al. 2017's
  "pathological non-IID" split: with two shards, most clients see only two digits).

Examples
--------
>>> import numpy as np
>>> from course_lib.fl.partition import iid, dirichlet, label_counts
>>> labels = np.repeat(np.arange(3), 4)  # 12 samples, 3 classes
>>> [len(p) for p in iid(labels, num_clients=5, seed=0)]
[3, 3, 2, 2, 2]
>>> parts = dirichlet(labels, num_clients=2, alpha=0.5, seed=0)
>>> label_counts(labels, parts).sum(axis=1).tolist() == [len(p) for p in parts]
True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_lib._validation import require_int

__all__ = ["iid", "dirichlet", "shards", "label_counts", "resolve_partition", "split", "PARTITIONS"]

PARTITIONS = ("iid", "dirichlet", "shards")


def _labels(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be a 1-D array of integer class labels, got shape "
                         f"{labels.shape} and dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"`labels` must be non-negative, got {labels.min()}")
    return labels


def _check(num_clients: int, seed: int) -> None:
    require_int("num_clients", num_clients, minimum=1)
    require_int("seed", seed, minimum=0)


def iid(labels: np.ndarray | torch.Tensor, *, num_clients: int,
        seed: int = 0) -> list[np.ndarray]:
    """Shuffle the samples and deal them into ``num_clients`` parts of (nearly) equal size."""
    labels = _labels(labels)
    _check(num_clients, seed)
    return _iid(labels, num_clients, seed)


def _iid(labels: np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet(labels: np.ndarray | torch.Tensor, *, num_clients: int, alpha: float,
              min_size: int = 0, seed: int = 0, max_tries: int = 100) -> list[np.ndarray]:
    """Label-skewed split: client shares of every class are drawn from ``Dirichlet(alpha)``.

    Parameters
    ----------
    labels : array of int, shape (samples,)
    num_clients : int
    alpha : float
        Concentration, > 0. Smaller means more skew (each client holds fewer classes).
    min_size : int
        Redraw the whole split until every client has at least this many samples (0 allows
        empty clients). Raises ``ValueError`` if ``max_tries`` draws all fail.
    seed : int
    max_tries : int
        How many draws to try for ``min_size``.
    """
    labels = _labels(labels)
    _check(num_clients, seed)
    _check_alpha(alpha)
    require_int("min_size", min_size, minimum=0)
    require_int("max_tries", max_tries, minimum=1)
    return _dirichlet(labels, num_clients, alpha, min_size, seed, max_tries)


def _dirichlet(labels: np.ndarray, num_clients: int, alpha: float, min_size: int, seed: int,
               max_tries: int = 100) -> list[np.ndarray]:
    if min_size * num_clients > len(labels):
        raise ValueError(f"`min_size` * `num_clients` must be <= {len(labels)} samples, "
                         f"got {min_size} * {num_clients}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))  # this class's samples
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))  # (num_clients,)
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        result = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in result) >= min_size:
            return result
    raise ValueError(f"no Dirichlet split with every client >= `min_size`={min_size} samples "
                     f"in {max_tries} tries (alpha={alpha}, num_clients={num_clients}); "
                     f"lower min_size or raise alpha")


def shards(labels: np.ndarray | torch.Tensor, *, num_clients: int, shards_per_client: int = 2,
           seed: int = 0) -> list[np.ndarray]:
    """McMahan's pathological split: sorted-by-label shards, ``shards_per_client`` each.

    The samples are sorted by label (ties in a seeded random order) and cut into
    ``num_clients * shards_per_client`` shards of equal size (the remainder, fewer samples
    than there are shards, is spread one extra sample per shard); each client gets
    ``shards_per_client`` shards chosen at random.
    """
    labels = _labels(labels)
    _check(num_clients, seed)
    require_int("shards_per_client", shards_per_client, minimum=1)
    return _shards(labels, num_clients, shards_per_client, seed)


def _shards(labels: np.ndarray, num_clients: int, shards_per_client: int,
            seed: int) -> list[np.ndarray]:
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise ValueError(f"`num_clients` * `shards_per_client` must be <= {len(labels)} "
                         f"samples, got {num_clients} * {shards_per_client}")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]  # sorted by label
    pieces = np.array_split(by_label, num_shards)
    owner = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])).astype(np.int64) for row in owner]


def label_counts(labels: np.ndarray | torch.Tensor, partition: list[np.ndarray], *,
                 num_classes: int | None = None) -> np.ndarray:
    """Return the ``(clients, classes)`` matrix of how many samples of each class each holds."""
    labels = _labels(labels)
    if num_classes is None:
        num_classes = int(labels.max(initial=-1)) + 1
    require_int("num_classes", num_classes, minimum=1)
    counts = np.zeros((len(partition), num_classes), dtype=np.int64)
    for client, indices in enumerate(partition):
        counts[client] = np.bincount(labels[np.asarray(indices, dtype=np.int64)],
                                     minlength=num_classes)[:num_classes]
    return counts


def resolve_partition(partition: str | None, alpha: float | None) -> str:
    """The partition a run uses: ``None`` means ``"dirichlet"`` when ``alpha`` is given, else
    ``"iid"``; checks that ``alpha`` goes with Dirichlet only."""
    if partition is None:
        partition = "iid" if alpha is None else "dirichlet"
    if partition not in PARTITIONS:
        raise ValueError(f"`partition` must be one of {PARTITIONS}, got {partition!r}")
    if partition == "dirichlet":
        if alpha is None:
            raise ValueError("`alpha` is required when partition='dirichlet', got None")
        _check_alpha(alpha)
    elif alpha is not None:
        raise ValueError(f"`alpha` is only used with partition='dirichlet', got alpha={alpha!r} "
                         f"with partition={partition!r}")
    return partition


def split(partition: str | None, labels: torch.Tensor, *, num_clients: int,
          alpha: float | None = None, seed: int = 0, shards_per_client: int = 2,
          min_size: int = 0) -> list[np.ndarray]:
    """Split ``labels`` into ``num_clients`` index arrays by the partition named ``partition``
    (``None``: as :func:`resolve_partition` decides). Each option is checked once, here."""
    partition = resolve_partition(partition, alpha)
    _check(num_clients, seed)
    require_int("shards_per_client", shards_per_client, minimum=1)
    require_int("min_size", min_size, minimum=0)
    return _split(partition, labels, num_clients, alpha, seed, shards_per_client,
                  min_size)


def _split(partition: str, labels: np.ndarray | torch.Tensor, num_clients: int,
           alpha: float | None, seed: int, shards_per_client: int,
           min_size: int) -> list[np.ndarray]:
    """The dispatch, for options already checked (a FedAvgConfig's)."""
    labels = _labels(labels)
    if partition == "iid":
        return _iid(labels, num_clients, seed)
    if partition == "dirichlet":
        return _dirichlet(labels, num_clients, alpha, min_size, seed)
    return _shards(labels, num_clients, shards_per_client, seed)


def _check_alpha(alpha: object) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
            or not 0 < alpha < math.inf:
        raise ValueError(f"`alpha` must be a positive finite number, got {alpha!r}")
