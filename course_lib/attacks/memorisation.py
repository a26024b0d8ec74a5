"""The Secret Sharer: how much a language model memorised one secret, in bits.

Carlini et al. (2019, "The Secret Sharer") insert a *canary*, a made-up secret such as
``"my pin is 4721"``, ``k`` times into the training text, train, and ask how the model ranks
the true secret among every possible one. Each candidate ``r`` in the space ``R`` (here all
``10^4`` four-digit PINs) gets its *log-perplexity* ``-log Pr(r | prefix)`` under the model;
the canary's rank is its position when candidates are sorted from likeliest to least likely:

    exposure = log2 |R| - log2 rank        (bits; 0 <= exposure <= log2 |R|)

A model that never saw the canary ranks it somewhere in the middle (exposure about 1 bit on
average); exposure ``log2 |R|`` (13.3 bits for four digits) means the secret is the model's
single likeliest PIN: anyone who can query the model can extract it. Scoring all ``10^4``
candidates takes one batched forward pass over the ``10^3`` three-digit stems
(:func:`secret_log_perplexities`), so the rank is exact (Carlini et al. extrapolate for
spaces too large to enumerate).

Differential privacy is the defence with a guarantee: :func:`train_lm_dp` trains with
the course's one DP-SGD (:func:`course_lib.dp.dpsgd.train_dp_sgd`: per-record gradients
clipped to ``C``, Gaussian noise ``z * C``), with the language model's loss and Adam on the
noisy gradients. One record is protected with
``(epsilon, delta)``; ``k`` copies of a canary only with group privacy (about ``k * epsilon``),
yet the measured exposure falls sharply anyway.

Measured numbers (from scratch and when fine-tuning a pre-trained model, with and without
DP) are in :func:`run_secret_sharer`'s docstring.

Examples
--------
>>> from course_lib.attacks.memorisation import run_secret_sharer
>>> plain = run_secret_sharer(repeats=8, seed=0)
>>> plain.exposure > 8
True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.dp import DPConfig, epsilon
from course_lib.dp.dpsgd import noisy_clipped_sum, per_sample_gradients, train_dp_sgd
from course_lib.llm.model import (
    LMConfig,
    check_ids,
    check_lr,
    encode,
    encode_records,
    lm_loss,
    make_lm,
    make_records,
    perplexity,
    train_lm,
)

__all__ = ["ExposureResult", "MEMORISATION_CONFIG", "insert_canary", "candidates",
           "exposure_from_scores", "secret_log_perplexities", "measure_exposure",
           "private_gradient", "train_lm_dp", "run_secret_sharer"]

MEMORISATION_CONFIG = LMConfig(context=32, width=32, layers=2, heads=4)
MAX_DIGITS = 5  # 10^5 candidates is still one quick batched pass; 10^6 would not be


@dataclass(frozen=True, repr=False)
class ExposureResult:
    """One Secret Sharer measurement: a model trained with the canary ``repeats`` times.

    Attributes
    ----------
    exposure : float
        ``log2(num_candidates) - log2(rank)`` in bits.
    rank : int
        1 + the number of candidates the model finds strictly likelier than the secret.
    most_likely : str
        The candidate secret the model finds likeliest (the attacker's best guess).
    test_perplexity : float
        Per-character perplexity on fresh records of the same style (the model's utility).
    epsilon : float
        ``inf`` without DP; per record, so ``repeats`` copies are protected only as a group.
    """

    repeats: int
    exposure: float
    rank: int
    num_candidates: int
    most_likely: str
    test_perplexity: float
    epsilon: float = math.inf
    delta: float | None = None
    seconds: float = 0.0

    @property
    def max_exposure(self) -> float:
        """``log2(num_candidates)``: the exposure of a secret ranked first."""
        return math.log2(self.num_candidates)

    def __repr__(self) -> str:
        dp = "no DP" if math.isinf(self.epsilon) else f"epsilon={self.epsilon:.2f}"
        return (f"ExposureResult(repeats={self.repeats}, exposure={self.exposure:.2f} of "
                f"{self.max_exposure:.2f} bits, rank={self.rank}, "
                f"most_likely={self.most_likely!r}, test_perplexity="
                f"{self.test_perplexity:.3f}, {dp})")


def _check_secret(prefix: str, secret: str) -> None:
    if not isinstance(prefix, str) or not isinstance(secret, str):
        raise TypeError(f"`prefix` and `secret` must be str, got {type(prefix).__name__} "
                        f"and {type(secret).__name__}")
    if not secret.isdigit() or not secret.isascii() or not 1 <= len(secret) <= MAX_DIGITS:
        raise ValueError(f"`secret` must be 1 to {MAX_DIGITS} ASCII digits, got {secret!r}")


def insert_canary(records: list[str], canary: str, *, repeats: int, seed: int = 0) -> list[str]:
    """A new list: ``records`` with ``repeats`` copies of ``canary`` at random positions."""
    require_int("repeats", repeats, minimum=0, maximum=1_000_000)
    require_int("seed", seed, minimum=0)
    if not isinstance(canary, str):
        raise TypeError(f"`canary` must be a str, got {type(canary).__name__}")
    out = list(records)
    rng = np.random.default_rng([seed, 11])
    for _ in range(repeats):
        out.insert(int(rng.integers(len(out) + 1)), canary)
    return out


def candidates(prefix: str, digits: int) -> list[str]:
    """Every record ``prefix + d`` for the ``10**digits`` digit strings ``d``, in numeric order.

    So candidate ``i`` holds the secret ``str(i).zfill(digits)``.
    """
    require_int("digits", digits, minimum=1, maximum=MAX_DIGITS)
    return [f"{prefix}{i:0{digits}d}" for i in range(10**digits)]


def exposure_from_scores(scores: np.ndarray, secret_index: int) -> tuple[float, int]:
    """``(exposure, rank)`` of candidate ``secret_index`` given every candidate's score.

    ``scores`` are log-perplexities (lower = likelier). The rank counts strictly likelier
    candidates, plus one; ties are resolved in the secret's favour (the attacker's view).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) < 1:
        raise ValueError(f"`scores` must be a non-empty 1-D array, got shape {scores.shape}")
    require_int("secret_index", secret_index, minimum=0, maximum=len(scores) - 1)
    rank = 1 + int((scores < scores[secret_index]).sum())
    return math.log2(len(scores)) - math.log2(rank), rank


def secret_log_perplexities(model: nn.Module, *, prefix: str, digits: int) -> np.ndarray:
    """``-log Pr(d | prefix)`` in nats for every ``digits``-digit string ``d``, numeric order.

    This is the Secret Sharer's log-perplexity of each candidate record ``prefix + d`` up to
    a constant (the prefix's own log-probability, the same for every candidate, does not
    change the ranking). All ``10**digits`` candidates are scored exactly, with one trick: a
    forward pass over ``"\\n" + prefix + d[:-1]`` already gives the model's distribution for
    every possible last digit, so ``10**(digits - 1)`` sequences suffice instead of
    ``10**digits``.
    """
    _check_secret(prefix, "0" * require_int("digits", digits, minimum=1, maximum=MAX_DIGITS))
    start = 1 + len(prefix)  # position of the first secret digit in "\n" + prefix + secret
    stems = [prefix] if digits == 1 else candidates(prefix, digits - 1)
    ids = encode_records(stems, context=model.config.context)[:, :start + digits - 1]
    digit_ids = encode("0123456789")  # (10,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch_threads(1):
            logp = torch.log_softmax(model(ids)[:, start - 1:], dim=-1)  # (stems, digits, V)
    finally:
        model.train(was_training)
    known = ids[:, start:, None]  # (stems, digits - 1, 1): the stem's own digits
    stem_logp = logp[:, :-1].gather(2, known).sum(dim=(1, 2))  # (stems,)
    last_logp = logp[:, -1, digit_ids]  # (stems, 10): every possible last digit
    return -(stem_logp[:, None] + last_logp).reshape(-1).double().numpy()  # (10**digits,)


def measure_exposure(model: nn.Module, *, prefix: str = "my pin is ",
                     secret: str = "4721") -> tuple[float, int, str]:
    """``(exposure, rank, most likely secret)`` of ``prefix + secret`` under ``model``.

    Every one of the ``10**len(secret)`` candidates is scored by
    :func:`secret_log_perplexities` (about 0.06 s for 10^4 on one core).
    """
    _check_secret(prefix, secret)
    scores = secret_log_perplexities(model, prefix=prefix, digits=len(secret))
    exposure, rank = exposure_from_scores(scores, int(secret))
    return exposure, rank, f"{int(scores.argmin()):0{len(secret)}d}"


def private_gradient(model: nn.Module, records: torch.Tensor, *, dp: DPConfig,
                     expected_batch: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """DP-SGD's gradient: ``(sum_i clip(g_i) + N(0, (z C)^2 I)) / expected_batch``.

    ``g_i`` is the gradient of record ``i``'s mean token loss (a row of ``records``,
    ``(batch, T+1)``, possibly empty) with respect to every parameter that requires grad,
    clipped to L2 norm ``C = dp.max_norm`` over all parameters together; ``z`` is
    ``dp.noise_multiplier`` and the noise comes from ``generator`` only. The course's one
    DP-SGD computes it (:mod:`course_lib.dp.dpsgd`).
    """
    grads = per_sample_gradients(model, records[:, :-1], records[:, 1:], loss=lm_loss)
    noisy = noisy_clipped_sum(grads, max_norm=dp.max_norm, noise_multiplier=dp.noise_multiplier,
                              generator=generator)
    return {k: v / expected_batch for k, v in noisy.items()}


def train_lm_dp(model: nn.Module, ids: torch.Tensor, *, dp: DPConfig, epochs: int,
                batch_size: int, lr: float, lr_decay: bool = False,
                seed: int = 0) -> tuple[nn.Module, int, float]:
    """DP-SGD (with Adam on the noisy gradient) on records ``ids``: ``(copy, steps, q)``.

    Each of ``round(epochs / q)`` steps picks every record independently with probability
    ``q = batch_size / n`` (Poisson sampling, as the accountant assumes) and takes an Adam
    step along :func:`private_gradient` of the picked records, with ``expected_batch = q n``:
    :func:`course_lib.dp.dpsgd.train_dp_sgd` with the language model's loss (predict
    ``ids[:, 1:]`` from ``ids[:, :-1]``). Adam only post-processes the noisy gradient, so the
    guarantee is the same as for SGD. ``model`` is not modified.
    """
    check_ids(ids)
    check_lr(lr)
    return train_dp_sgd(model, ids[:, :-1], ids[:, 1:], dp=dp, epochs=epochs,
                        batch_size=batch_size, lr=lr, loss=lm_loss, optimiser="adam",
                        lr_decay=lr_decay, seed=seed)


def run_secret_sharer(*, repeats: int, dp: DPConfig | None = None,
                      model: nn.Module | None = None, num_records: int = 1000, epochs: int = 5,
                      batch_size: int | None = None, lr: float | None = None,
                      prefix: str = "my pin is ", secret: str = "4721",
                      seed: int = 0) -> ExposureResult:
    """Train on generic records plus the canary ``repeats`` times; measure its exposure.

    Parameters
    ----------
    repeats : int
        ``k``, how many times the canary ``prefix + secret`` is inserted (at random places)
        among ``num_records`` generic records from :func:`course_lib.llm.model.make_records`.
    dp : DPConfig or None
        Train with :func:`train_lm_dp` (DP-SGD) instead of :func:`course_lib.llm.model.train_lm`.
    model : nn.Module or None
        The starting point, e.g. a model pre-trained on public text (then this measures
        memorisation during fine-tuning); ``None`` trains ``make_lm(MEMORISATION_CONFIG,
        seed=seed)`` from scratch. Never modified.
    epochs, batch_size, lr
        Passes over the records, with the step size decaying linearly to 0. ``batch_size``
        and ``lr`` default to what trains a model from scratch best (measured): 16 and 5e-3
        without DP (more, smaller steps), 64 and 2e-2 with DP (in larger batches the noise
        drowns less of the signal).
    seed : int
        Seeds the records (``seed + 10_000``, so not those of a model pre-trained with
        ``seed``), the canary's places, the initial weights and the training.

    Measured from scratch with the defaults, seeds 0-2 (mean exposure in bits of 13.29; single
    runs vary by a few bits): k = 0: 2.6, 1: 4.2, 2: 6.0, 4: 12.0, 8: 10.8, 16: 13.3, at a
    test perplexity of 2.0; with DP (z = 1, C = 1, epsilon 4.6 at delta 1e-5) at k = 8: 0.9,
    at a perplexity of 6.8. Fine-tuning a model pre-trained on public text
    (:func:`course_lib.llm.federated.pretrain`, 500 records, 3 epochs, batches of 16, lr 2e-3)
    gives 1.3, 5.3, 9.0 and 13.3 bits at k = 0, 1, 4, 16; with DP (batches of 64, lr 1e-3,
    epsilon 5.4) 1.2-1.6 bits at a perplexity of 2.08 (the public model's 2.10; 1.87 without DP).
    """
    require_int("repeats", repeats, minimum=0, maximum=1_000_000)
    require_int("num_records", num_records, minimum=1, maximum=1_000_000)
    require_int("seed", seed, minimum=0)
    _check_secret(prefix, secret)
    if dp is not None and not isinstance(dp, DPConfig):
        raise TypeError(f"`dp` must be a DPConfig or None, got {type(dp).__name__}")
    if model is not None and not isinstance(getattr(model, "config", None), LMConfig):
        raise TypeError(f"`model` must be a TinyLM (from course_lib.llm.model) or None, "
                        f"got {type(model).__name__}")
    batch_size = (16 if dp is None else 64) if batch_size is None else batch_size
    lr = (5e-3 if dp is None else 2e-2) if lr is None else lr
    start = time.perf_counter()
    model = make_lm(MEMORISATION_CONFIG, seed=seed) if model is None else model
    context = model.config.context
    records = insert_canary(make_records(num_records, seed=seed + 10_000), prefix + secret,
                            repeats=repeats, seed=seed)
    ids = encode_records(records, context=context)  # (records, context + 1)
    eps = math.inf
    if dp is None:
        model = train_lm(model, ids, epochs=epochs, batch_size=batch_size, lr=lr,
                         lr_decay=True, seed=seed)
    else:
        model, steps, q = train_lm_dp(model, ids, dp=dp, epochs=epochs, batch_size=batch_size,
                                      lr=lr, lr_decay=True, seed=seed)
        eps = epsilon(noise_multiplier=dp.noise_multiplier, sample_rate=q, steps=steps,
                      delta=dp.delta)
    exposure, rank, best = measure_exposure(model, prefix=prefix, secret=secret)
    test = encode_records(make_records(500, seed=seed + 1_000_003), context=context)
    return ExposureResult(repeats=repeats, exposure=exposure, rank=rank,
                          num_candidates=10 ** len(secret), most_likely=best,
                          test_perplexity=perplexity(model, test), epsilon=eps,
                          delta=None if dp is None else dp.delta,
                          seconds=time.perf_counter() - start)
