"""Public set-up of a secure-aggregation round: errors, parameters, the graph, who drops out.

Everything here is *public* information that the server and every client agree on before a
round starts: the number of clients, the vector length, the fixed-point scale, the
neighbour graph (who masks with whom, who holds whose shares) and the threshold ``t``.
Nothing here is secret; the secrets live in :mod:`course_lib.secagg.parties`.

Graphs
------
``"complete"`` (Bonawitz et al. 2017): every client pairs with every other one, so a
client does ``n - 1`` key agreements and sends ``n - 1`` encrypted shares; all ``n`` clients
hold shares of every client.

``"sparse"`` (SecAgg+, Bell et al. 2020): a Harary graph (node ``i`` linked to
``i +- 1, ..., i +- k/2``) whose nodes are relabelled by a random permutation drawn from the
public ``seed``, so each client has exactly ``k`` random-looking neighbours with
``k = 2 * ceil(6 * log2(n))`` (even), capped at ``n - 1``: per-client cost grows like
``log n``. A client's shares go to the ``h = k + 1`` holders of its neighbourhood (it keeps
one). If ``k >= n - 1`` the "sparse" graph is the complete graph.

Thresholds against a cheating server
------------------------------------
Write ``h`` for the number of holders of one client's shares (``n`` on the complete graph,
``k + 1`` on the sparse one). An honest holder reveals, for each client ``u``, at most one of
``u``'s two secrets: a share of the self-mask seed ``b_u`` (if it was told that ``u`` sent
its input) or a share of the mask-key seed ``s_u`` (if told that ``u`` dropped). A server
that lies (a "split view": one group of holders told that ``u`` survived, another that it
dropped) needs ``t`` shares of each secret, from two *disjoint* groups of honest holders,
so the attack fits exactly when ``2 t <= h``. With ``c`` colluding clients among ``u``'s
holders (they reveal both shares) it fits when ``2 t - c <= h``; and ``c >= t - 1``
colluders plus ``u``'s survival would hand over ``b_u`` and leave no honest partner's mask
on ``u``'s input. Hence the protocol is safe against the server together with

    ``c`` colluding clients (in any one neighbourhood) as long as
    ``c <= min(2 t - h - 1, t - 2)``  (:attr:`SecAggParams.colluders_tolerated`).

The default is a majority of the holders, ``t = h // 2 + 1`` (the smallest safe value): the
server *alone* cannot unmask anyone (``c = 0``; ``c = 1`` when ``h`` is even). Raising ``t``
buys colluders and costs dropout tolerance: ``t = ceil(2 h / 3) + 1`` (Bonawitz et al.'s
choice for active adversaries) tolerates about ``h / 3`` colluders and about ``h / 3 - 1``
dropouts. The consistency round (signatures on the survivor set, see
:mod:`course_lib.secagg.parties`) makes each client collect ``t`` signatures of its own holders
on the set it was shown before it reveals anything: on the complete graph, under
``2 t > h + c``, no two honest clients can both collect ``t`` signatures on two different sets,
so they all act on one set; on the sparse graph the counting rule above carries the proof and
the signatures make a cheating server visible (and replayed or forged lists worthless). A threshold
with ``2 t <= h`` is refused with ``ValueError`` unless ``unsafe_allow_low_threshold=True``
(a teaching switch: the split-view attack of :mod:`course_lib.secagg.attacks` then works).

Why ``6 log2 n`` neighbours: a majority threshold leaves a margin of ``h / 2`` survivors in a
neighbourhood. Under random dropouts each neighbourhood is a random sample, so its
survivors fluctuate around ``(1 - rate) * h``. With ``k = 2 * ceil(6 * log2 n)``
(hypergeometric tail, union bound over all clients) a round fails with probability below
``1e-7`` at a 25% dropout rate for any ``n <= 10,000``; at 33% it is 0 at ``n = 100``
(``k = 80``), about 2% at ``n = 1,000`` (``k = 120``) and 4% at ``n = 10,000``. The failure
is a :class:`TooManyDropoutsError`, never a wrong sum. (Bell et al.'s semi-honest choice,
``t ~ k / 3``, tolerates more dropouts but lets the server alone unmask a client by a split
view: that is the ``unsafe_`` regime.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from course_lib._validation import require_int
from course_lib.crypto.fixed_point import check_frac_bits
from course_lib.errors import SecureAggregationError, TooManyDropoutsError

__all__ = ["SecureAggregationError", "TooManyDropoutsError", "GRAPHS", "STAGES",
           "DEFAULT_FRAC_BITS", "DEFAULT_BOUND", "RING_BITS", "SecAggParams", "Dropouts",
           "make_params", "sparse_degree", "safe_threshold", "plan_dropouts", "resolve_dropouts"]

GRAPHS = ("complete", "sparse")
STAGES = ("share_keys", "masked_input", "unmasking")  # a dropout vanishes *before* this round
RING_BITS = 64  # values live in Z_(2^64): numpy uint64 arithmetic wraps there natively
DEFAULT_FRAC_BITS = 32  # scale 2**32: resolution 2**-32 ~ 2.3e-10 per value
DEFAULT_BOUND = 1024.0  # |value| <= 1024: 1024 * 2**32 = 2**42, so 2**21 clients cannot wrap
MAX_CLIENTS = 100_000


@dataclass(frozen=True, repr=False)
class SecAggParams:
    """The public parameters of one round (build them with :func:`make_params`)."""

    num_clients: int
    dim: int
    graph: str
    neighbours: tuple[tuple[int, ...], ...]  # neighbours[u]: sorted ids, u excluded
    threshold: int
    frac_bits: int
    bound: float

    @property
    def holders_per_client(self) -> int:
        """``h``: how many clients hold shares of each client (its neighbours and itself)."""
        return len(self.neighbours[0]) + 1

    @property
    def colluders_tolerated(self) -> int:
        """How many colluding clients (in one neighbourhood) the server may have on its side
        and still learn no individual input: ``min(2 t - h - 1, t - 2)``, or ``-1`` when even
        the server alone can unmask a client by a split view (``2 t <= h``: an unsafe
        threshold)."""
        h, t = self.holders_per_client, self.threshold
        return -1 if 2 * t <= h else min(2 * t - h - 1, t - 2)

    @property
    def degree(self) -> int:
        """Neighbours per client (every client has the same number)."""
        return len(self.neighbours[0])

    def holders(self, client: int) -> tuple[int, ...]:
        """Who holds shares of ``client``'s secrets: its neighbours and itself, sorted."""
        return tuple(sorted((*self.neighbours[client], client)))

    def __repr__(self) -> str:
        return (f"SecAggParams(num_clients={self.num_clients}, dim={self.dim}, "
                f"graph={self.graph!r}, degree={self.degree}, threshold={self.threshold}, "
                f"frac_bits={self.frac_bits}, bound={self.bound})")


def sparse_degree(num_clients: int) -> int:
    """Default SecAgg+ degree ``k = 2 * ceil(6 * log2(n))``, capped at ``n - 1``."""
    require_int("num_clients", num_clients, minimum=2, maximum=MAX_CLIENTS)
    return min(num_clients - 1, 2 * math.ceil(6 * math.log2(num_clients)))


def safe_threshold(holders: int) -> int:
    """The smallest threshold a server alone cannot defeat by a split view: ``h // 2 + 1``."""
    require_int("holders", holders, minimum=2)
    return holders // 2 + 1


def make_params(num_clients: int, dim: int, *, graph: str = "complete",
                degree: int | None = None, threshold: int | None = None,
                frac_bits: int = DEFAULT_FRAC_BITS, bound: float = DEFAULT_BOUND,
                seed: int | None = None,
                unsafe_allow_low_threshold: bool = False) -> SecAggParams:
    """Check the arguments and build the public parameters (and graph) of a round.

    ``seed`` fixes the sparse graph's relabelling (it is public, so it may be known to all);
    ``None`` draws a fresh one. ``threshold`` defaults to a majority of the ``h`` holders of
    each client's shares, ``h // 2 + 1``; a threshold with ``2 * threshold <= h`` lets a
    cheating server unmask a client without any colluder (module docstring) and is refused
    unless ``unsafe_allow_low_threshold=True``. Raises ``ValueError``/``TypeError`` naming
    the parameter.
    """
    require_int("num_clients", num_clients, minimum=2, maximum=MAX_CLIENTS)
    require_int("dim", dim, minimum=1)
    if graph not in GRAPHS:
        raise ValueError(f"`graph` must be one of {GRAPHS}, got {graph!r}")
    check_frac_bits(frac_bits)
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) \
            or not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"`bound` must be a finite number > 0, got {bound!r}")
    bound = float(bound)
    # n values in [-bound, bound] sum to at most n * bound: it must fit in a signed 64-bit word.
    if num_clients * math.ceil(bound * 2.0**frac_bits) >= 2**(RING_BITS - 1):
        raise ValueError(f"`bound` * 2**frac_bits * num_clients must be below 2**63 so the sum "
                         f"cannot wrap modulo 2**64, got bound={bound}, frac_bits={frac_bits}, "
                         f"num_clients={num_clients}")
    if seed is not None:
        require_int("seed", seed, minimum=0)
    if graph == "sparse":
        k = sparse_degree(num_clients) if degree is None else \
            require_int("degree", degree, minimum=2, maximum=num_clients - 1)
        if k < num_clients - 1 and k % 2:
            raise ValueError(f"`degree` must be even (a Harary graph) or num_clients - 1 = "
                             f"{num_clients - 1}, got {k}")
    elif degree is not None and degree != num_clients - 1:
        raise ValueError(f"`degree` is fixed to num_clients - 1 = {num_clients - 1} for "
                         f"graph='complete', got {degree!r}")
    else:
        k = num_clients - 1
    neighbours = _complete(num_clients) if k == num_clients - 1 else \
        _harary(num_clients, k, np.random.default_rng(None if seed is None else (seed, 0)))
    if not isinstance(unsafe_allow_low_threshold, bool):
        raise TypeError(f"`unsafe_allow_low_threshold` must be a bool, got "
                        f"{type(unsafe_allow_low_threshold).__name__}")
    t = max(2, min(safe_threshold(k + 1), k + 1)) if threshold is None else \
        require_int("threshold", threshold, minimum=2, maximum=k + 1)
    if 2 * t <= k + 1 and not unsafe_allow_low_threshold:
        raise ValueError(f"`threshold` must be > h / 2 = {(k + 1) / 2:g} (h = {k + 1} clients "
                         f"hold each client's shares) or a cheating server alone can unmask a "
                         f"client by a split view; use threshold >= {safe_threshold(k + 1)}, "
                         f"or pass unsafe_allow_low_threshold=True to study the attack; "
                         f"got {t}")
    return SecAggParams(num_clients, dim, graph, neighbours, t, frac_bits, bound)


def _complete(n: int) -> tuple[tuple[int, ...], ...]:
    everyone = tuple(range(n))
    return tuple(everyone[:u] + everyone[u + 1:] for u in range(n))


def _harary(n: int, k: int, rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    """Random relabelling of the Harary graph H(k, n): position i links to i +- 1..k/2."""
    label = rng.permutation(n)  # (n,) client sitting at position i on the ring
    offsets = np.concatenate([np.arange(1, k // 2 + 1), -np.arange(1, k // 2 + 1)])  # (k,)
    ring = label[(np.arange(n)[:, None] + offsets[None, :]) % n]  # (n, k) by position
    neighbours: list[tuple[int, ...]] = [()] * n
    for position, client in enumerate(label):
        neighbours[int(client)] = tuple(sorted(int(v) for v in ring[position]))
    return tuple(neighbours)


@dataclass(frozen=True)
class Dropouts:
    """Which clients vanish, and before which round (ids index the clients of the round).

    ``share_keys``: advertised keys, then gone (nobody masks with them). ``masked_input``:
    sent their key shares but no masked input, so the server must rebuild their pairwise
    masks from shares of their key (the case the protocol is built for). ``unmasking``: sent a
    masked input (it is in the sum), then vanished: no signature in the consistency round and
    no shares in the last round.
    """

    share_keys: tuple[int, ...] = field(default_factory=tuple)
    masked_input: tuple[int, ...] = field(default_factory=tuple)
    unmasking: tuple[int, ...] = field(default_factory=tuple)

    def all(self) -> tuple[int, ...]:
        """Every client that drops at some point, sorted."""
        return tuple(sorted((*self.share_keys, *self.masked_input, *self.unmasking)))

    def in_sum(self, num_clients: int) -> tuple[int, ...]:
        """The clients whose inputs the sum contains: all but those gone before round 2
        (a client lost only in the unmasking round has already sent its input)."""
        gone = {*self.share_keys, *self.masked_input}
        return tuple(u for u in range(num_clients) if u not in gone)


def plan_dropouts(num_clients: int, fraction: float, *, stage: str = "masked_input",
                  seed: int | None = None) -> Dropouts:
    """``round(fraction * num_clients)`` clients, drawn with ``seed``, drop before ``stage``."""
    require_int("num_clients", num_clients, minimum=1, maximum=MAX_CLIENTS)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 <= fraction < 1:
        raise ValueError(f"`fraction` (of clients dropping out) must be a number in [0, 1), "
                         f"got {fraction!r}")
    if stage not in STAGES:
        raise ValueError(f"`stage` must be one of {STAGES}, got {stage!r}")
    if seed is not None:
        require_int("seed", seed, minimum=0)
    count = round(fraction * num_clients)
    rng = np.random.default_rng(None if seed is None else (seed, 1))  # not the graph's stream
    chosen = rng.choice(num_clients, size=count, replace=False)
    return Dropouts(**{stage: tuple(sorted(int(c) for c in chosen))})


def resolve_dropouts(dropouts: float | Sequence[int] | Dropouts | None, num_clients: int,
                     seed: int | None) -> Dropouts:
    """Turn the ``dropouts`` argument (see :func:`~course_lib.secagg.secure_sum`) into
    a checked :class:`Dropouts`."""
    if dropouts is None:
        return Dropouts()
    if isinstance(dropouts, (float, int)) and not isinstance(dropouts, bool):
        return plan_dropouts(num_clients, float(dropouts), seed=seed)
    if isinstance(dropouts, Dropouts):
        plan = dropouts
    elif isinstance(dropouts, (Sequence, np.ndarray)) and not isinstance(dropouts, (str, bytes)):
        plan = Dropouts(masked_input=tuple(dropouts))
    else:
        raise TypeError(f"`dropouts` must be None, a fraction, a list of client ids or a "
                        f"Dropouts, got {type(dropouts).__name__}")
    ids = plan.all()
    for c in ids:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) \
                or not 0 <= c < num_clients:
            raise ValueError(f"`dropouts` must hold client ids in [0, {num_clients - 1}], "
                             f"got {c!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"`dropouts` lists a client twice: {sorted(ids)}")
    return Dropouts(*(tuple(sorted(int(c) for c in getattr(plan, s))) for s in STAGES))
