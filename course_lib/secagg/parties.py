"""The two roles of secure aggregation: :class:`SecAggClient` and :class:`SecAggServer`.

Each method is one message of Bonawitz et al.'s protocol in its *active* version, secure
against a server that deviates from the protocol: keys are signed (a :class:`Directory` of
verification keys is given to everyone at set-up), a client aborts in round 2 when fewer than
``t`` of its holders' shares arrived, it signs the set of peers it masked with, and a
consistency round (every client signs the survivor set it was shown, and checks ``t``
signatures of its holders on that *same* set) comes before any share is revealed. Messages
are plain Python values; the byte counts in ``bytes_sent`` are those of this wire format:

==================  ============================================================  ===========
round               client -> server                                              bytes
==================  ============================================================  ===========
0 advertise keys    public keys ``c_u`` (encrypts shares), ``s_u`` (masks), sig   64 + 64
1 share keys        per holder ``v``: AES-GCM(owner, holder, [b_u]_v, [seed_u]_v) 69 each
2 masked input      ``y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)`` mod 2**64;        8 * dim +
                    the peers it masked with, signed                              4 * peers + 64
3 consistency       signature of the survivor set it was shown                    64
4 unmasking         per owner: (id, kind, share)                                  21 each
==================  ============================================================  ===========

The server never sees a secret key, a seed or an unmasked input: it routes ciphertexts it
cannot read, adds masked vectors, and in the last round asks each client for shares of the
*self-mask* seed of every client that sent its input, and for shares of the *mask-key* seed
of every client that did not. Never both for the same client: with both it could unmask
that client's input. An honest client enforces what it can see itself (it reveals one kind
per owner, only for the survivor set it signed and only after ``t`` of its holders signed the
same set, and a self-mask share of ``u`` only if ``u`` signed that it masked with this
client); the threshold rule ``2 t > h`` of :mod:`course_lib.secagg.setup` makes sure that no
two groups of honest holders can be shown two different stories about one client. Every
check is an ``if ... raise SecureAggregationError``, not an ``assert`` (asserts vanish under
``python -O``).

``unsafe_semi_honest=True`` gives the honest-but-curious protocol of the paper's first
version (no signatures, no round-2 abort, no consistency round), kept so that chapter 5 can
show the attacks of :mod:`course_lib.secagg.attacks` succeeding against it. The server (and
every entry point built on it) issues an ``InsecureWarning`` for it; a client only obeys.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from course_lib.crypto import symmetric
from course_lib.crypto.insecure import warn_insecure
from course_lib.secagg.primitives import (
    SIGNATURE_BYTES,
    Directory,
    LagrangeCache,
    agree,
    mask_private_key,
    new_private_key,
    prg,
    public_bytes,
    random_field_element,
    self_mask,
    shamir_share_at,
    sign,
    statement,
)
from course_lib.secagg.setup import SecAggParams, SecureAggregationError, TooManyDropoutsError

__all__ = ["SecAggClient", "SecAggServer", "KINDS", "MASK_LABEL", "keys_statement",
           "masked_statement",
           "survivors_statement"]

KINDS = ("self_mask", "mask_key")  # the two secrets of a client that are Shamir-shared
_SHARE = struct.Struct(">II16s16s")  # owner, holder, share of b_u, share of the mask-key seed
_UNMASK_ENTRY_BYTES = 4 + 1 + 16  # owner id, kind, share
_SHARE_LABEL, _MASK_LABEL = b"share encryption", b"pairwise mask"
MASK_LABEL = _MASK_LABEL  # the HKDF label of the pairwise masks (public: part of the protocol)
SEMI_HONEST_WARNING = ("secure aggregation with unsafe_semi_honest=True resists only an "
                       "honest-but-curious server: a server that cheats can unmask a client's "
                       "input (course_lib.secagg.attacks); use it for teaching only")


def _ad(owner: int, holder: int) -> bytes:
    return b"secagg share %d->%d" % (owner, holder)  # binds a ciphertext to its route


def keys_statement(session: bytes, client: int, share_key: bytes, mask_key: bytes) -> bytes:
    """What a client signs in round 0: its two public keys, for this session."""
    return statement(b"keys", session, client, data=share_key + mask_key)


def masked_statement(session: bytes, client: int, peers: Collection[int]) -> bytes:
    """What a client signs in round 2: the peers whose pairwise masks are in its input."""
    return statement(b"masked peers", session, client, peers)


def survivors_statement(session: bytes, survivors: Collection[int]) -> bytes:
    """What a client signs in the consistency round: the survivor set it was shown."""
    return statement(b"survivors", session, survivors)


class SecAggClient:
    """One client: its keys and seeds (drawn from the OS CSPRNG), and its messages.

    ``session`` names the round (public, fresh per round); ``signing_key`` is the client's
    long-term Ed25519 key and ``directory`` everyone's verification keys (both required
    unless ``unsafe_semi_honest=True``, which skips every check against a cheating server).
    """

    def __init__(self, client_id: int, params: SecAggParams, *, session: bytes = b"",
                 signing_key: Ed25519PrivateKey | None = None,
                 directory: Directory | None = None, unsafe_semi_honest: bool = False) -> None:
        if not isinstance(unsafe_semi_honest, bool):
            raise TypeError(f"`unsafe_semi_honest` must be a bool, got "
                            f"{type(unsafe_semi_honest).__name__}")
        if not unsafe_semi_honest and (not isinstance(signing_key, Ed25519PrivateKey)
                                       or not isinstance(directory, Directory)):
            raise TypeError("`signing_key` (an Ed25519PrivateKey) and `directory` (a Directory) "
                            "are required unless unsafe_semi_honest=True")
        if not isinstance(session, bytes):
            raise TypeError(f"`session` must be bytes, got {type(session).__name__}")
        self.id, self.params, self.session = client_id, params, session
        self.semi_honest = unsafe_semi_honest
        self._signing_key, self._directory = signing_key, directory
        self._share_key = new_private_key()  # c_u: encrypts shares sent through the server
        self._mask_seed = random_field_element()  # shared; derives s_u, the masking key
        self._mask_key = mask_private_key(self._mask_seed)
        self._self_seed = random_field_element()  # b_u, shared; expands to the self-mask
        self._public: dict[int, tuple[bytes, ...]] = {}
        self._channel: dict[int, bytes] = {}  # peer -> AES-GCM key agreed from c_u, c_v
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (share of b, share of seed)
        self._peers: tuple[int, ...] = ()  # whom this client masked with (round 2)
        self._signed: frozenset[int] | None = None  # the survivor set it signed (round 3)
        self._revealed: dict[int, str] = {}  # owner -> the one kind revealed for it
        self.bytes_sent = 0

    def __repr__(self) -> str:
        return f"SecAggClient(id={self.id}, holds_shares_of={len(self._held)})"

    def _refuse(self, why: str) -> SecureAggregationError:
        return SecureAggregationError(f"client {self.id}: refusing to continue: {why}")

    def advertise_keys(self) -> tuple[bytes, bytes, bytes]:
        """Round 0: the two public keys ``(c_u, s_u)``, 32 bytes each, and a signature of both
        for this session (``b""`` in the semi-honest variant)."""
        c, s = public_bytes(self._share_key), public_bytes(self._mask_key)
        if self.semi_honest:
            self.bytes_sent += 64
            return c, s, b""
        self.bytes_sent += 64 + SIGNATURE_BYTES
        return c, s, sign(self._signing_key, keys_statement(self.session, self.id, c, s))

    def share_keys(self, public_keys: Mapping[int, tuple[bytes, ...]]) -> dict[int, bytes]:
        """Round 1: check the peers' signed keys, Shamir-share ``b_u`` and the mask-key seed
        among the holders that advertised keys; return each other holder's shares encrypted
        for it. A key that is not its owner's (the server's substitute) or a peer outside this
        client's neighbourhood raises :class:`SecureAggregationError`."""
        t = self.params.threshold
        if not self.semi_honest:
            neighbours = set(self.params.neighbours[self.id])
            for v, keys in public_keys.items():
                if v not in neighbours:
                    raise self._refuse(f"the server sent keys of client {v}, not a neighbour")
                if len(keys) != 3 or not self._directory.verify(
                        v, keys[2], keys_statement(self.session, v, keys[0], keys[1])):
                    raise self._refuse(f"client {v}'s advertised keys carry no valid signature "
                                       f"for this session")
        self._public = dict(public_keys)
        holders = [v for v in self.params.holders(self.id) if v == self.id or v in public_keys]
        if len(holders) < t:
            raise TooManyDropoutsError(f"client {self.id}: only {len(holders)} share holders "
                                       f"advertised keys, threshold t = {t}")
        xs = [v + 1 for v in holders]  # x = 0 is the secret itself, so ids are shifted by one
        shares_b = shamir_share_at(self._self_seed, xs, t)
        shares_s = shamir_share_at(self._mask_seed, xs, t)
        out = {}
        for v, b, s in zip(holders, shares_b, shares_s):
            if v == self.id:
                self._held[v] = (b, s)  # keeps its own share, as in the paper
                continue
            key = self._channel[v] = agree(self._share_key, public_keys[v][0], _SHARE_LABEL)
            plain = _SHARE.pack(self.id, v, b.to_bytes(16, "big"), s.to_bytes(16, "big"))
            out[v] = symmetric.encrypt(key, plain, _ad(self.id, v))
        self.bytes_sent += sum(len(c) for c in out.values())
        return out

    def masked_input(self, values: np.ndarray, ciphertexts: Mapping[int, bytes]) -> np.ndarray:
        """Round 2: store the shares addressed to this client, then send
        ``y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)`` (``+`` if ``u < v``, ``-`` if ``u > v``)
        over the neighbours whose shares arrived (they are the ones still in the round).

        Aborts (:class:`TooManyDropoutsError`, a :class:`SecureAggregationError`) when
        shares arrived from fewer than ``t - 1`` peers: a server that withholds shares would
        otherwise get an input masked by almost nothing. The peers masked with are then
        signed by :meth:`masked_peers`.
        """
        if not isinstance(values, np.ndarray) or values.dtype != np.uint64 \
                or values.shape != (self.params.dim,):
            raise ValueError(f"`values` must be a uint64 array of shape ({self.params.dim},)")
        t = self.params.threshold
        if not self.semi_honest and 1 + len(ciphertexts) < t:
            raise TooManyDropoutsError(
                f"client {self.id}: refusing to send its input: shares arrived from only "
                f"{len(ciphertexts)} peers, so only {1 + len(ciphertexts)} holders (< t = {t}) "
                f"would protect it (clients dropped out, or the server withheld shares)")
        for owner, token in ciphertexts.items():
            if owner not in self._public:
                raise self._refuse(f"a share arrived from client {owner}, whose keys it never got")
            key = self._channel.get(owner) or agree(self._share_key, self._public[owner][0],
                                                    _SHARE_LABEL)  # same key both ways
            o, h, b, s = _SHARE.unpack(symmetric.decrypt(key, token, _ad(owner, self.id)))
            if (o, h) != (owner, self.id):
                raise SecureAggregationError(f"client {self.id}: a share from client {o} to "
                                             f"client {h} arrived as {owner} -> {self.id}")
            self._held[owner] = (int.from_bytes(b, "big"), int.from_bytes(s, "big"))
        self._channel.clear()  # the share keys have done their job
        y = np.array(values, dtype=np.uint64, copy=True)  # (dim,)
        self._add_self_mask(y)
        self._peers = tuple(sorted(ciphertexts))
        self._add_pairwise_masks(y, list(self._peers))
        self.bytes_sent += y.nbytes
        return y

    def masked_peers(self) -> tuple[tuple[int, ...], bytes]:
        """Round 2, with ``y_u``: the peers this client masked with, and its signature of them.

        A holder reveals a share of ``b_u`` only if ``u`` signed that it masked with that
        holder, so a server that fed ``u`` only shares of clients it later calls "dropped"
        cannot peel every pairwise mask off ``u``'s input."""
        if self.semi_honest:
            return self._peers, b""
        self.bytes_sent += 4 * len(self._peers) + SIGNATURE_BYTES
        return self._peers, sign(self._signing_key,
                                 masked_statement(self.session, self.id, self._peers))

    def _add_self_mask(self, y: np.ndarray) -> None:
        np.add(y, self_mask(self._self_seed, y.size), out=y)  # wraps modulo 2**64

    def _add_pairwise_masks(self, y: np.ndarray, peers: list[int]) -> None:
        for v in peers:  # one X25519 agreement and one AES-CTR call per pair
            mask = prg(agree(self._mask_key, self._public[v][1], _MASK_LABEL), y.size)
            (np.add if self.id < v else np.subtract)(y, mask, out=y)  # cancels with v's

    def sign_survivors(self, survivors: Collection[int]) -> bytes:
        """Round 3 (consistency check): sign the survivor set the server shows this client.

        Signs at most one set per session (asked again with another set, it raises
        :class:`SecureAggregationError`), only if it is itself in the set and only if at least
        ``t`` holders of its own shares are (or its input could not be unmasked anyway)."""
        survivors = frozenset(int(v) for v in survivors)
        if self.id not in survivors:
            raise self._refuse("the survivor set it was shown leaves it out, but it sent its "
                               "input")
        if self._signed is not None and self._signed != survivors:
            raise self._refuse("asked to sign a second, different survivor set")
        if len(survivors & set(self.params.holders(self.id))) < self.params.threshold:
            raise TooManyDropoutsError(f"client {self.id}: fewer than t = "
                                       f"{self.params.threshold} of its share holders survived")
        self._signed = survivors
        if self.semi_honest:
            return b""
        self.bytes_sent += SIGNATURE_BYTES
        return sign(self._signing_key, survivors_statement(self.session, sorted(survivors)))

    def unmask(self, survivors: Collection[int], dropped: Collection[int], *,
               signatures: Mapping[int, bytes] | None = None,
               masked_peers: Mapping[int, tuple[Collection[int], bytes]] | None = None
               ) -> dict[int, tuple]:
        """Last round: for each owner whose shares this client holds, the share of ``b_owner``
        if the owner sent its input (``survivors``), of its mask-key seed if not.

        Active model: ``survivors`` must be the set this client signed, ``signatures`` must
        hold valid signatures of that set for this session from at least ``t`` holders of
        this client's shares (its neighbours and itself), and a self-mask share of ``u`` is
        revealed only if ``masked_peers[u]`` is ``u``'s valid signature of a peer list that
        contains this client. Otherwise, and whenever the lists overlap, this client is
        called dropped, or the server asks for the other secret of an owner than before, it
        raises :class:`SecureAggregationError` before revealing anything.
        """
        survivors, dropped = set(survivors), set(dropped)
        if survivors & dropped or self.id in dropped or self.id not in survivors:
            raise SecureAggregationError(
                f"client {self.id}: refusing to unmask: the server's survivor and dropout "
                f"lists are inconsistent (overlap {sorted(survivors & dropped)[:5]})")
        if len(survivors) < self.params.threshold:
            raise TooManyDropoutsError(f"only {len(survivors)} clients sent masked inputs, "
                                       f"threshold t = {self.params.threshold}")
        if not self.semi_honest:
            self._check_consistency(survivors, signatures or {})
        plan: dict[int, str] = {}
        for owner in self._held:
            if owner in survivors:
                if owner != self.id and not self.semi_honest:
                    self._check_masked_with_me(owner, (masked_peers or {}).get(owner))
                plan[owner] = "self_mask"
            elif owner in dropped or not self.semi_honest:  # held but not a survivor: dropped
                plan[owner] = "mask_key"
        for owner, kind in plan.items():  # check everything before revealing anything
            if self._revealed.get(owner, kind) != kind:
                raise SecureAggregationError(
                    f"client {self.id}: refusing to reveal client {owner}'s {kind} share "
                    f"after its {self._revealed[owner]} share: both would unmask its input")
        out = {}
        for owner, kind in plan.items():
            self._revealed[owner] = kind
            share_b, share_s = self._held[owner]
            out[owner] = (kind, share_b if kind == "self_mask" else share_s)
        self.bytes_sent += _UNMASK_ENTRY_BYTES * len(out)
        return out

    def _check_consistency(self, survivors: set[int], signatures: Mapping[int, bytes]) -> None:
        if self._signed is None or set(self._signed) != survivors:
            raise self._refuse("the survivor set differs from the one it signed in the "
                               "consistency round")
        message = survivors_statement(self.session, sorted(survivors))
        valid, t = 0, self.params.threshold
        for v in self.params.holders(self.id):
            if v in signatures and v in survivors and self._directory.verify(
                    v, signatures[v], message):
                valid += 1
                if valid >= t:
                    return
        raise self._refuse(f"only {valid} valid signatures (< t = {t}) of its holders on the "
                           f"survivor set it was shown, for this session: the server may be "
                           f"showing different clients different sets")

    def _check_masked_with_me(self, owner: int, claim: tuple[Collection[int], bytes] | None
                              ) -> None:
        if claim is None or len(claim) != 2:
            raise self._refuse(f"no signed peer list of client {owner}")
        peers, signature = claim
        peers = tuple(sorted(int(v) for v in peers))
        if not self._directory.verify(owner, signature,
                                      masked_statement(self.session, owner, peers)):
            raise self._refuse(f"client {owner}'s peer list carries no valid signature for "
                               f"this session")
        if self.id not in peers:
            raise self._refuse(f"client {owner} did not mask its input with this client, so "
                               f"its self-mask share would help unmask it")


class SecAggServer:
    """The honest server: routes messages, adds masked inputs, removes the masks at the end.

    ``reconstructed`` maps each client to the one secret rebuilt for it (an audit log).
    """

    def __init__(self, params: SecAggParams, *, unsafe_semi_honest: bool = False) -> None:
        if not isinstance(unsafe_semi_honest, bool):
            raise TypeError(f"`unsafe_semi_honest` must be a bool, got "
                            f"{type(unsafe_semi_honest).__name__}")
        if unsafe_semi_honest:
            warn_insecure(SEMI_HONEST_WARNING)
        self.params = params
        self.semi_honest = unsafe_semi_honest
        self._keys: dict[int, tuple[bytes, ...]] = {}  # U1: who advertised keys
        self._shared: frozenset[int] = frozenset()  # U2: who sent shares
        self._survivors: tuple[int, ...] = ()  # U3: who sent a masked input
        self._dropped: tuple[int, ...] = ()  # U2 - U3
        self._peers: dict[int, tuple[tuple[int, ...], bytes]] = {}  # u -> signed peer list
        self._signatures: dict[int, bytes] = {}  # u -> its signature of the survivor set
        self._total: np.ndarray | None = None
        self._lagrange = LagrangeCache()
        self.reconstructed: dict[int, str] = {}

    def __repr__(self) -> str:
        return (f"SecAggServer(keys={len(self._keys)}, shared={len(self._shared)}, "
                f"survivors={len(self._survivors)}, reconstructed={len(self.reconstructed)})")

    def _require(self, count: int, what: str) -> None:
        if count < self.params.threshold:
            raise TooManyDropoutsError(f"only {count} clients {what}, threshold t = "
                                       f"{self.params.threshold}: the sum cannot be recovered")

    def collect_keys(self, keys: Mapping[int, tuple[bytes, ...]]) -> None:
        self._require(len(keys), "advertised keys")
        self._keys = dict(keys)

    def public_keys_for(self, client: int) -> dict[int, tuple[bytes, ...]]:
        """The broadcast of round 0, restricted to ``client``'s neighbours."""
        return {v: self._keys[v] for v in self.params.neighbours[client] if v in self._keys}

    def route_shares(self, outgoing: Mapping[int, Mapping[int, bytes]]) -> dict[int, dict]:
        """Round 1 -> 2: forward each ciphertext to its holder (``inbox[holder][owner]``)."""
        self._require(len(outgoing), "sent key shares")
        self._shared = frozenset(outgoing)
        inbox: dict[int, dict[int, bytes]] = {v: {} for v in self._shared}
        for owner, tokens in outgoing.items():
            for holder, token in tokens.items():
                if holder in inbox:
                    inbox[holder][owner] = token
        return inbox

    def collect_masked(self, masked: Mapping[int, np.ndarray],
                       peers: Mapping[int, tuple[tuple[int, ...], bytes]] | None = None
                       ) -> tuple[tuple, tuple]:
        """Round 2: add the masked inputs (and keep the signed peer lists, to pass on);
        return ``(survivors, dropped)``."""
        self._require(len(masked), "sent masked inputs")
        if not set(masked) <= self._shared:
            raise SecureAggregationError("a masked input came from a client that sent no shares")
        total = np.zeros(self.params.dim, dtype=np.uint64)  # (dim,)
        for u, y in masked.items():
            if not isinstance(y, np.ndarray) or y.dtype != np.uint64 or y.shape != total.shape:
                raise ValueError(f"client {u}: a masked input must be a uint64 array of shape "
                                 f"({self.params.dim},)")
            np.add(total, y, out=total)  # modulo 2**64
        self._total = total
        self._peers = dict(peers or {})
        self._survivors = tuple(sorted(masked))
        self._dropped = tuple(sorted(self._shared - set(masked)))
        return self._survivors, self._dropped

    def collect_signatures(self, signatures: Mapping[int, bytes]) -> None:
        """Round 3: the clients' signatures of the (one) survivor set."""
        self._signatures = dict(signatures)

    def unmask_request(self, client: int) -> dict:
        """What ``client`` gets before the last round: the survivor and dropout sets, its
        holders' signatures of the survivor set and the signed peer lists of the survivors
        whose shares it holds (keyword arguments of :meth:`SecAggClient.unmask`)."""
        holders = self.params.holders(client)
        signed = sum(v in self._signatures for v in holders)
        if signed < self.params.threshold:
            raise TooManyDropoutsError(
                f"client {client}: only {signed} of its share holders signed the survivor set, "
                f"t = {self.params.threshold} are needed: the sum cannot be recovered")
        return dict(survivors=self._survivors, dropped=self._dropped,
                    signatures={v: self._signatures[v] for v in holders if v in self._signatures},
                    masked_peers={v: self._peers[v] for v in holders if v in self._peers})

    def unmask(self, responses: Mapping[int, Mapping[int, tuple]]) -> np.ndarray:
        """Last round: rebuild ``b_u`` of every survivor and the mask key of every dropout
        from ``t`` shares each, remove their masks, and return the sum (uint64, mod 2**64)."""
        self._require(len(responses), "answered the unmasking round")
        points: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for holder, answer in sorted(responses.items()):
            for owner, (kind, share) in answer.items():
                points.setdefault((owner, kind), []).append((holder + 1, share))
        dim, survivors = self.params.dim, set(self._survivors)
        total = self._total.copy()
        for owner in self._survivors:
            seed = self._reconstruct(owner, "self_mask", points.get((owner, "self_mask"), []))
            np.subtract(total, self_mask(seed, dim), out=total)
        for owner in self._dropped:
            key = mask_private_key(
                self._reconstruct(owner, "mask_key", points.get((owner, "mask_key"), [])))
            if public_bytes(key) != self._keys[owner][1]:
                raise SecureAggregationError(f"client {owner}: the rebuilt mask key does not "
                                             f"match its public key (corrupted shares)")
            for v in self.params.neighbours[owner]:
                if v in survivors:  # v added +PRG if v < owner and -PRG if not: undo it
                    mask = prg(agree(key, self._keys[v][1], _MASK_LABEL), dim)
                    (np.subtract if v < owner else np.add)(total, mask, out=total)
        return total

    def _reconstruct(self, owner: int, kind: str, points: list[tuple[int, int]]) -> int:
        """Rebuild one secret of ``owner`` from ``t`` shares, refusing a second kind."""
        done = self.reconstructed.get(owner)
        if done is not None and done != kind:  # the protocol's key security property
            raise SecureAggregationError(f"client {owner}: refusing to reconstruct its {kind} "
                                         f"after its {done}: both would unmask its input")
        t = self.params.threshold
        if len(points) < t:
            raise TooManyDropoutsError(
                f"client {owner}: only {len(points)} of its share holders answered, t = {t} "
                f"are needed to rebuild its {kind.replace('_', ' ')}")
        self.reconstructed[owner] = kind
        return self._lagrange.reconstruct(points[:t])
