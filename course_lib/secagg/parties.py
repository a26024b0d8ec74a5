"""The two roles of secure aggregation: :class:`SecAggClient` and :class:`SecAggServer`.

Each method is one message of Bonawitz et al.'s protocol (honest-but-curious version, so
without the signatures and the consistency-check round of the active version). Messages are
plain Python values; the byte counts in ``bytes_sent`` are those of this wire format:

==================  ============================================================  ========
round               client -> server                                              bytes
==================  ============================================================  ========
0 advertise keys    public keys ``c_u`` (encrypts shares), ``s_u`` (masks)        64
1 share keys        per holder ``v``: AES-GCM(owner, holder, [b_u]_v, [seed_u]_v) 69 each
2 masked input      ``y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)`` mod 2**64          8 * dim
3 unmasking         per owner: (id, kind, share)                                  21 each
==================  ============================================================  ========

The server never sees a secret key, a seed or an unmasked input: it routes ciphertexts it
cannot read, adds masked vectors, and in round 3 asks each client for shares of the
*self-mask* seed of every client that sent its input, and for shares of the *mask-key* seed
of every client that did not. Never both for the same client: with both it could unmask
that client's input, so a client refuses (and the server refuses to reconstruct) a second,
different secret of the same owner. That check is an ``if ... raise``, not an ``assert``
(asserts vanish under ``python -O``).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping

import numpy as np

from course_lib.crypto import symmetric
from course_lib.secagg.primitives import (
    LagrangeCache,
    agree,
    mask_private_key,
    new_private_key,
    prg,
    public_bytes,
    random_field_element,
    self_mask,
    shamir_share_at,
)
from course_lib.secagg.setup import SecAggParams, SecureAggregationError, TooManyDropoutsError

__all__ = ["SecAggClient", "SecAggServer", "KINDS"]

KINDS = ("self_mask", "mask_key")  # the two secrets of a client that are Shamir-shared
_SHARE = struct.Struct(">II16s16s")  # owner, holder, share of b_u, share of the mask-key seed
_UNMASK_ENTRY_BYTES = 4 + 1 + 16  # owner id, kind, share
_SHARE_LABEL, _MASK_LABEL = b"share encryption", b"pairwise mask"


def _ad(owner: int, holder: int) -> bytes:
    return b"secagg share %d->%d" % (owner, holder)  # binds a ciphertext to its route


class SecAggClient:
    """One client: its keys and seeds (drawn from the OS CSPRNG), and its four messages."""

    def __init__(self, client_id: int, params: SecAggParams) -> None:
        self.id, self.params = client_id, params
        self._share_key = new_private_key()  # c_u: encrypts shares sent through the server
        self._mask_seed = random_field_element()  # shared; derives s_u, the masking key
        self._mask_key = mask_private_key(self._mask_seed)
        self._self_seed = random_field_element()  # b_u, shared; expands to the self-mask
        self._public: dict[int, tuple[bytes, bytes]] = {}
        self._channel: dict[int, bytes] = {}  # peer -> AES-GCM key agreed from c_u, c_v
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (share of b, share of seed)
        self._revealed: dict[int, str] = {}  # owner -> the one kind revealed for it
        self.bytes_sent = 0

    def __repr__(self) -> str:
        return f"SecAggClient(id={self.id}, holds_shares_of={len(self._held)})"

    def advertise_keys(self) -> tuple[bytes, bytes]:
        """Round 0: the two public keys ``(c_u, s_u)``, 32 bytes each."""
        self.bytes_sent += 64
        return public_bytes(self._share_key), public_bytes(self._mask_key)

    def share_keys(self, public_keys: Mapping[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
        """Round 1: Shamir-share ``b_u`` and the mask-key seed among the holders that
        advertised keys; return each other holder's shares encrypted for it."""
        t = self.params.threshold
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
        over the neighbours whose shares arrived (they are the ones still in the round)."""
        if not isinstance(values, np.ndarray) or values.dtype != np.uint64 \
                or values.shape != (self.params.dim,):
            raise ValueError(f"`values` must be a uint64 array of shape ({self.params.dim},)")
        for owner, token in ciphertexts.items():
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
        self._add_pairwise_masks(y, sorted(ciphertexts))
        self.bytes_sent += y.nbytes
        return y

    def _add_self_mask(self, y: np.ndarray) -> None:
        np.add(y, self_mask(self._self_seed, y.size), out=y)  # wraps modulo 2**64

    def _add_pairwise_masks(self, y: np.ndarray, peers: list[int]) -> None:
        for v in peers:  # one X25519 agreement and one AES-CTR call per pair
            mask = prg(agree(self._mask_key, self._public[v][1], _MASK_LABEL), y.size)
            (np.add if self.id < v else np.subtract)(y, mask, out=y)  # cancels with v's

    def unmask(self, survivors: Collection[int], dropped: Collection[int]) -> dict[int, tuple]:
        """Round 3: for each owner whose shares this client holds, the share of ``b_owner`` if
        the owner sent its input (``survivors``), of its mask-key seed if not (``dropped``).

        Raises :class:`SecureAggregationError` if the two lists overlap, if this client is
        called dropped although it sent its input, or if the server asks for the other
        secret of an owner than it asked for before: any of these would let it unmask an input.
        """
        survivors, dropped = set(survivors), set(dropped)
        if survivors & dropped or self.id in dropped or self.id not in survivors:
            raise SecureAggregationError(
                f"client {self.id}: refusing to unmask: the server's survivor and dropout "
                f"lists are inconsistent (overlap {sorted(survivors & dropped)[:5]})")
        if len(survivors) < self.params.threshold:
            raise TooManyDropoutsError(f"only {len(survivors)} clients sent masked inputs, "
                                       f"threshold t = {self.params.threshold}")
        out = {}
        for owner, (share_b, share_s) in self._held.items():
            kind = "self_mask" if owner in survivors else "mask_key" if owner in dropped else None
            if kind is None:
                continue
            if self._revealed.setdefault(owner, kind) != kind:
                raise SecureAggregationError(
                    f"client {self.id}: refusing to reveal client {owner}'s {kind} share "
                    f"after its {self._revealed[owner]} share: both would unmask its input")
            out[owner] = (kind, share_b if kind == "self_mask" else share_s)
        self.bytes_sent += _UNMASK_ENTRY_BYTES * len(out)
        return out


class SecAggServer:
    """The server: routes messages, adds masked inputs, and removes the masks in round 3.

    ``reconstructed`` maps each client to the one secret rebuilt for it (an audit log).
    """

    def __init__(self, params: SecAggParams) -> None:
        self.params = params
        self._keys: dict[int, tuple[bytes, bytes]] = {}  # U1: who advertised keys
        self._shared: frozenset[int] = frozenset()  # U2: who sent shares
        self._survivors: tuple[int, ...] = ()  # U3: who sent a masked input
        self._dropped: tuple[int, ...] = ()  # U2 - U3
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

    def collect_keys(self, keys: Mapping[int, tuple[bytes, bytes]]) -> None:
        self._require(len(keys), "advertised keys")
        self._keys = dict(keys)

    def public_keys_for(self, client: int) -> dict[int, tuple[bytes, bytes]]:
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

    def collect_masked(self, masked: Mapping[int, np.ndarray]) -> tuple[tuple, tuple]:
        """Round 2: add the masked inputs; return ``(survivors, dropped)`` for round 3."""
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
        self._survivors = tuple(sorted(masked))
        self._dropped = tuple(sorted(self._shared - set(masked)))
        return self._survivors, self._dropped

    def unmask(self, responses: Mapping[int, Mapping[int, tuple]]) -> np.ndarray:
        """Round 3: rebuild ``b_u`` of every survivor and the mask key of every dropout from
        ``t`` shares each, remove their masks, and return the sum (uint64, mod 2**64)."""
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
