"""Every seed a run derives from its one ``seed``; the order in which a client visits its data.

- :func:`derive_seeds` is *the* per-client, per-round derivation: client ``k``'s training seed
  in round ``r`` is ``derive_seeds(seed, r, [k])``, for the simulation (both engines), the
  Flower deployment, the cost table and federated fine-tuning alike. The round's own seed (its
  dropout draw, secure aggregation's public choices) is ``derive_seeds(seed, r, [-1])``, and
  the centralised baseline's epoch ``e`` uses ``derive_seeds(seed, 0, [e])``.
- :func:`noise_seed` seeds a run's DP noise generator, a stream of its own.
- :func:`sample_orders` is the shuffle of local training, a pure function of ``(seed, epoch, i)``.

The shuffle. Local training shuffles each epoch. To let the batched engine reproduce, for
1,000 clients at once, exactly the order each client would draw on its own, the shuffle is not
taken from a stateful generator: every sample ``i`` gets a 64-bit pseudo-random key
``mix(mix(seed) + epoch * G + i * G2)`` and the client visits its samples in key order.
``mix`` is SplitMix64's finaliser, a well-tested integer hash. One vectorised call orders all
clients (0.2 ms for 1,000 clients), where 1,000 seeded ``torch.Generator`` objects take 7 ms.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_orders", "derive_seeds", "noise_seed"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, SplitMix64's increment
_G2 = np.uint64(0xD1B54A32D192ED03)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (multiplication wraps modulo 2**64, as intended)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def sample_orders(seeds: np.ndarray, sizes: np.ndarray, epoch: int) -> np.ndarray:
    """Return each client's visiting order for one epoch, padded with -1.

    Parameters
    ----------
    seeds : array of int, shape (clients,)
        Each client's seed (non-negative, below 2**63).
    sizes : array of int, shape (clients,)
        Each client's number of samples.
    epoch : int
        Local epoch number (0, 1, ...).

    Returns
    -------
    np.ndarray of int64, shape (clients, max(sizes))
        Row ``k`` starts with a permutation of ``range(sizes[k])``, then ``-1`` padding.
    """
    seeds = np.asarray(seeds, dtype=np.int64).astype(np.uint64)  # (clients,)
    sizes = np.asarray(sizes, dtype=np.int64)  # (clients,)
    width = int(sizes.max(initial=0))
    with np.errstate(over="ignore"):
        base = _mix(seeds) + np.uint64(epoch) * _G  # (clients,)
        i = np.arange(width, dtype=np.uint64)  # (width,)
        keys = _mix(base[:, None] + (i[None, :] + np.uint64(1)) * _G2)  # (clients, width)
    pad = np.arange(width)[None, :] >= sizes[:, None]  # (clients, width): beyond the data
    keys[pad] = np.iinfo(np.uint64).max  # padding sorts last
    order = np.argsort(keys, axis=1, kind="stable").astype(np.int64)  # (clients, width)
    order[pad] = -1  # after the sort, exactly the last width - size slots of a row are padding
    return order


def derive_seeds(seed: int, round_number: int, clients: np.ndarray) -> np.ndarray:
    """Independent-looking int64 seeds (in ``[0, 2**63)``) for ``clients`` in one round.

    ``mix(mix(mix(seed) + r * G) + (k + 1) * G2) >> 1`` for client ``k`` in round ``r``: a pure
    function, so a client (a Flower SuperNode, say) computes its own seed from the run's seed,
    the round and its id, and every engine draws the same shuffles.

    Examples
    --------
    >>> seeds = derive_seeds(0, 1, [0, 1, 2])  # round 1, clients 0, 1 and 2
    >>> seeds.tolist() == [int(derive_seeds(0, 1, [k])[0]) for k in range(3)]
    True
    """
    clients = np.asarray(clients, dtype=np.int64).astype(np.uint64)  # (clients,)
    with np.errstate(over="ignore"):
        base = _mix(_mix(np.array([seed], dtype=np.uint64)) + np.uint64(round_number) * _G)
        mixed = _mix(base + (clients + np.uint64(1)) * _G2)  # (clients,)
    return (mixed >> np.uint64(1)).astype(np.int64)


def noise_seed(seed: int) -> int:
    """The seed of a run's DP noise generator: derived from ``seed``, a stream of its own (the
    model's initial weights are drawn with ``seed`` itself)."""
    return int(np.random.SeedSequence([seed, 0xD9]).generate_state(1, dtype=np.uint64)[0] >> 1)
