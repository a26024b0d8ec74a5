"""Encrypted inference of a linear model ``logits = W x + b``, in both directions of privacy.

1. **The client's input stays private** (Paillier). The client encrypts its features; the
   server, holding plaintext ``W`` and ``b``, computes ``E(W x + b) = prod_i E(x_i)^(W_ji) *
   E(b_j)`` using only ciphertext products and powers; the client decrypts the logits. The
   server never sees ``x``; the client learns the logits (and nothing else) about ``W``.
   Samples are *packed*: one ciphertext per feature carries that feature of many samples in
   separate slots, and multiplying by a weight scales every slot at once, so the cost is per
   batch of samples rather than per sample (:func:`encrypt_features`).

2. **The model stays private too** (secret sharing). Two non-colluding servers hold additive
   shares of ``W``, ``b`` and ``x`` and compute shares of ``W x + b`` with one Beaver matrix
   triple (:func:`two_server_linear`). Each server sees only its shares and the masked
   openings ``W - A`` and ``X - B``, which are uniformly random.

Both use fixed point: ``x`` and ``W`` carry ``frac_bits`` fractional bits, so the logits carry
``2 * frac_bits``; :func:`logit_error_bound` states the resulting worst-case error.

Everything here takes plain arrays (numpy, or anything ``np.asarray`` accepts); this module
knows nothing of how the model was trained (see :func:`course_lib.crypto.linear.train_linear`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np

from course_lib._validation import require_int, require_real
from course_lib.crypto import secret_sharing as ss
from course_lib.crypto._arrays import float_array
from course_lib.crypto._packing import pack_slots
from course_lib.crypto._paillier_keys import require_flag
from course_lib.crypto.fixed_point import check_frac_bits, dequantize, quantize
from course_lib.crypto.insecure import warn_insecure
from course_lib.crypto.paillier import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey
from course_lib.errors import DecryptionError

__all__ = ["EncryptedBatch", "encrypt_features", "required_slot_bits", "encrypted_linear",
           "decrypt_logits", "logit_error_bound", "TwoServerResult", "two_server_linear"]

DEFAULT_FRAC_BITS = 20  # logits then carry 40 bits; the error is ~1e-4 for the digits model


@dataclass(frozen=True, repr=False)
class EncryptedBatch:
    """Samples packed into Paillier ciphertexts: ``ciphertexts[batch][column]``.

    Slot ``s`` of ``ciphertexts[b][i]`` holds column ``i`` of sample ``b * slots + s``. The
    layout (``frac_bits``, ``slot_bits``, ``input_bound``) is public; the values are not.
    """

    public_key: PaillierPublicKey
    ciphertexts: tuple[tuple[EncryptedNumber, ...], ...]
    num_samples: int
    frac_bits: int
    slot_bits: int
    input_bound: float

    @property
    def slots(self) -> int:
        """Samples per ciphertext."""
        return (self.public_key.bits - 2) // self.slot_bits

    @property
    def nbytes(self) -> int:
        """Bytes on the wire (each ciphertext is below ``n^2``)."""
        count = sum(len(row) for row in self.ciphertexts)
        return count * 2 * (-(-self.public_key.bits // 8))

    def __repr__(self) -> str:
        columns = len(self.ciphertexts[0]) if self.ciphertexts else 0
        return (f"EncryptedBatch(samples={self.num_samples}, columns={columns}, "
                f"ciphertexts={sum(len(r) for r in self.ciphertexts)}, slots={self.slots}, "
                f"slot_bits={self.slot_bits}, frac_bits={self.frac_bits})")


def _public(key: Any) -> PaillierPublicKey:
    if isinstance(key, PaillierPrivateKey):
        return key.public_key
    if isinstance(key, PaillierPublicKey):
        return key
    raise TypeError(f"`key` must be a Paillier public or private key, got {type(key).__name__}")


def encrypt_features(key: PaillierPublicKey | PaillierPrivateKey, X: Any, *, input_bound: float,
                     frac_bits: int = DEFAULT_FRAC_BITS, slot_bits: int = 64) -> EncryptedBatch:
    """The client: quantise, pack (samples into slots) and encrypt a batch of feature rows.

    Parameters
    ----------
    key : PaillierPublicKey or PaillierPrivateKey
        The client's key; with the private key, encryption uses CRT (about 2x faster).
    X : array_like
        Features, shape ``(samples, features)``; one digit is ``X[None, :]``.
    input_bound : float
        Public bound on ``|x|``; a larger feature raises ``ValueError`` (clip first).
    frac_bits : int
        Fractional bits of ``x`` (and, on the server, of ``W``).
    slot_bits : int
        Width of one slot; the server refuses a model whose logits could overflow it
        (see :func:`required_slot_bits`).
    """
    public_key = _public(key)
    X = float_array("X", X)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"`X` must have shape (samples, features), got {X.shape}")
    if isinstance(input_bound, bool) or not isinstance(input_bound, (int, float)) \
            or not input_bound > 0:
        raise ValueError(f"`input_bound` must be a positive number, got {input_bound!r}")
    require_int("slot_bits", slot_bits, minimum=2, maximum=public_key.bits - 2)
    Xq = quantize(X, frac_bits=frac_bits, bound=input_bound, name="X")  # (samples, features)
    slots = (public_key.bits - 2) // slot_bits
    batches = tuple(
        tuple(key.encrypt(pack_slots(Xq[start:start + slots, i], slot_bits=slot_bits))
              for i in range(X.shape[1]))
        for start in range(0, X.shape[0], slots))
    return EncryptedBatch(public_key, batches, X.shape[0], frac_bits, slot_bits, float(input_bound))


def _quantize_model(weight: Any, bias: Any, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    W = float_array("weight", weight)
    b = float_array("bias", bias)
    if W.ndim != 2 or b.shape != (W.shape[0],):
        raise ValueError(f"`weight` must be (classes, features) and `bias` (classes,), got "
                         f"{W.shape} and {b.shape}")
    # W x has 2f fractional bits, so b is encoded with 2f too
    return quantize(W, frac_bits=frac_bits, name="weight"), \
        quantize(b, frac_bits=2 * frac_bits, name="bias")


def required_slot_bits(weight: Any, bias: Any, *, input_bound: float,
                       frac_bits: int = DEFAULT_FRAC_BITS) -> int:
    """Smallest slot width that holds every logit for inputs with ``|x| <= input_bound``."""
    Wq, bq = _quantize_model(weight, bias, check_frac_bits(frac_bits))
    input_bound = require_real("input_bound", input_bound, minimum=0, allow_minimum=False)
    x_max = round(input_bound * 2**frac_bits)
    worst = max(sum(abs(w) for w in row) * x_max + abs(b) for row, b in zip(Wq, bq))
    return int(worst).bit_length() + 1  # + sign bit


def encrypted_linear(batch: EncryptedBatch, weight: Any, bias: Any, *,
                     rerandomize: bool = True) -> EncryptedBatch:
    """The server: ``E(W x + b)`` for every packed sample, from ciphertexts and plaintext W, b.

    Raises ``ValueError`` if a logit could overflow a slot. ``rerandomize`` (default on)
    refreshes each result so that it reveals nothing about ``W`` beyond the logits.
    """
    if not isinstance(batch, EncryptedBatch):
        raise TypeError(f"`batch` must be an EncryptedBatch, got {type(batch).__name__}")
    require_flag("rerandomize", rerandomize)
    Wq, bq = _quantize_model(weight, bias, batch.frac_bits)
    if Wq.shape[1] != len(batch.ciphertexts[0]):
        raise ValueError(f"`weight` has {Wq.shape[1]} columns but the batch has "
                         f"{len(batch.ciphertexts[0])} features")
    needed = required_slot_bits(weight, bias, input_bound=batch.input_bound,
                                frac_bits=batch.frac_bits)
    if needed > batch.slot_bits:
        raise ValueError(f"slot overflow: these logits need {needed}-bit slots, the batch has "
                         f"{batch.slot_bits} (encrypt with slot_bits >= {needed})")
    out = []
    for features in batch.ciphertexts:  # one ciphertext per feature, `slots` samples each
        negated = [-ct for ct in features]  # E(-x) = E(x)^(-1): one inversion per feature
        row = []
        for w_row, b_j in zip(Wq, bq):
            # start from E(b_j) in every slot, with r = 1: the x terms below bring the randomness
            acc = EncryptedNumber(batch.public_key, 1) \
                + pack_slots([b_j] * batch.slots, slot_bits=batch.slot_bits)
            for ct, neg, w in zip(features, negated, w_row):
                # E(a) * E(x)^w = E(a + w x), in every slot at once
                acc = acc + (ct * int(w) if w >= 0 else neg * int(-w))
            row.append(acc.rerandomize() if rerandomize else acc)
        out.append(tuple(row))
    return EncryptedBatch(batch.public_key, tuple(out), batch.num_samples, 2 * batch.frac_bits,
                          batch.slot_bits, batch.input_bound)


def _unpack_checked(m: int, slot_bits: int, count: int) -> list[int]:
    """The slots of a decrypted plaintext; bits above the last slot -> DecryptionError."""
    mask, half, values = (1 << slot_bits) - 1, 1 << (slot_bits - 1), []
    for _ in range(count):
        low = m & mask
        low = low - (1 << slot_bits) if low >= half else low
        values.append(low)
        m = (m - low) >> slot_bits
    if m != 0:  # an overflowed top slot, or a ciphertext that was not packed this way
        raise DecryptionError()
    return values


def decrypt_logits(private_key: PaillierPrivateKey, logits: EncryptedBatch) -> np.ndarray:
    """The client: decrypt and unpack the logits, shape ``(samples, classes)``, float64.

    Raises :class:`~course_lib.errors.DecryptionError` if a ciphertext is under another key or
    does not hold ``slots`` packed values (e.g. a server's crafted or overflowed result).
    """
    if not isinstance(private_key, PaillierPrivateKey):
        raise TypeError(f"`private_key` must be a PaillierPrivateKey, "
                        f"got {type(private_key).__name__}")
    if not isinstance(logits, EncryptedBatch):
        raise TypeError(f"`logits` must be an EncryptedBatch, got {type(logits).__name__}")
    bits = private_key.public_key.bits
    layout = (logits.slot_bits, logits.frac_bits, logits.num_samples)
    if (logits.public_key != private_key.public_key or any(type(v) is not int for v in layout)
            or not 2 <= logits.slot_bits <= bits - 2 or not 0 <= logits.frac_bits <= bits
            or logits.num_samples < 1 or not logits.ciphertexts
            or len({len(row) for row in logits.ciphertexts}) != 1
            or len(logits.ciphertexts) != -(-logits.num_samples // logits.slots)):
        raise DecryptionError()  # not the layout this key's client sent
    columns = []
    for row in logits.ciphertexts:  # (classes,) ciphertexts, each holding `slots` samples
        columns.append([_unpack_checked(private_key.decrypt_raw(ct), logits.slot_bits,
                                        logits.slots) for ct in row])
    ints = np.concatenate([np.array(c, dtype=object).T for c in columns])  # (padded, classes)
    return dequantize(ints[:logits.num_samples], frac_bits=logits.frac_bits)


def logit_error_bound(weight: Any, X: Any, *, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Worst-case ``|fixed-point logit - exact logit|`` per sample, shape ``(samples,)``.

    With ``e = 2**-(frac_bits+1)`` the rounding error of one encoded value: each product
    ``w x`` is off by at most ``|w| e + |x| e + e^2``, and ``b`` (encoded with 2f bits) by
    ``e^2 * 2``; the bound is the largest row sum over the classes.
    """
    e = 2.0 ** -(check_frac_bits(frac_bits) + 1)
    W, X = np.abs(float_array("weight", weight)), np.abs(float_array("X", X))
    per_class = W.sum(axis=1)[None, :] * e + X.sum(axis=1)[:, None] * e \
        + W.shape[1] * e * e + 2 * e * e  # (samples, classes)
    return per_class.max(axis=1)


@dataclass(frozen=True, repr=False)
class TwoServerResult:
    """Logits from two-server inference, and what each server saw.

    ``views[i]`` maps names to the arrays server ``i`` held: its shares of the weights, bias,
    input and triple, and the two opened (masked) matrices, which are the same for both.
    """

    logits: np.ndarray
    views: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]

    def __repr__(self) -> str:
        return f"TwoServerResult(logits={self.logits.shape}, views={sorted(self.views[0])})"


def two_server_linear(weight: Any, bias: Any, X: Any, *, frac_bits: int = DEFAULT_FRAC_BITS,
                      prime: int = ss.PRIME, unsafe_seed: int | None = None) -> TwoServerResult:
    """Simulate the whole protocol: owner and client share, dealer deals, servers compute.

    Parameters
    ----------
    weight, bias : array_like
        The model owner's ``(classes, features)`` and ``(classes,)`` arrays.
    X : array_like
        The client's inputs, ``(samples, features)``.
    frac_bits : int
        Fixed-point bits of ``W`` and ``x`` (``b`` gets ``2 * frac_bits``).
    prime : int
        The field (default ``2**127 - 1``).
    unsafe_seed : int, optional
        Reproducible shares and triple, for demonstrations only (warns: anyone who knows
        the seed can recompute every share).
    """
    require_int("prime", prime, minimum=3)
    if not gmpy2.is_prime(prime, 50):
        raise ValueError(f"`prime` must be prime, got {prime}")
    if unsafe_seed is not None:
        require_int("unsafe_seed", unsafe_seed)
        warn_insecure("seeded secret shares (unsafe_seed) are insecure and shown for teaching "
                      "only: anyone who knows the seed recomputes every share")
    Wq, bq = _quantize_model(weight, bias, check_frac_bits(frac_bits))
    Xt = quantize(float_array("X", X).T, frac_bits=frac_bits, name="X")
    if Xt.ndim != 2 or Xt.shape[0] != Wq.shape[1]:  # (features, samples)
        raise ValueError(f"`X` must be (samples, {Wq.shape[1]}), got {Xt.T.shape}")

    def seed(i: int) -> int | None:
        return None if unsafe_seed is None else unsafe_seed * 11 + i

    # the model owner and the client each split their secrets into two shares
    W_sh = ss.share_additive(Wq % prime, prime=prime, unsafe_seed=seed(0))
    b_sh = ss.share_additive(bq % prime, prime=prime, unsafe_seed=seed(1))
    X_sh = ss.share_additive(Xt % prime, prime=prime, unsafe_seed=seed(2))
    # a dealer, independent of the data, gives each server its share of A @ B = C
    triples = ss.make_beaver_triples(Wq.shape, Xt.shape, op="matmul", prime=prime,
                                     unsafe_seed=seed(3))
    # the servers run Beaver's protocol, then add their bias shares locally
    (z0, z1), (E, F) = ss.beaver_product(W_sh, X_sh, triples, op="matmul", prime=prime)
    z = [(z0 + b_sh[0][:, None]) % prime, (z1 + b_sh[1][:, None]) % prime]  # (classes, samples)
    logits = ss.decode_fixed(ss.reconstruct_additive(z, prime=prime), frac_bits=2 * frac_bits,
                             prime=prime).T  # (samples, classes), only the client sees it
    views = tuple({"weight_share": W_sh[i], "bias_share": b_sh[i], "input_share": X_sh[i],
                   "opened_weight_minus_A": E, "opened_input_minus_B": F} for i in range(2))
    return TwoServerResult(logits=logits, views=views)
