"""A cheating server against secure aggregation: its strategies, played against real clients.

The server of :mod:`course_lib.secagg.protocol` is honest: it routes every message as the
protocol says. Here it is not. :func:`run_attack` builds honest :class:`SecAggClient` objects
(the active protocol by default, the semi-honest teaching variant with
``unsafe_semi_honest=True``) and plays one of :data:`STRATEGIES` as the server, with no
colluding client. Its goal is one client's (the *victim*'s) exact input; the
:class:`AttackOutcome` says whether it got it, or which honest client stopped it and why.

==========================  ===================================================================
strategy                    what the server does
==========================  ===================================================================
``withhold_shares``         forwards no key shares to the victim, so it masks with nobody;
                            then rebuilds its self-mask as for any survivor
``withhold_most_shares``    forwards the victim only ``t - 1`` peers' shares (enough to pass
                            the round-2 abort), then calls exactly those peers "dropped" and
                            rebuilds their mask keys, which peel every mask off the victim
``split_view``              tells ``t`` holders of the victim's shares that it survived (they
                            reveal ``b_u``) and the others that it dropped (they reveal
                            ``s_u``): with both, the victim's input is open
``replay_survivors``        the split view, with the "victim dropped" group shown genuine
                            signatures of that set from an earlier round (same clients, same
                            keys, another session)
``forge_survivors``         the split view, with signatures the server made itself
``ask_both_secrets``        an honest round, then asks the same holders again, now for the
                            victim's mask-key share too
==========================  ===================================================================

What stops each one in the active protocol (:mod:`course_lib.secagg.parties`):
withheld shares -> the round-2 abort (fewer than ``t`` holders); most shares withheld -> the
signed peer list (a holder reveals ``b_u`` only if ``u`` masked with it); split view ->
``2 t > h`` (two disjoint groups of ``t`` honest holders do not fit) and the consistency
round (the second group cannot collect ``t`` signatures on its set); replayed or forged
signatures -> the session id in every signed statement and the directory of keys; both
secrets -> one kind per owner per holder, one signed survivor set per session.

Against the semi-honest variant every strategy but ``ask_both_secrets`` recovers the victim's
input exactly (the split-view family needs ``2 t <= h``, the threshold of Bell et al.'s
semi-honest SecAgg+; the withheld-share attacks work at any threshold). ``ask_both_secrets``
fails there too, because the "one kind per owner" rule of each holder predates the active
version: that rule is exactly what the split view gets around.

Examples
--------
>>> import numpy as np, warnings
>>> from course_lib.secagg.attacks import run_attack
>>> x = np.random.default_rng(0).uniform(-1, 1, size=(8, 3))  # (clients, dim)
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     run_attack("withhold_shares", x, unsafe_semi_honest=True).succeeded
True
>>> outcome = run_attack("withhold_shares", x)  # the active protocol
>>> outcome.succeeded, type(outcome.error).__name__
(False, 'TooManyDropoutsError')
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from course_lib._validation import require_int
from course_lib.crypto.insecure import warn_insecure
from course_lib.crypto.secret_sharing import decode_ring
from course_lib.secagg.parties import (
    MASK_LABEL,
    SEMI_HONEST_WARNING,
    SecAggClient,
    survivors_statement,
)
from course_lib.secagg.primitives import (
    LagrangeCache,
    agree,
    make_identities,
    mask_private_key,
    new_session_id,
    new_signing_key,
    prg,
    self_mask,
    sign,
)
from course_lib.secagg.protocol import encode
from course_lib.secagg.setup import (
    DEFAULT_BOUND,
    DEFAULT_FRAC_BITS,
    SecAggParams,
    SecureAggregationError,
    make_params,
)

__all__ = ["STRATEGIES", "AttackOutcome", "run_attack"]

STRATEGIES = ("withhold_shares", "withhold_most_shares", "split_view", "replay_survivors",
              "forge_survivors", "ask_both_secrets")


@dataclass(repr=False)
class AttackOutcome:
    """The result of one attack: what the server computed for the victim, or who refused.

    ``truth`` is the victim's real input, kept only to judge the result (the server never
    sees it). ``error`` is the :class:`SecureAggregationError` an honest client raised (its
    message names the client and the reason), ``None`` if every client went along.
    """

    strategy: str
    victim: int
    params: SecAggParams
    semi_honest: bool
    recovered: np.ndarray | None  # (dim,) float64, the server's reconstruction of x_victim
    truth: np.ndarray  # (dim,) float64
    error: SecureAggregationError | None

    @property
    def succeeded(self) -> bool:
        """Whether the server holds the victim's exact input (to the fixed-point resolution)."""
        return self.recovered is not None and bool(np.allclose(
            self.recovered, self.truth, rtol=0, atol=2.0 ** -self.params.frac_bits))

    def __repr__(self) -> str:
        verdict = "victim's input recovered" if self.succeeded else (
            f"stopped: {self.error}" if self.error is not None else "failed: too few shares")
        return (f"AttackOutcome({self.strategy!r}, "
                f"{'semi-honest' if self.semi_honest else 'active'} protocol, "
                f"graph={self.params.graph!r}, h={self.params.holders_per_client}, "
                f"t={self.params.threshold}: {verdict})")


class _Round:
    """Honest clients of one session, and everything a (cheating) server sees of them."""

    def __init__(self, params: SecAggParams, semi: bool, identities: tuple | None = None
                 ) -> None:
        n = params.num_clients
        self.params, self.semi, self.session = params, semi, new_session_id()
        if identities is None:
            identities = ([None] * n, None) if semi else make_identities(n)
        self.identities = identities
        signing, directory = identities
        self.clients = [SecAggClient(u, params, session=self.session, signing_key=signing[u],
                                     directory=directory, unsafe_semi_honest=semi)
                        for u in range(n)]
        self.keys = {u: c.advertise_keys() for u, c in enumerate(self.clients)}  # round 0
        self.outgoing = {u: c.share_keys({v: self.keys[v] for v in params.neighbours[u]})
                         for u, c in enumerate(self.clients)}  # round 1
        self.y: dict[int, np.ndarray] = {}
        self.peers: dict[int, tuple] = {}

    def masked(self, encoded: np.ndarray, *, withhold: dict[int, Collection[int]] | None = None,
               absent: Collection[int] = ()) -> None:
        """Round 2, with ``withhold[holder]`` the owners whose shares never reach ``holder``."""
        withhold = withhold or {}
        for u, c in enumerate(self.clients):
            if u in absent:
                continue
            inbox = {o: tokens[u] for o, tokens in self.outgoing.items()
                     if u in tokens and o not in withhold.get(u, ())}
            self.y[u] = c.masked_input(encoded[u], inbox)
            self.peers[u] = c.masked_peers()

    def sign(self, views: dict[int, frozenset[int]]) -> dict[frozenset[int], dict[int, bytes]]:
        """Round 3: each client signs the set it is shown; signatures grouped by set."""
        out: dict[frozenset[int], dict[int, bytes]] = {}
        for u, view in views.items():
            signature = self.clients[u].sign_survivors(view) if not self.semi else b""
            out.setdefault(view, {})[u] = signature
        return out

    def reveal(self, u: int, survivors: Collection[int], dropped: Collection[int],
               signatures: dict[int, bytes]) -> dict[int, tuple]:
        """Last round: what client ``u`` reveals when shown these sets and signatures."""
        if self.semi:
            return self.clients[u].unmask(survivors, dropped)
        holders = self.params.holders(u)
        return self.clients[u].unmask(
            survivors, dropped, signatures={v: s for v, s in signatures.items() if v in holders},
            masked_peers={v: self.peers[v] for v in holders if v in self.peers})


def _rebuild(params: SecAggParams, answers: dict[int, dict[int, tuple]], owner: int,
             kind: str) -> int | None:
    """The server's Lagrange interpolation of one secret, or ``None`` with fewer than ``t``."""
    points = [(holder + 1, answer[owner][1]) for holder, answer in sorted(answers.items())
              if owner in answer and answer[owner][0] == kind]
    if len(points) < params.threshold:
        return None
    return LagrangeCache().reconstruct(points[:params.threshold])


def _peel(world: _Round, victim: int, b_seed: int | None, victim_mask_seed: int | None,
          peer_mask_seeds: dict[int, int]) -> np.ndarray | None:
    """``y_u - PRG(b_u) - sum_v +-PRG(s_uv)``: the victim's encoded input, if every seed the
    server needs is at hand (``s_uv`` from the victim's mask key or from the peer's)."""
    if b_seed is None:
        return None
    y = world.y[victim].copy()  # (dim,) uint64
    np.subtract(y, self_mask(b_seed, y.size), out=y)
    for v in world.peers[victim][0]:
        if victim_mask_seed is not None:
            seed = agree(mask_private_key(victim_mask_seed), world.keys[v][1], MASK_LABEL)
        elif v in peer_mask_seeds:
            seed = agree(mask_private_key(peer_mask_seeds[v]), world.keys[victim][1], MASK_LABEL)
        else:
            return None
        (np.subtract if victim < v else np.add)(y, prg(seed, y.size), out=y)
    return y


def _withhold_shares(world: _Round, encoded: np.ndarray, victim: int) -> np.ndarray | None:
    n = world.params.num_clients
    world.masked(encoded, withhold={victim: range(n)})  # the victim hears from nobody
    everyone = frozenset(range(n))
    signatures = world.sign(dict.fromkeys(range(n), everyone))[everyone] \
        if not world.semi else {}
    answers = {u: world.reveal(u, everyone, (), signatures) for u in range(n)}
    return _peel(world, victim, _rebuild(world.params, answers, victim, "self_mask"), None, {})


def _withhold_most_shares(world: _Round, encoded: np.ndarray, victim: int) -> np.ndarray | None:
    params, n = world.params, world.params.num_clients
    fed = set(params.neighbours[victim][:params.threshold - 1])  # just enough not to abort
    world.masked(encoded, withhold={victim: set(range(n)) - fed})
    survivors = frozenset(range(n)) - fed  # the fed peers are called "dropped"
    signatures = world.sign(dict.fromkeys(survivors, survivors))[survivors] \
        if not world.semi else {}
    answers = {u: world.reveal(u, survivors, fed, signatures) for u in sorted(survivors)}
    peer_seeds = {v: _rebuild(params, answers, v, "mask_key") for v in fed}
    return _peel(world, victim, _rebuild(params, answers, victim, "self_mask"), None,
                 {v: s for v, s in peer_seeds.items() if s is not None})


def _groups(params: SecAggParams, victim: int) -> tuple[list[int], list[int]]:
    """The split: the victim and ``t - 1`` other holders ("survived"), the rest ("dropped")."""
    others = [v for v in params.holders(victim) if v != victim]
    return [victim, *others[:params.threshold - 1]], others[params.threshold - 1:]


def _split_view(world: _Round, encoded: np.ndarray, victim: int,
                extra: Callable[[frozenset[int], list[int]], dict[int, bytes]] | None = None
                ) -> np.ndarray | None:
    params, n = world.params, world.params.num_clients
    world.masked(encoded)  # an honest round so far
    alive, lied = frozenset(range(n)), frozenset(range(n)) - {victim}
    told_alive, told_dropped = _groups(params, victim)
    views = {u: lied if u in told_dropped else alive for u in range(n)}
    signed = world.sign(views) if not world.semi else {}
    sigs_alive, sigs_lied = signed.get(alive, {}), dict(signed.get(lied, {}))
    if extra is not None:  # replayed or forged signatures for the "dropped" story
        sigs_lied = {**extra(lied, told_alive), **sigs_lied}
    answers_b = {u: world.reveal(u, alive, (), sigs_alive) for u in told_alive}
    answers_s = {u: world.reveal(u, lied, (victim,), sigs_lied) for u in told_dropped}
    return _peel(world, victim, _rebuild(params, answers_b, victim, "self_mask"),
                 _rebuild(params, answers_s, victim, "mask_key"), {})


def _replay_survivors(world: _Round, encoded: np.ndarray, victim: int) -> np.ndarray | None:
    # an earlier round with the same clients and keys, in which the victim really dropped:
    # its genuine signatures of "everyone but the victim" are the server's to replay
    earlier = _Round(world.params, world.semi, identities=world.identities)
    earlier.masked(encoded, absent=(victim,))
    lied = frozenset(range(world.params.num_clients)) - {victim}
    old = earlier.sign(dict.fromkeys(lied, lied)).get(lied, {}) if not world.semi else {}
    return _split_view(world, encoded, victim, extra=lambda s, group: {
        u: old[u] for u in group if u in old})


def _forge_survivors(world: _Round, encoded: np.ndarray, victim: int) -> np.ndarray | None:
    own_key = new_signing_key()  # the server's own key: not in the directory

    def forged(survivors: frozenset[int], group: list[int]) -> dict[int, bytes]:
        message = survivors_statement(world.session, sorted(survivors))
        return {u: sign(own_key, message) for u in group}
    return _split_view(world, encoded, victim, extra=forged)


def _ask_both_secrets(world: _Round, encoded: np.ndarray, victim: int) -> np.ndarray | None:
    params, n = world.params, world.params.num_clients
    world.masked(encoded)
    everyone = frozenset(range(n))
    signatures = world.sign(dict.fromkeys(range(n), everyone))[everyone] \
        if not world.semi else {}
    holders = params.holders(victim)
    answers_b = {u: world.reveal(u, everyone, (), signatures) for u in holders}
    b_seed = _rebuild(params, answers_b, victim, "self_mask")
    lied = everyone - {victim}  # now the same holders are asked for the other secret
    answers_s = {u: world.reveal(u, lied, (victim,), signatures) for u in holders
                 if u != victim}
    return _peel(world, victim, b_seed, _rebuild(params, answers_s, victim, "mask_key"), {})


_PLAYS = {"withhold_shares": _withhold_shares, "withhold_most_shares": _withhold_most_shares,
          "split_view": _split_view, "replay_survivors": _replay_survivors,
          "forge_survivors": _forge_survivors, "ask_both_secrets": _ask_both_secrets}


def run_attack(strategy: str, inputs: np.ndarray, *, victim: int = 0, graph: str = "complete",
               degree: int | None = None, threshold: int | None = None,
               frac_bits: int = DEFAULT_FRAC_BITS, bound: float = DEFAULT_BOUND,
               seed: int | None = None, unsafe_allow_low_threshold: bool = False,
               unsafe_semi_honest: bool = False) -> AttackOutcome:
    """Play ``strategy`` as the server against honest clients holding ``inputs``.

    Parameters
    ----------
    strategy : one of :data:`STRATEGIES`
    inputs : array (clients, dim)
        The clients' vectors, in ``[-bound, bound]``.
    victim : int
        The client whose input the server is after.
    graph, degree, threshold, frac_bits, bound, seed, unsafe_allow_low_threshold
        As for :func:`~course_lib.secagg.secure_sum`. A threshold below the safe range is
        refused (``ValueError``) unless ``unsafe_allow_low_threshold=True``.
    unsafe_semi_honest : bool
        Attack the honest-but-curious variant instead (warns).

    Returns
    -------
    AttackOutcome
        ``.succeeded`` is ``True`` when the server holds the victim's exact input;
        otherwise ``.error`` is the honest client's refusal (or ``None`` when the server
        simply lacked shares).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}")
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`inputs` must have shape (clients, dim), got {x.shape}")
    params = make_params(x.shape[0], x.shape[1], graph=graph, degree=degree,
                         threshold=threshold, frac_bits=frac_bits, bound=bound, seed=seed,
                         unsafe_allow_low_threshold=unsafe_allow_low_threshold)
    require_int("victim", victim, minimum=0, maximum=params.num_clients - 1)
    if not isinstance(unsafe_semi_honest, bool):
        raise TypeError(f"`unsafe_semi_honest` must be a bool, got "
                        f"{type(unsafe_semi_honest).__name__}")
    if unsafe_semi_honest:
        warn_insecure(SEMI_HONEST_WARNING)
    encoded = encode(x, frac_bits=frac_bits, bound=params.bound)  # (clients, dim) uint64
    world = _Round(params, unsafe_semi_honest)
    error = None
    try:
        found = _PLAYS[strategy](world, encoded, victim)
    except SecureAggregationError as err:  # an honest client refused to go on
        found, error = None, err
    recovered = None if found is None else decode_ring(found, frac_bits=frac_bits)
    return AttackOutcome(strategy, victim, params, unsafe_semi_honest, recovered,
                         x[victim].copy(), error)
