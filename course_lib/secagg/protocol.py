"""Secure aggregation (Bonawitz et al. 2017) and its sparse variant (SecAgg+, Bell et al. 2020).

The server of federated learning needs the *sum* of the clients' updates, not the updates
themselves (from one update an input can be reconstructed: Zhu et al. 2019). Each client
``u`` therefore sends its vector ``x_u`` (fixed point, modulo ``2**64``) under two masks::

    y_u = x_u + PRG(b_u) + sum_{v in N(u), u < v} PRG(s_uv) - sum_{v in N(u), u > v} PRG(s_uv)

``s_uv`` comes from an X25519 agreement between ``u`` and ``v`` (HKDF -> AES-256-CTR seed),
so it is the same for both and each pairwise mask is added by one client and subtracted by the
other: in the sum over all clients they cancel. The self-mask ``PRG(b_u)`` is removed by the
server. Both seeds, ``b_u`` and the seed of the masking key ``s_u``, are Shamir-shared
(threshold ``t``) among ``u``'s neighbours in advance, so when clients drop out *after*
sharing, the server asks the others for shares and

- for a client that sent ``y_u``: rebuilds ``b_u`` and subtracts ``PRG(b_u)``;
- for a client that did not: rebuilds its key ``s_u`` and removes the masks ``PRG(s_uv)``
  its surviving neighbours added for it.

Never both for the same client, or ``y_u`` would be unmasked. Against a server that
*cheats* (withholds shares, shows different clients different survivor sets, replays or
forges messages) the protocol is Bonawitz et al.'s active version on the SecAgg+ graph:
signed keys (a directory of Ed25519 verification keys given to everyone at set-up), a
round-2 abort when fewer than ``t`` holders' shares arrived, a signed list of the peers
each client masked with, and a consistency round in which each client signs the survivor
set it was shown and checks ``t`` of its holders' signatures on the same set before
revealing a share (:mod:`course_lib.secagg.parties`); the threshold must exceed half the
holders of each client's shares (:mod:`course_lib.secagg.setup` derives it and states how
many colluding clients each choice tolerates). :mod:`course_lib.secagg.attacks` plays the
cheating server. The honest-but-curious protocol remains as a teaching variant,
``unsafe_semi_honest=True`` (it warns).

The rounds run in-process between :class:`SecAggClient` and :class:`SecAggServer` objects;
:func:`simulate_round` drives them and :func:`secure_sum` / :func:`secure_fedavg` are the
one-call entry points.

Numbers. Values are encoded as ``round(x * 2**frac_bits)`` in the ring ``Z_(2^k)`` with
``k = 64`` (numpy uint64 wraps there natively); default scale ``2**32`` (resolution
``2.3e-10``). Every value must satisfy ``|x| <= bound`` (default 1024, a ``ValueError`` naming
``bound`` otherwise; clip first), and ``num_clients * bound * 2**frac_bits < 2**63`` is
checked, so the sum of the survivors cannot wrap: the result is exact up to rounding, at most
``num_clients * 2**-(frac_bits + 1)`` per entry.

Graphs and thresholds: see :mod:`course_lib.secagg.setup` (complete: ``t = n // 2 + 1``;
sparse: ``k = 2 * ceil(6 * log2 n)`` random neighbours, ``t = (k + 1) // 2 + 1``). If fewer
than ``t`` clients are left overall, or fewer than ``t`` of one client's share holders answer,
the server raises :class:`TooManyDropoutsError` (a ``CourseLibError``, not a ``ValueError``:
the arguments were valid, the network lost clients) rather than return a wrong sum.

Randomness: keys and seeds come from the OS CSPRNG, always. ``seed`` fixes only public
choices: the sparse graph and, for a fractional ``dropouts``, which clients drop.

Wiring into ``run_fedavg(..., secure_aggregation=True)`` (intended; ``states``/``sizes`` are the
chosen clients' state_dicts and sample counts, ``round_seed`` an int per round)::

    plan = plan_dropouts(len(states), dropout, seed=round_seed)     # the same in both modes
    if secure_aggregation:
        try:
            state, report = secure_fedavg(states, sizes, dropouts=plan, graph=graph,
                                          seed=round_seed)
        except TooManyDropoutsError:
            state, report = global_state, None       # the round is lost, the model stays
        history.secagg.append(report)
    else:
        kept = plan.in_sum(len(states))                # plain FedAvg over the same clients
        state = fedavg([states[i] for i in kept], [sizes[i] for i in kept])

(the batched engine holds stacked tensors: pass ``[{k: v[i] for k, v in stacked.items()}
for i in range(m)]``). Both branches then agree to float32 rounding (the tests check
``1e-7``); ``report.survivors == plan.in_sum(len(states))``.

Examples
--------
>>> import numpy as np
>>> from course_lib.secagg import secure_sum
>>> x = np.array([[0.5, -1.0], [0.25, 2.0], [1.0, 0.0], [-0.75, 0.5]])  # (clients, dim)
>>> total, report = secure_sum(x, dropouts=[3], seed=0)  # client 3 sends no masked input
>>> total.tolist(), report.survivors
([1.75, 1.0], (0, 1, 2))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from course_lib.crypto.secret_sharing import decode_ring
from course_lib.secagg.parties import SecAggClient, SecAggServer
from course_lib.secagg.primitives import make_identities, new_session_id
from course_lib.secagg.setup import (
    DEFAULT_BOUND,
    DEFAULT_FRAC_BITS,
    GRAPHS,
    RING_BITS,
    STAGES,
    Dropouts,
    SecAggParams,
    SecureAggregationError,
    TooManyDropoutsError,
    make_params,
    plan_dropouts,
    resolve_dropouts,
    safe_threshold,
    sparse_degree,
)

__all__ = ["secure_sum", "secure_fedavg", "simulate_round", "new_round", "encode", "SecAggReport",
           "SecAggParams", "make_params", "sparse_degree", "safe_threshold", "Dropouts",
           "plan_dropouts", "SecAggClient", "SecAggServer", "SecureAggregationError",
           "TooManyDropoutsError",
           "GRAPHS", "STAGES", "RING_BITS", "DEFAULT_FRAC_BITS", "DEFAULT_BOUND"]


@dataclass(repr=False)
class SecAggReport:
    """What one round cost and who took part (the server learns no more than this + the sum)."""

    params: SecAggParams
    dropouts: Dropouts
    survivors: tuple[int, ...]  # clients whose inputs are in the sum
    reconstructed: dict[int, str]  # client -> "self_mask" or "mask_key" (never both)
    client_seconds: np.ndarray  # (clients,) CPU seconds of each client, all rounds
    bytes_sent: np.ndarray  # (clients,) bytes each client sent, all rounds
    server_seconds: float  # CPU seconds of the server: routing, adding and unmasking

    @property
    def resolution(self) -> float:
        return 2.0 ** -self.params.frac_bits

    def __repr__(self) -> str:
        kinds = list(self.reconstructed.values())
        return (f"SecAggReport(graph={self.params.graph!r}, clients={self.params.num_clients}, "
                f"degree={self.params.degree}, threshold={self.params.threshold}, "
                f"survivors={len(self.survivors)}, self_masks_rebuilt="
                f"{kinds.count('self_mask')}, mask_keys_rebuilt={kinds.count('mask_key')}, "
                f"client_ms={1e3 * float(self.client_seconds.mean()):.2f} (mean), "
                f"bytes_sent={float(self.bytes_sent.mean()):,.0f} (mean), "
                f"server_s={self.server_seconds:.3f})")


def encode(values: np.ndarray, *, frac_bits: int = DEFAULT_FRAC_BITS,
           bound: float = DEFAULT_BOUND) -> np.ndarray:
    """``round(x * 2**frac_bits)`` as uint64 (two's complement), after checking ``|x| <= bound``.

    The same numbers as :func:`course_lib.crypto.secret_sharing.encode_ring`, vectorised
    for large ``(clients, dim)`` arrays.
    """
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("`updates` must be finite, got NaN or infinity")
    worst = np.abs(x).max(axis=-1) if x.size else np.zeros(x.shape[:-1])  # (clients,)
    if x.size and float(worst.max()) > bound:
        client = int(np.argmax(worst))
        raise ValueError(f"`updates` must lie in [-bound, bound] = [-{bound}, {bound}] so that "
                         f"the sum cannot wrap modulo 2**64 (clip them, or raise `bound`); "
                         f"client {client} has |value| = {float(worst[client])}")
    return np.rint(x * 2.0**frac_bits).astype(np.int64).view(np.uint64)


def new_round(params: SecAggParams, *, unsafe_semi_honest: bool = False
              ) -> tuple[list[SecAggClient], SecAggServer]:
    """Honest clients ``0 .. n-1`` and a server for one round, to drive message by message.

    Makes what a deployment sets up first: a directory of the clients' Ed25519 verification
    keys (given to every client) and a fresh session id. ``unsafe_semi_honest=True``: the
    honest-but-curious variant, without either (warns).

    >>> from course_lib.secagg import make_params, new_round
    >>> clients, server = new_round(make_params(3, 4, seed=0))
    >>> server.collect_keys({u: c.advertise_keys() for u, c in enumerate(clients)})  # round 0
    >>> len(clients[0].share_keys(server.public_keys_for(0)))  # round 1: shares for 1 and 2
    2
    """
    if not isinstance(params, SecAggParams):
        raise TypeError(f"`params` must be a SecAggParams (see make_params), got "
                        f"{type(params).__name__}")
    server = SecAggServer(params, unsafe_semi_honest=unsafe_semi_honest)  # checks the flag
    n = params.num_clients
    signing, directory = ([None] * n, None) if unsafe_semi_honest else make_identities(n)
    session = new_session_id()
    return [SecAggClient(u, params, session=session, signing_key=signing[u],
                         directory=directory, unsafe_semi_honest=unsafe_semi_honest)
            for u in range(n)], server


def simulate_round(encoded: np.ndarray, params: SecAggParams, dropouts: Dropouts, *,
                   unsafe_semi_honest: bool = False) -> tuple[np.ndarray, SecAggReport]:
    """Run the rounds in-process on ``encoded`` (uint64, (clients, dim)).

    Active model (the default): a fresh directory of Ed25519 keys (the PKI, set up before
    the round and not timed) and a fresh session id, then five rounds: advertise keys, share
    keys, masked input (with the signed peer list), consistency check, unmasking. A client
    listed in ``dropouts.unmasking`` vanishes after sending its masked input, before the
    consistency check. ``unsafe_semi_honest=True`` runs the four rounds of the
    honest-but-curious version instead (and warns).

    Returns the sum over :attr:`SecAggReport.survivors` (uint64, mod ``2**64``) and the
    report. Raises :class:`TooManyDropoutsError` when the sum cannot be recovered. Times are
    CPU seconds (``time.process_time``): the clients run one after another in this process,
    so wall time would mostly measure whatever else the machine is doing.
    """
    n = params.num_clients
    if not isinstance(encoded, np.ndarray) or encoded.dtype != np.uint64 \
            or encoded.shape != (n, params.dim):
        raise ValueError(f"`encoded` must be a uint64 array of shape ({n}, {params.dim}) "
                         f"(see encode), got {getattr(encoded, 'dtype', type(encoded))} "
                         f"{getattr(encoded, 'shape', '')}")
    dropouts = resolve_dropouts(dropouts, n, None)
    semi = unsafe_semi_honest
    seconds, server_s = np.zeros(n), 0.0

    def timed(u: int, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        out = fn(*args, **kwargs)
        seconds[u] += time.process_time() - start
        return out

    server = SecAggServer(params, unsafe_semi_honest=semi)  # checks the flag, warns if set
    signing_keys, directory = ([None] * n, None) if semi else make_identities(n)
    session = new_session_id()
    clients: list[SecAggClient] = [
        timed(u, SecAggClient, u, params, session=session, signing_key=signing_keys[u],
              directory=directory, unsafe_semi_honest=semi) for u in range(n)]
    alive = list(range(n))
    keys = {u: timed(u, clients[u].advertise_keys) for u in alive}  # round 0
    start = time.process_time()
    server.collect_keys(keys)
    broadcast = {u: server.public_keys_for(u) for u in alive}
    server_s += time.process_time() - start
    alive = [u for u in alive if u not in dropouts.share_keys]
    outgoing = {u: timed(u, clients[u].share_keys, broadcast[u]) for u in alive}  # round 1
    start = time.process_time()
    inbox = server.route_shares(outgoing)
    server_s += time.process_time() - start
    del outgoing, broadcast
    alive = [u for u in alive if u not in dropouts.masked_input]
    masked = {u: timed(u, clients[u].masked_input, encoded[u], inbox[u]) for u in alive}
    peers = None if semi else {u: timed(u, clients[u].masked_peers) for u in alive}
    del inbox
    start = time.process_time()
    survivors, dropped = server.collect_masked(masked, peers)  # round 2
    server_s += time.process_time() - start
    del masked
    alive = [u for u in alive if u not in dropouts.unmasking]
    if semi:
        responses = {u: timed(u, clients[u].unmask, survivors, dropped) for u in alive}
    else:
        signatures = {u: timed(u, clients[u].sign_survivors, survivors) for u in alive}
        start = time.process_time()  # round 3: the consistency check
        server.collect_signatures(signatures)
        requests = {u: server.unmask_request(u) for u in alive}
        server_s += time.process_time() - start
        responses = {u: timed(u, clients[u].unmask, **requests[u]) for u in alive}  # round 4
    start = time.process_time()
    total = server.unmask(responses)
    server_s += time.process_time() - start
    report = SecAggReport(params, dropouts, survivors, dict(server.reconstructed), seconds,
                          np.array([c.bytes_sent for c in clients]), server_s)
    return total, report


def secure_sum(updates: Any, *, dropouts: float | Sequence[int] | Dropouts | None = None,
               graph: str = "complete", degree: int | None = None,
               threshold: int | None = None, frac_bits: int = DEFAULT_FRAC_BITS,
               bound: float = DEFAULT_BOUND, seed: int | None = None,
               unsafe_allow_low_threshold: bool = False,
               unsafe_semi_honest: bool = False) -> tuple[Any, SecAggReport]:
    """The sum of the clients' vectors, computed by secure aggregation.

    Secure against a server that cheats (active model, see :mod:`course_lib.secagg.parties`),
    alone or with up to ``report.params.colluders_tolerated`` colluding clients per
    neighbourhood (:mod:`course_lib.secagg.setup`).

    Parameters
    ----------
    updates : array (clients, dim), torch.Tensor (clients, dim), or list of state_dicts
        One row (or one state_dict, all with the same keys and shapes) per client.
    dropouts : float, list of int, Dropouts or None
        A fraction in ``[0, 1)``: that share of the clients, chosen with ``seed``, drops
        before sending its masked input. A list of client indices: those drop then.
        A :class:`Dropouts` says who drops before which round. ``None``: nobody drops.
    graph : {"complete", "sparse"}
        Who masks with whom: everyone (Bonawitz et al.), or ``degree`` random neighbours
        (SecAgg+); see the module docstring for the default degree and threshold.
    degree, threshold : int, optional
        Override the sparse degree (even) and the Shamir threshold ``t``: it must exceed
        half the ``h`` holders of each client's shares (default ``h // 2 + 1``).
    frac_bits : int
        Fixed-point scale ``2**frac_bits`` (resolution ``2**-frac_bits``).
    bound : float
        Every value must lie in ``[-bound, bound]``.
    seed : int, optional
        Fixes the public random choices (sparse graph, fractional dropouts); never keys.
    unsafe_allow_low_threshold : bool
        Accept ``2 * threshold <= h``, with which a cheating server alone unmasks a client
        (a split view). Teaching only.
    unsafe_semi_honest : bool
        Run the honest-but-curious protocol (no signatures, no round-2 abort, no consistency
        round): a cheating server unmasks a client by withholding shares. Teaching only;
        issues an :class:`~course_lib.crypto.insecure.InsecureWarning`.

    Returns
    -------
    (sum, SecAggReport)
        The sum over the surviving clients (``report.survivors``), as a float64 ndarray, a
        tensor of the input's dtype, or a dict of tensors, matching ``updates``.
    """
    matrix, unflatten = _as_matrix(updates)  # (clients, dim) float64
    n, dim = matrix.shape
    params = make_params(n, dim, graph=graph, degree=degree, threshold=threshold,
                         frac_bits=frac_bits, bound=bound, seed=seed,
                         unsafe_allow_low_threshold=unsafe_allow_low_threshold)
    encoded = encode(matrix, frac_bits=frac_bits, bound=params.bound)  # (clients, dim) uint64
    total, report = simulate_round(encoded, params, resolve_dropouts(dropouts, n, seed),
                                   unsafe_semi_honest=unsafe_semi_honest)
    return unflatten(decode_ring(total, frac_bits=frac_bits)), report


def secure_fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float], *,
                  dropouts: float | Sequence[int] | Dropouts | None = None,
                  graph: str = "complete", degree: int | None = None,
                  threshold: int | None = None, frac_bits: int = DEFAULT_FRAC_BITS,
                  bound: float = DEFAULT_BOUND, seed: int | None = None,
                  unsafe_allow_low_threshold: bool = False, unsafe_semi_honest: bool = False
                  ) -> tuple[dict[str, torch.Tensor], SecAggReport]:
    """FedAvg's weighted mean ``sum_k n_k w_k / sum_k n_k`` over the surviving clients.

    Each client sends ``[p_k * w_k, p_k]`` with ``p_k = n_k / sum_j n_j`` (the last entry
    carries its weight, so the server learns only the survivors' total weight), and the
    server divides. The options are those of :func:`secure_sum`; ``bound`` applies to the
    entries of the state_dicts. Integer tensors are rounded as in
    :func:`course_lib.fl.aggregate.fedavg`.
    """
    if isinstance(states, Mapping) or not isinstance(states, Sequence) or not states:
        raise TypeError("`states` must be a non-empty list of state_dicts")
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) \
            or len(weights) != len(states):
        raise ValueError(f"`weights` must be a list with one number per state ({len(states)})")
    w = np.asarray(weights, dtype=np.float64)  # (clients,)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"`weights` must be finite, >= 0 and sum to > 0, got {list(weights)}")
    p = w / w.sum()
    matrix, unflatten = _as_matrix(states)  # (clients, dim)
    weighted = np.concatenate([p[:, None] * matrix, p[:, None]], axis=1)  # (clients, dim + 1)
    total, report = secure_sum(weighted, dropouts=dropouts, graph=graph, degree=degree,
                               threshold=threshold, frac_bits=frac_bits, bound=bound, seed=seed,
                               unsafe_allow_low_threshold=unsafe_allow_low_threshold,
                               unsafe_semi_honest=unsafe_semi_honest)
    if total[-1] <= 0:
        raise ValueError("the surviving clients' `weights` sum to 0: no mean exists")
    return unflatten(total[:-1] / total[-1]), report


def _as_matrix(updates: Any) -> tuple[np.ndarray, Any]:
    """``(clients, dim)`` float64 and a function mapping a summed ``(dim,)`` vector back."""
    if isinstance(updates, Sequence) and updates and isinstance(updates[0], Mapping):
        reference = updates[0]
        for i, state in enumerate(updates):
            if not isinstance(state, Mapping) or list(state) != list(reference) or any(
                    not isinstance(state[k], torch.Tensor)
                    or tuple(state[k].shape) != tuple(reference[k].shape) for k in reference):
                raise ValueError(f"`updates`: client {i}'s state_dict differs from client 0's "
                                 f"in keys or shapes")
        rows = [torch.cat([state[k].detach().reshape(-1).to(torch.float64) for k in reference])
                for state in updates]
        sizes = [reference[k].numel() for k in reference]

        def unflatten(vector: np.ndarray) -> dict[str, torch.Tensor]:
            parts = torch.from_numpy(np.ascontiguousarray(vector)).split(sizes)
            return {k: (part if reference[k].is_floating_point() else part.round())
                    .reshape(reference[k].shape).to(reference[k].dtype)
                    for k, part in zip(reference, parts)}
        return torch.stack(rows).numpy(), unflatten
    if isinstance(updates, torch.Tensor):
        dtype = updates.dtype if updates.is_floating_point() else torch.float64
        matrix = updates.detach().cpu().to(torch.float64).numpy()
        unflatten = lambda v: torch.from_numpy(np.asarray(v)).to(dtype)  # noqa: E731
    elif isinstance(updates, (np.ndarray, list, tuple)):
        matrix, unflatten = np.asarray(updates, dtype=np.float64), np.asarray
    else:
        raise TypeError(f"`updates` must be an array (clients, dim), a tensor or a list of "
                        f"state_dicts, got {type(updates).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"`updates` must have shape (clients, dim), got {matrix.shape}")
    return matrix, unflatten
